"""Train a small MDLM model on fresh samples of a checkable language (a plain loop, no Lightning).

Every step draws a new batch of exact samples from the language (so there is no overfitting
and no data set; ``batch_tokens // L`` sequences, so that every length trains on as many
tokens), and minimises dnadiff's MDLM objective (the continuous-time NELBO, SPEC section 4)
with dnadiff's AdamW + warmup-cosine optimiser. The held-out NELBO (nats/token, on fresh samples, an upper bound on the model's NLL) is compared with the language's exact
entropy rate: their gap is the model's error, which the exact-oracle runs do not have.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dnadiff.config import to_typed
from dnadiff.data.languages import Language
from dnadiff.experiments.stats import mean_se
from dnadiff.models.registry import build_model
from dnadiff.objectives import build_objective
from dnadiff.tokenizer import Tokenizer
from dnadiff.train.config import OptimConfig
from dnadiff.train.optim import build_optimizer


def train_on_language(
    language: Language,
    length: int,
    arch: str,
    cfg: Mapping[str, Any],
    seed: int,
    log_every: int = 100,
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained model and its report (training loss curve, held-out NELBO with its standard error)."""
    tok = Tokenizer()
    torch.manual_seed(seed)
    model = build_model(arch, **dict(cfg["model"]))
    objective = build_objective({"name": "mdlm", "model_arch": model.config["arch"]}, tok)
    train = cfg["train"]
    steps = int(train["steps"])
    batch = max(1, int(train["batch_tokens"]) // length)
    optimizer, scheduler = build_optimizer(model, to_typed(cfg.get("optim") or {}, OptimConfig, "network.optim"), steps)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    start = time.perf_counter()
    curve = []
    for step in range(steps):
        x = language.sample(batch, length, data_gen)
        loss = objective.loss(model, x, generator=noise_gen).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(train["grad_clip"]))
        optimizer.step()
        scheduler.step()
        curve.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"    {arch} on {language.name} L={length}: step {step + 1}/{steps} "
                  f"loss {np.mean(curve[-log_every:]):.4f} nats/token", flush=True)
    model.eval()
    per_seq = []
    with torch.no_grad():
        for _ in range(int(train["eval_batches"])):
            x = language.sample(batch, length, data_gen)
            out = objective.loss(model, x, generator=noise_gen)
            per_seq.append((out.per_sequence / length).cpu().numpy())
    nelbo, nelbo_se = mean_se(np.concatenate(per_seq))
    report = {
        "arch": arch, "params": sum(p.numel() for p in model.parameters()), "train_steps": steps, "batch_size": batch,
        "train_seconds": time.perf_counter() - start, "final_train_loss": float(np.mean(curve[-50:])),
        "heldout_nelbo": nelbo, "heldout_nelbo_se": nelbo_se,
    }
    return model, report
