"""MLM baseline: BERT-style masked language modelling on the same backbones.

Not a likelihood model (``likelihood = False``, ``is_bound = False``): its figure is the
cross-entropy on the selected positions, not an NLL of the sequence, and must not be read as a
perplexity. The corruption is a deterministic function of the batch's per-token uniforms u
(so that resume and data parallelism stay exact). With p = select_prob (0.15), and
v = u / p for a selected position:

    selected  <=> u < p and x != pad                          (probability p)
    [MASK]    <=> v < mask_frac                               (80% of selected)
    random    <=> mask_frac <= v < mask_frac + random_frac    (10%): nucleotide
                  A, C, G, T = floor(4 w), w = (v - mask_frac) / random_frac
    unchanged <=> otherwise                                   (10%)

Because u is uniform, v and w are uniform on [0, 1) given the previous events, so these are the
BERT rates exactly. Loss = sum over selected positions of -log softmax(logits)[x] / #selected.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dnadiff.objectives.mdlm import LossOutput, call_model


class MaskedLM:
    """BERT-style 15% selection (80% [MASK], 10% random nucleotide, 10% unchanged), CE on selected."""

    likelihood = False
    is_bound = False

    def __init__(
        self,
        mask_id: int,
        pad_id: int,
        nucleotide_ids: list[int],
        select_prob: float = 0.15,
        mask_frac: float = 0.8,
        random_frac: float = 0.1,
    ) -> None:
        if not 0.0 < select_prob < 1.0:
            raise ValueError(f"mlm select_prob must be in (0, 1), got {select_prob}")
        if mask_frac < 0.0 or random_frac < 0.0 or mask_frac + random_frac > 1.0:
            raise ValueError(f"mlm mask_frac + random_frac must be within [0, 1], got {mask_frac} + {random_frac}")
        self.mask_id = int(mask_id)
        self.pad_id = int(pad_id)
        self.nucleotide_ids = torch.tensor(list(nucleotide_ids), dtype=torch.long)
        self.select_prob = float(select_prob)
        self.mask_frac = float(mask_frac)
        self.random_frac = float(random_frac)

    def corrupt(self, x: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted input, selected mask) from x and one U[0,1) per token (see the module docstring)."""
        u = uniforms.double()
        selected = (u < self.select_prob) & (x != self.pad_id)
        v = u / self.select_prob
        to_mask = selected & (v < self.mask_frac)
        to_random = selected & (v >= self.mask_frac) & (v < self.mask_frac + self.random_frac)
        w = ((v - self.mask_frac) / self.random_frac) if self.random_frac > 0 else torch.zeros_like(v)
        n_nuc = len(self.nucleotide_ids)
        pick = (w * n_nuc).floor().long().clamp(0, n_nuc - 1)
        random_tok = self.nucleotide_ids.to(x.device)[pick]
        z = torch.where(to_mask, torch.full_like(x, self.mask_id), x)
        z = torch.where(to_random, random_tok, z)
        return z, selected

    def loss(
        self, model: nn.Module, x: torch.Tensor, uniforms: torch.Tensor, cond: torch.Tensor | None = None
    ) -> LossOutput:
        """Cross-entropy on the selected positions (nats per selected token); ``n_tokens`` = #selected."""
        z, selected = self.corrupt(x, uniforms)
        logits = call_model(model, z, cond, None).float()
        ce = nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none")
        return LossOutput.from_rows(torch.where(selected, ce, torch.zeros_like(ce)).sum(-1), selected.sum(-1))

    def batch_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Training loss on a stream batch; the selection comes from its ``uniforms`` (``t`` is unused)."""
        return self.loss(model, batch["input_ids"], batch["uniforms"], batch.get("cond"))

    def eval_batch(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Masked-token CE pooled over the batch's fixed draws (uniforms (B, draws, L)).

        ``nll_sum`` and ``n_tokens`` are summed over the draws, so nll_sum / n_tokens is the mean CE
        per selected token.
        """
        x, u_all = batch["input_ids"], batch["uniforms"]
        outs = [self.loss(model, x, u_all[:, k], batch.get("cond")) for k in range(u_all.shape[1])]
        per_seq = torch.stack([o.per_sequence for o in outs]).sum(0)
        return LossOutput.from_rows(per_seq, torch.stack([o.tokens_per_sequence for o in outs]).sum(0))
