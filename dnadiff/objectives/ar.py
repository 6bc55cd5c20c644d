"""AR baseline: next-token cross-entropy of a causal (unidirectional) model; an exact NLL.

Convention (shared with ``dnadiff.sampling.ar``): the model reads [BOS] x_1 ... x_{L-1} and its
output at position i is p_theta(x_i | x_<i). Per sequence,

    NLL(x) = -sum_{i: x_i != pad} log p_theta(x_i | [BOS], x_1, ..., x_{i-1}),

reported per token (nats/token). It is the exact negative log-likelihood (``is_bound = False``),
so evaluation needs no noise draws: ``eval_batch`` ignores the batch's ``t`` and ``uniforms``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dnadiff.objectives.mdlm import LossOutput


def require_causal(model: nn.Module) -> None:
    """Refuse a bidirectional model: its output at i would see x_i and the NLL would be meaningless."""
    if not getattr(model, "causal", False):
        arch = getattr(model, "arch", type(model).__name__)
        raise ValueError(f"objective=ar needs a causal model (model=mamba); model arch {arch!r} is bidirectional")


def shift_right(x: torch.Tensor, bos_id: int) -> torch.Tensor:
    """[BOS] + x[:, :-1]: the AR model's input for targets x."""
    return torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :-1]], dim=1)


class AutoRegressive:
    """Next-token cross-entropy with a [BOS] start token; exact NLL in nats/token."""

    likelihood = True
    is_bound = False

    def __init__(self, bos_id: int, pad_id: int) -> None:
        self.bos_id = int(bos_id)
        self.pad_id = int(pad_id)

    def token_nll(self, model: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """-log p_theta(x_i | [BOS], x_<i) per position (batch, length), pad targets included."""
        require_causal(model)
        kwargs = {} if cond is None else {"cond": cond}
        logits = model(shift_right(x, self.bos_id), **kwargs).float()
        return nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none")

    def loss(self, model: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> LossOutput:
        """NLL of x (batch, length) under the causal model; pad targets are neither scored nor counted."""
        nll = self.token_nll(model, x, cond)
        scored = x != self.pad_id
        return LossOutput.from_rows(torch.where(scored, nll, torch.zeros_like(nll)).sum(-1), scored.sum(-1))

    def batch_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Training loss on a stream batch (its diffusion noise is not used)."""
        return self.loss(model, batch["input_ids"], batch.get("cond"))

    def eval_batch(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Exact NLL of the evaluation windows (the batch's noise draws are ignored)."""
        return self.loss(model, batch["input_ids"], batch.get("cond"))
