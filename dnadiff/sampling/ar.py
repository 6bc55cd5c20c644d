"""Sampling from autoregressive (causal) checkpoints, and their likelihood of given sequences.

Convention: the AR model reads [BOS] x_1 ... x_{L-1} and its logits at position i predict
x_{i+1}; ``bos_id`` (the tokenizer's [BOS] by default) starts every sequence.
Recurrent sampling feeds one token at a time through ``model.step`` with O(1) state per token;
``recurrent=False`` reruns the full forward on the growing prefix (O(L^2), the check). Both use
the same uniforms, so with the same seed they return the same sequences. NFE = L.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from dnadiff.device import model_device
from dnadiff.objectives.ar import AutoRegressive
from dnadiff.sampling.common import (
    SampleOutput,
    check_sampling_args,
    draw_uniforms,
    filter_log_probs,
    sample_categorical,
)
from dnadiff.sampling.denoiser import DEFAULT_ALLOWED
from dnadiff.tokenizer import Tokenizer


def _next_log_probs(logits: torch.Tensor, allowed_ids: Sequence[int] | None) -> torch.Tensor:
    logits = logits.float()
    if allowed_ids is not None:
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        keep[list(allowed_ids)] = True
        logits = logits.masked_fill(~keep, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


@torch.no_grad()
def ar_sample(
    model: nn.Module,
    num_samples: int,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    recurrent: bool = True,
    cond: torch.Tensor | None = None,
    allowed_ids: Sequence[int] | None = DEFAULT_ALLOWED,
    bos_id: int | None = None,
) -> SampleOutput:
    """Sample (num_samples, length) ids left to right from a causal model."""
    check_sampling_args(temperature, top_p)
    if not getattr(model, "causal", False):
        raise ValueError("AR sampling needs a causal model (model.causal is False)")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    device = model_device(model)
    bos = Tokenizer().bos_id if bos_id is None else int(bos_id)
    seq = torch.full((num_samples, 1), bos, dtype=torch.long, device=device)
    state = model.allocate_inference_state(num_samples) if recurrent else None
    kwargs = {} if cond is None else {"cond": cond}
    for _ in range(length):
        if recurrent:
            logits, state = model.step(seq[:, -1], state, **kwargs)
        else:
            logits = model(seq, **kwargs)[:, -1]
        log_p = filter_log_probs(_next_log_probs(logits, allowed_ids), temperature, top_p)
        token = sample_categorical(log_p, draw_uniforms((num_samples,), generator, device))
        seq = torch.cat([seq, token.unsqueeze(1)], dim=1)
    nfe_rows = torch.full((num_samples,), length, dtype=torch.long, device=device)
    return SampleOutput(seq[:, 1:], length, nfe_rows, length)


@torch.no_grad()
def ar_log_likelihood(model: nn.Module, ids: torch.Tensor, bos_id: int | None = None) -> torch.Tensor:
    """Per-sequence sum of log p(x_i | [BOS] x_<i) under a causal model (nats), ids (B, L)."""
    tok = Tokenizer()
    objective = AutoRegressive(tok.bos_id if bos_id is None else int(bos_id), tok.pad_id)
    return -objective.token_nll(model, ids).sum(-1)
