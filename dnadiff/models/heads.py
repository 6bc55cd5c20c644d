"""Sequence-classification heads on any dnadiff backbone.

A :class:`SequenceClassifier` wraps a language model that exposes
``hidden_states(input_ids) -> (B, L, d_hidden)`` and turns it into a classifier:

1. **Pooling** over positions (:func:`pool_hidden`):
   ``"mean"`` averages the non-pad positions (the default for bidirectional backbones);
   ``"last"`` takes the last non-pad position (the only position that has seen the whole
   sequence in a causal model, so the default there); ``"max"`` is a channel-wise max over
   non-pad positions; ``"auto"`` picks ``"last"`` for ``model.causal`` and ``"mean"`` otherwise.
2. **RC-invariant pooling** for Caduceus-PS (``model.rc_equivariant``): its 2*D hidden channels
   satisfy h(rc x) = flip_seq(flip_channels(h(x))), so a position-pooled vector m obeys
   m(rc x) = flip_channels(m(x)) and ``m[:D] + flip(m[D:])`` is exactly invariant to the
   reverse complement (:func:`dnadiff.models.caduceus.fold_rc_channels`).
3. **Head**: dropout then a linear layer, or a small MLP (linear -> GELU -> dropout -> linear).
4. **Post-hoc conjoining** for Caduceus-PH: the logits are the average of the logits for x and
   for rc(x) (:func:`reverse_complement_padded` keeps right padding in place).

``freeze_backbone=True`` turns fine-tuning into a linear (or MLP) probe: the backbone's
parameters get ``requires_grad=False`` and it runs without building a graph.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dnadiff.models.caduceus import fold_rc_channels
from dnadiff.tokenizer import Tokenizer

POOLING_MODES: tuple[str, ...] = ("auto", "mean", "last", "max")
HEAD_TYPES: tuple[str, ...] = ("linear", "mlp")


def resolve_pooling(pooling: str, causal: bool) -> str:
    """``"auto"`` -> ``"last"`` for a causal backbone, ``"mean"`` otherwise; validates the name."""
    if pooling not in POOLING_MODES:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLING_MODES)}")
    if pooling == "auto":
        return "last" if causal else "mean"
    return pooling


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool (B, L, D) hidden states over the positions where ``mask`` (B, L) is True.

    Rows with no valid position fall back to all positions, so the result is always finite.
    """
    mask = mask.to(torch.bool)
    empty = ~mask.any(dim=1)
    if empty.any():
        mask = mask | empty[:, None]
    if mode == "mean":
        w = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * w).sum(dim=1) / w.sum(dim=1)
    if mode == "last":
        last = mask.shape[1] - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    raise ValueError(f"unknown pooling {mode!r}; valid: mean, last, max")


def reverse_complement_padded(ids: torch.Tensor, lengths: torch.Tensor, complement_map: torch.Tensor) -> torch.Tensor:
    """Reverse-complement the first ``lengths[i]`` ids of each row, leaving right padding in place."""
    seq_len = ids.shape[1]
    pos = torch.arange(seq_len, device=ids.device).unsqueeze(0)
    lengths = lengths.to(ids.device).unsqueeze(1)
    src = torch.where(pos < lengths, lengths - 1 - pos, pos)
    return complement_map.to(ids.device)[ids.gather(1, src)]


class SequenceClassifier(nn.Module):
    """Backbone + pooling + (linear | MLP) head, with the Caduceus RC options.

    Args:
        backbone: a dnadiff LM with ``hidden_states``, ``d_hidden``, ``causal``, ``rc_equivariant``.
        num_classes: number of classes (>= 2).
        pooling: one of :data:`POOLING_MODES`.
        head: ``"linear"`` or ``"mlp"``; ``mlp_hidden`` is the MLP's width.
        dropout: dropout before the (first) linear layer.
        rc_invariant: fold PS channels into RC-invariant ones; ``None`` = ``backbone.rc_equivariant``.
        conjoin: average the logits of x and rc(x) (Caduceus-PH post-hoc conjoining).
        freeze_backbone: train the head only (linear probe).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        pooling: str = "auto",
        head: str = "linear",
        mlp_hidden: int = 64,
        dropout: float = 0.1,
        rc_invariant: bool | None = None,
        conjoin: bool = False,
        freeze_backbone: bool = False,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEAD_TYPES)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.causal = bool(getattr(backbone, "causal", False))
        self.pooling = resolve_pooling(pooling, self.causal)
        self.rc_invariant = bool(getattr(backbone, "rc_equivariant", False)) if rc_invariant is None else bool(rc_invariant)
        self.conjoin = bool(conjoin)
        self.freeze_backbone = bool(freeze_backbone)
        tok = tokenizer or Tokenizer()
        self.pad_id = tok.pad_id
        self.register_buffer("complement_map", tok.complement_map.clone(), persistent=False)
        d_in = int(backbone.d_hidden) // (2 if self.rc_invariant else 1)
        if head == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, num_classes))
        else:
            self.head = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(d_in, mlp_hidden), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(mlp_hidden, num_classes),
            )
        if self.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self.settings = {"num_classes": self.num_classes, "pooling": self.pooling, "head": head,
                         "mlp_hidden": int(mlp_hidden), "dropout": float(dropout), "rc_invariant": self.rc_invariant,
                         "conjoin": self.conjoin, "freeze_backbone": self.freeze_backbone}
        self.classes: list[str] = []

    def train(self, mode: bool = True) -> "SequenceClassifier":
        """Keep a frozen backbone in eval mode (no dropout/statistics updates) while the head trains."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Pooled (and, for PS, RC-folded) features of a right-padded batch: (B, d_in)."""
        mask = input_ids != self.pad_id
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            hidden = self.backbone.hidden_states(input_ids)
        pooled = pool_hidden(hidden, mask, self.pooling)
        return fold_rc_channels(pooled) if self.rc_invariant else pooled

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes); with ``conjoin`` the mean of the logits for x and rc(x)."""
        logits = self.head(self.features(input_ids))
        if not self.conjoin:
            return logits
        lengths = (input_ids != self.pad_id).sum(dim=1)
        rc_ids = reverse_complement_padded(input_ids, lengths, self.complement_map)
        return 0.5 * (logits + self.head(self.features(rc_ids)))
