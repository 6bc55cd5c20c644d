"""Train a classifier on one fold and select its epoch on the held-out fold (plain PyTorch loop).

A plain loop rather than a Lightning Trainer: the CV runs hundreds of tiny fits on CPU, where
a Trainer's start-up costs more than the fit, and a loop with explicit generators is easy to
keep bit-for-bit deterministic for a seed. After every epoch the model is scored on the
held-out fold; the weights of the best epoch (highest accuracy, earliest on ties) are restored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from dnadiff.device import model_device
from dnadiff.finetuning.config import FitConfig


@dataclass
class FitResult:
    """Selected epoch (1-based), its held-out accuracy, and per-epoch history."""

    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def _trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row."""
    nonpad = (ids != pad_id).any(dim=0)
    if not nonpad.any():
        return ids
    last = int(torch.nonzero(nonpad).max()) + 1
    return ids[:, :last]


@torch.no_grad()
def predict_proba(model: nn.Module, ids: torch.Tensor, batch_size: int = 128, pad_id: int = 4) -> np.ndarray:
    """Class probabilities (N, C) on CPU for right-padded ids, in eval mode, on the model's device."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out = []
    for start in range(0, ids.shape[0], batch_size):
        logits = model(_trim(ids[start : start + batch_size], pad_id).to(device))
        out.append(torch.softmax(logits.float(), dim=-1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def fit_select(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: FitConfig,
    seed: int,
    pad_id: int = 4,
    desc: str = "epochs",
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``train`` for ``cfg.max_epochs``, keep the epoch best on ``val``.

    The model is left holding the selected epoch's weights. The loss is the model's own
    ``training_loss(logits, labels)`` when it has one (the Genomic Benchmarks CNN), else softmax
    cross-entropy.
    """
    if cfg.max_epochs < 1:
        raise ValueError(f"trainer.max_epochs must be >= 1, got {cfg.max_epochs}")
    x_tr, y_tr = train
    x_va, y_va = val
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = model_device(model)
    loss_fn = getattr(model, "training_loss", F.cross_entropy)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = FitResult(best_epoch=0, best_val_accuracy=-1.0)
    best_state = None
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=desc, leave=False, disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(x_tr.shape[0], generator=gen)
        total, n = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            logits = model(_trim(x_tr[idx], pad_id).to(device))
            loss = loss_fn(logits.float(), y_tr[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        proba = predict_proba(model, x_va, cfg.eval_batch_size, pad_id)
        val_acc = float((proba.argmax(1) == y_va.numpy()).mean())
        val_loss = float(F.nll_loss(torch.log(torch.from_numpy(proba).clamp_min(1e-12)), y_va))
        best.history.append({"epoch": epoch, "train_loss": total / max(n, 1), "val_loss": val_loss, "val_accuracy": val_acc})
        bar.set_postfix(loss=f"{total / max(n, 1):.3f}", val_acc=f"{val_acc:.3f}")
        if val_acc > best.best_val_accuracy:
            best.best_epoch, best.best_val_accuracy = epoch, val_acc
            best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return best
