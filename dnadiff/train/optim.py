"""AdamW with decoupled weight decay on matrices only, and a linear-warmup + cosine-decay schedule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from dnadiff.train.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices; leave biases, norms, and parameters marked ``_no_weight_decay`` (A_log, D) alone."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or getattr(p, "_no_weight_decay", False):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear from 0 to 1 over ``warmup_steps``, then cosine down to ``min_lr_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable LR lambda (so the scheduler state saves with ``weights_only`` checkpoints)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int):
    """AdamW and its step-wise scheduler from the ``optim`` config."""
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
    )
    schedule = WarmupCosine(cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
    return optimizer, scheduler


def apply_optim_config(optimizer: torch.optim.Optimizer, scheduler: Any, cfg: OptimConfig) -> bool:
    """Make a restored optimiser and schedule follow ``cfg`` (a resume with ``resume_override``):
    learning rate, betas, eps, weight decay, and the current step's rate under the schedule.
    Changes nothing (bit for bit) when the values already agree; returns whether it changed any."""
    changed = False
    for i, group in enumerate(optimizer.param_groups):
        wanted = {"betas": tuple(cfg.betas), "eps": cfg.eps, "initial_lr": cfg.lr}
        if i == 0:  # the decayed group of param_groups()
            wanted["weight_decay"] = cfg.weight_decay
        for name, value in wanted.items():
            now = tuple(group[name]) if name == "betas" and name in group else group.get(name)
            if now != value:
                group[name] = value
                changed = True
    if scheduler is not None and list(scheduler.base_lrs) != [cfg.lr] * len(optimizer.param_groups):
        scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
        changed = True
    if scheduler is not None:
        for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            lr = base * fn(scheduler.last_epoch)
            if group["lr"] != lr:
                group["lr"] = lr
                changed = True
    return changed
