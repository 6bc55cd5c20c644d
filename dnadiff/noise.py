"""Stratified ("antithetic") uniforms: the low-discrepancy draw of diffusion times over a batch.

Slot j of a batch of ``total`` slots gets ``(u + j / total) mod 1`` for one shared U[0, 1) draw
u: the batch covers [0, 1) evenly, which lowers the variance of the NELBO
estimate. The training stream (per global batch) and the evaluation noise (per window's draws)
use it, and so does an objective that draws its own times; the objective maps a uniform to a
time in [t_min, 1].
"""

from __future__ import annotations

from typing import TypeVar

ArrayLike = TypeVar("ArrayLike")


def stratified(u: ArrayLike, slots: ArrayLike, total: int) -> ArrayLike:
    """``(u + slots / total) mod 1``, elementwise, for numpy arrays, torch tensors or floats."""
    return (u + slots / total) % 1.0
