"""Guidance of MDLM sampling toward a class c. Both wrappers have the
:class:`~dnadiff.sampling.denoiser.Denoiser` call ``(z, t, rows) -> log x_theta`` and so plug
into every sampler; guidance acts only on masked positions (carry-over keeps the rest).

Classifier-free guidance (a model trained with label dropout, ``n_classes > 0``; label
``n_classes`` is the null label). With guidance weight gamma, per masked position l:

    log x_gamma^l(v) = log x_u^l(v) + gamma * (log x_c^l(v) - log x_u^l(v))   (then renormalised)
                     = (1 - gamma) log x_u^l(v) + gamma log x_c^l(v),

x_c = x_theta(z | c), x_u = x_theta(z | null). gamma = 0 is unconditional sampling, gamma = 1
conditional sampling, gamma > 1 sharpens toward c (x_gamma ∝ x_u * (x_c / x_u)^gamma, the
discrete analogue of p(x) p(c | x)^gamma). Each call runs the network twice (c and null), once
when gamma is 0 (null only) or 1 (c only).

Classifier-based guidance (any classifier ``f(input_ids) -> class logits``). The guided
denoiser is x_gamma^l(v) ∝ x_theta^l(v) * p(c | z with z^l := v)^gamma, with the classifier
applied to the partially masked z. Evaluating p(c | z^{l:=v}) for every l and v costs L * |V|
classifier calls, so it is approximated to first order in the one-hot input (Taylor-
approximated guidance, as in Nisonoff et al. 2024, "Unlocking guidance for discrete state-space
diffusion and flow models"):

    log p(c | z^{l:=v}) ≈ log p(c | z) + g^l(v) - g^l(z^l),   g = d log p(c | z) / d onehot(z),

and since g^l(z^l) and log p(c | z) do not depend on v they vanish in the renormalisation:

    log x_gamma^l(v) = log x_theta^l(v) + gamma * g^l(v)   (renormalised over the allowed tokens).

The gradient is taken through the classifier's token embedding: every ``nn.Embedding`` called
with a tensor of z's shape is fed onehot(ids) @ W instead of W[ids], so gradients reach the
one-hot. An embedding of rc(z) (Caduceus-PS, post-hoc conjoining) is mapped back to z's
positions and complemented tokens. The classifier sees mask tokens it may not have been
trained on; a noise-aware classifier would be better, any classifier is accepted.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnadiff.sampling.denoiser import Denoiser
from dnadiff.tokenizer import Tokenizer, reverse_complement_ids


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def cfg_log_probs(log_p_cond: torch.Tensor, log_p_uncond: torch.Tensor, gamma: float) -> torch.Tensor:
    """log x_u + gamma (log x_c - log x_u), renormalised; -inf where either input is -inf.

    gamma = 0 returns log x_u exactly, gamma = 1 log x_c (up to renormalisation rounding).
    """
    mixed = log_p_uncond + gamma * (_finite(log_p_cond) - _finite(log_p_uncond))
    valid = torch.isfinite(log_p_cond) & torch.isfinite(log_p_uncond)
    mixed = mixed.masked_fill(~valid, float("-inf"))
    if gamma == 0:
        return mixed
    return torch.log_softmax(mixed, dim=-1)


class ClassifierFreeGuidance:
    """CFG denoiser: mixes x_theta(z | c) and x_theta(z | null) with weight gamma (module doc)."""

    def __init__(self, base: Denoiser, target: torch.Tensor, gamma: float) -> None:
        n_classes = int(getattr(base.model, "n_classes", 0) or 0)
        if n_classes < 1:
            raise ValueError(
                "classifier-free guidance needs a class-conditional model (n_classes > 0), got n_classes=0"
            )
        if target.dim() != 1:
            raise ValueError(f"target labels must be (batch,), got shape {tuple(target.shape)}")
        if int(target.min()) < 0 or int(target.max()) >= n_classes:
            raise ValueError(f"target class out of range 0..{n_classes - 1}: {target.tolist()}")
        self.base = base
        self.target = target.long()
        self.null = torch.full_like(self.target, n_classes)
        self.gamma = float(gamma)
        self.time_conditioned = base.time_conditioned

    def __call__(self, z: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        target = self.target if rows is None else self.target[rows]
        null = self.null if rows is None else self.null[rows]
        if self.gamma == 0:
            return self.base.log_probs(z, t, null)
        if self.gamma == 1:
            return self.base.log_probs(z, t, target)
        log_u = self.base.log_probs(z, t, null)
        log_c = self.base.log_probs(z, t, target)
        return cfg_log_probs(log_c, log_u, self.gamma)


class _OneHotEmbeddings:
    """Context manager: token embeddings of ``classifier`` read a differentiable one-hot of their input."""

    def __init__(self, classifier: nn.Module, shape: torch.Size) -> None:
        self.classifier = classifier
        self.shape = shape
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handles: list = []

    def _hook(self, module: nn.Embedding, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        ids = inputs[0]
        if ids.shape != self.shape:
            return None
        onehot = F.one_hot(ids, module.num_embeddings).to(module.weight.dtype).requires_grad_(True)
        self.calls.append((ids, onehot))
        return onehot @ module.weight

    def __enter__(self) -> "_OneHotEmbeddings":
        for module in self.classifier.modules():
            if isinstance(module, nn.Embedding):
                self.handles.append(module.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def onehot_gradient(
    classifier: nn.Module, z: torch.Tensor, target: torch.Tensor, vocab_size: int, tokenizer: Tokenizer | None = None
) -> torch.Tensor:
    """g = d log p(target | z) / d onehot(z), shape (B, L, vocab_size), through the token embedding(s).

    An embedding called on rc(z) contributes its gradient flipped along the sequence with
    complemented token columns; any other input raises a ValueError. z itself is recognised by
    its storage, so an RC-palindromic z is not mistaken for rc(z).
    """
    comp = (tokenizer or Tokenizer()).complement_map.to(z.device)
    rc_z = reverse_complement_ids(z, comp)
    with torch.enable_grad(), _OneHotEmbeddings(classifier, z.shape) as hooked:
        logits = classifier(z)
        if not hooked.calls:
            raise ValueError(
                "classifier guidance: the classifier has no nn.Embedding called on the (batch, length) input ids"
            )
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).sum()
        grads = torch.autograd.grad(log_p, [oh for _, oh in hooked.calls], allow_unused=True)
    total = torch.zeros((*z.shape, vocab_size), device=z.device)
    for (ids, _), grad in zip(hooked.calls, grads):
        if grad is None:
            continue
        grad = grad[..., :vocab_size].float()
        same_storage = ids.data_ptr() == z.data_ptr()
        if same_storage or (torch.equal(ids, z) and not torch.equal(ids, rc_z)):
            total += grad
        elif torch.equal(ids, rc_z):
            total += grad.flip(1)[..., comp[:vocab_size]]
        else:
            raise ValueError("classifier guidance: an embedding was called on ids that are neither z nor rc(z)")
    return total


class ClassifierGuidance:
    """Classifier-based denoiser: log x_theta + gamma * d log p(c | z) / d onehot(z) (module doc)."""

    def __init__(self, base: Denoiser, classifier: nn.Module, target: torch.Tensor, gamma: float) -> None:
        if target.dim() != 1:
            raise ValueError(f"target labels must be (batch,), got shape {tuple(target.shape)}")
        self.base = base
        self.classifier = classifier
        self.target = target.long()
        self.gamma = float(gamma)
        self.time_conditioned = base.time_conditioned

    def __call__(self, z: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        log_x = self.base(z, t, rows)
        if self.gamma == 0:
            return log_x
        target = self.target if rows is None else self.target[rows]
        grad = onehot_gradient(self.classifier, z, target, log_x.shape[-1])
        guided = log_x + self.gamma * grad
        return torch.log_softmax(guided, dim=-1)
