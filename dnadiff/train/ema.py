"""Exponential moving average of model weights, used for evaluation and export."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA(nn.Module):
    """A frozen copy of the model whose weights follow ``decay`` * ema + (1 - decay) * weights.

    The effective decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that a short
    run's EMA is not stuck at the initial weights. The copy and ``num_updates`` live in the
    state dict (keys ``module.*``), so checkpoints carry the EMA and resume it exactly.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        self.num_updates += 1
        n = float(self.num_updates.item())
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, [p.to(e.dtype) for p, e in zip(params, ema_params)], 1.0 - decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
