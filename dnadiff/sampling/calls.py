"""Network calls of a sampler with caching: x_theta is recomputed only for rows whose z changed.

Without time conditioning x_theta depends on z only (SPEC section 6, cached sampler), so a row
whose z has not changed since its last evaluation keeps its x_theta. ``DenoiserCalls`` keeps
the latest (filtered) log x_theta of every row, which rows are stale, and the NFE counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dnadiff.sampling.common import filter_log_probs

DenoiserFn = Callable[..., torch.Tensor]


class DenoiserCalls:
    """log x_theta per row of a batch, re-evaluated on demand (``cache=False``: at every request)."""

    def __init__(self, denoiser: DenoiserFn, batch: int, device: torch.device, cache: bool,
                 temperature: float, top_p: float, dtype: torch.dtype) -> None:
        self.denoiser = denoiser
        self.use_cache = bool(cache) and not getattr(denoiser, "time_conditioned", False)
        self.temperature, self.top_p, self.dtype = temperature, top_p, dtype
        self.stale = torch.ones(batch, dtype=torch.bool, device=device)
        self.log_x: torch.Tensor | None = None
        self.nfe = 0
        self.nfe_rows = torch.zeros(batch, dtype=torch.long, device=device)

    def get(self, z: torch.Tensor, t_val: float, wanted: torch.Tensor) -> torch.Tensor | None:
        """log x_theta of z for the ``wanted`` rows (fresh where stale, or for every row uncached).

        Uncached, every row is evaluated at every call (as the plain ancestral sampler does).
        Returns the batch's latest log x_theta (rows never evaluated hold zeros), or None before
        the first evaluation.
        """
        need = (self.stale & wanted) if self.use_cache else torch.ones_like(wanted)
        if bool(need.any()):
            rows = need.nonzero().squeeze(-1)
            batch = z.shape[0]
            t = torch.full((rows.numel(),), t_val, device=z.device)
            fresh = self.denoiser(z, t, None) if rows.numel() == batch else self.denoiser(z[rows], t, rows)
            fresh = filter_log_probs(fresh.to(self.dtype), self.temperature, self.top_p)
            if rows.numel() == batch:  # cached rows are later updated in place: keep our own copy
                self.log_x = fresh.clone() if self.use_cache else fresh
            else:
                if self.log_x is None:
                    self.log_x = fresh.new_zeros((batch, *fresh.shape[1:]))
                self.log_x[rows] = fresh
            self.nfe += 1
            self.nfe_rows += need.long()
            self.stale &= ~need
        return self.log_x

    def changed(self, rows: torch.Tensor) -> None:
        """Mark rows whose z changed (their x_theta must be recomputed before its next use)."""
        self.stale |= rows
