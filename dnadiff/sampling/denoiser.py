"""The MDLM denoiser seen by the samplers: z_t -> log x_theta(z_t, t) under SUBS.

``Denoiser(model)`` runs the network and applies the SUBS parameterisation (mask logit -inf,
carry-over one-hot where z_t is unmasked); ``allowed_ids`` further restricts x_theta to the
tokens a generated sequence may contain (A, C, G, T by default), renormalised. The guidance
wrappers in :mod:`dnadiff.sampling.guidance` have the same call and can be used in its place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from dnadiff.objectives.mdlm import call_model, subs_log_probs
from dnadiff.tokenizer import Tokenizer

DEFAULT_ALLOWED: tuple[int, ...] = Tokenizer().nucleotide_ids


class Denoiser:
    """log x_theta(z_t, t) of an MDLM network, optionally class-conditioned with a fixed label per row.

    ``cond`` (B,) labels for the whole batch; calls on a subset of rows pass ``rows`` so that the
    matching labels are used. ``time_conditioned`` tells the cached sampler whether x_theta can
    change without z changing.
    """

    def __init__(
        self,
        model: nn.Module,
        mask_id: int,
        cond: torch.Tensor | None = None,
        allowed_ids: Sequence[int] | None = DEFAULT_ALLOWED,
    ) -> None:
        self.model = model
        self.mask_id = int(mask_id)
        self.cond = cond
        self.allowed_ids = None if allowed_ids is None else tuple(int(i) for i in allowed_ids)
        if self.allowed_ids is not None and (not self.allowed_ids or self.mask_id in self.allowed_ids):
            raise ValueError(f"allowed_ids must be non-empty and exclude the mask id {mask_id}, got {self.allowed_ids}")
        self.time_conditioned = bool(getattr(model, "time_conditioned", False))

    def row_cond(self, rows: torch.Tensor | None) -> torch.Tensor | None:
        """The labels of the given rows (all rows when ``rows`` is None)."""
        if self.cond is None or rows is None:
            return self.cond
        return self.cond[rows]

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Set the logits of tokens outside ``allowed_ids`` to -inf."""
        if self.allowed_ids is None:
            return logits
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        keep[list(self.allowed_ids)] = True
        return logits.float().masked_fill(~keep, float("-inf"))

    def log_probs(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """SUBS log x_theta for explicit labels ``cond`` (used by classifier-free guidance)."""
        logits = call_model(self.model, z, cond, t)
        return subs_log_probs(self.restrict(logits), z, self.mask_id)

    def __call__(self, z: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """log x_theta (B, L, V) for z (B, L) at times t (B,)."""
        return self.log_probs(z, t, self.row_cond(rows))
