"""Noise schedules of the absorbing-state forward process.

A schedule gives alpha_t, the probability that a token is still clean at time t in [0, 1]
(0 = clean, 1 = fully masked), and its derivative alpha'_t. The continuous-time NELBO weights
the masked cross-entropy by ``weight(t) = -alpha'_t / (1 - alpha_t)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class NoiseSchedule(ABC):
    """alpha_t strictly decreasing from ~1 at t=0 to ~0 at t=1."""

    name: str = ""

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"schedule eps must be in [0, 1), got {eps}")
        self.eps = float(eps)

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is unmasked at time t."""

    @abstractmethod
    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha_t / dt (negative)."""

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """The NELBO weight -alpha'_t / (1 - alpha_t) of the masked cross-entropy at time t."""
        return -self.dalpha(t) / (1.0 - self.alpha(t))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class LogLinearSchedule(NoiseSchedule):
    """sigma(t) = -log(1 - (1 - eps) t), alpha_t = 1 - (1 - eps) t: the NELBO weight is exactly 1/t."""

    name = "loglinear"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -(1.0 - self.eps))

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / t


class CosineSchedule(NoiseSchedule):
    """alpha_t = (1 - eps) (1 - cos(pi/2 (1 - t))): alpha_0 = 1 - eps, alpha_1 = 0 (for ablations)."""

    name = "cosine"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.eps) * (1.0 - torch.cos(0.5 * math.pi * (1.0 - t)))

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return -(1.0 - self.eps) * 0.5 * math.pi * torch.sin(0.5 * math.pi * (1.0 - t))


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    LogLinearSchedule.name: LogLinearSchedule,
    CosineSchedule.name: CosineSchedule,
}


def build_schedule(name: str, eps: float = 1e-3) -> NoiseSchedule:
    """The schedule called ``name`` (``loglinear`` or ``cosine``)."""
    try:
        return SCHEDULES[name](eps=eps)
    except KeyError:
        raise ValueError(f"unknown noise schedule {name!r}; valid: {sorted(SCHEDULES)}") from None
