"""MDLM: the continuous-time masked-diffusion NELBO with the SUBS parameterisation.

Forward process: every token is independently replaced by the mask with probability 1 - alpha_t.
Reverse model (SUBS): x_theta(z_t) is the network's softmax with the mask logit forced to -inf,
and equals z_t wherever z_t is not the mask (carry-over unmasking). Objective, per sequence:

    NELBO = E_t E_{z_t} [ -alpha'_t / (1 - alpha_t) * sum_{l: z_t^l = m} -log x_theta^l(z_t)[x^l] ],

reported per token (nats/token), and, for evaluation, the discrete-time T-step bound L_T.

What evaluation reports (``eval_batch``) is a complete upper bound on -log p_theta(x), with
the two end terms that the training loss leaves out:

    bound = KL(q(z_1|x) || p_theta(z_1))                       (prior, exact)
          + int_{t_min}^1 w(t) E_{z_t}[sum_{l masked} loss_l] dt (continuous part, Monte Carlo)
          + E_{z_{t_min}}[-log p_theta(x | z_{t_min})]          (reconstruction, Monte Carlo)

p_theta(z_1) is one reverse step from the all-mask state (alpha = 0) to alpha_1: each position
stays masked with probability 1 - alpha_1 or takes a token from x_theta(all-mask, t=1), so the
prior term is exactly alpha_1 * sum_l -log x_theta^l(all-mask)[x^l] (about eps * CE(all-mask),
0 for a schedule with alpha_1 = 0). The chain ends at t_min, where the remaining masks are filled
from x_theta (the reconstruction term; for the log-linear schedule it is about t_min * CE per
token, for the cosine one alpha_0 < 1 adds to it). With u ~ U[0, 1) and t = t_min + (1 - t_min) u
the continuous part is (1 - t_min) E_u[w(t) ...]. For SEDD ``loss_l`` is its score-entropy term,
which upper-bounds the cross-entropy of its normalised scores (Z - 1 >= log Z), so the sum stays
an upper bound.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from dnadiff.noise import stratified
from dnadiff.objectives.schedules import NoiseSchedule


def time_from_uniform(u: torch.Tensor, t_min: float) -> torch.Tensor:
    """Map a uniform u in [0, 1) to a diffusion time t = (1 - t_min) u + t_min in [t_min, 1)."""
    return (1.0 - t_min) * u + t_min


def sample_times(
    batch_size: int,
    t_min: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    antithetic: bool = True,
    offset: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """Times t in [t_min, 1] for a batch, low-discrepancy (antithetic) by default.

    The uniforms are :func:`dnadiff.noise.stratified` over slots ``offset .. offset + batch_size``
    of a batch of ``total`` (data parallelism: every process draws its slice of the same
    stratified set), then mapped by :func:`time_from_uniform`.
    """
    total = batch_size if total is None else total
    if antithetic:
        u = torch.rand((), generator=generator, device=device)
        idx = torch.arange(offset, offset + batch_size, device=device, dtype=torch.float32)
        u = stratified(u, idx, total)
    else:
        u = torch.rand(batch_size, generator=generator, device=device)
    return time_from_uniform(u, t_min)


def forward_mask(
    x: torch.Tensor,
    alpha_t: torch.Tensor,
    mask_id: int,
    uniforms: torch.Tensor | None = None,
    maskable: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample z_t ~ q(z_t | x): each maskable token becomes ``mask_id`` with probability 1 - alpha_t.

    ``alpha_t`` has shape (batch,); ``uniforms`` (batch, length) may be given for reproducible noise.
    """
    if uniforms is None:
        uniforms = torch.rand(x.shape, generator=generator, device=x.device)
    masked = uniforms < (1.0 - alpha_t).unsqueeze(-1)
    if maskable is not None:
        masked = masked & maskable
    return torch.where(masked, torch.full_like(x, mask_id), x)


def subs_log_probs(logits: torch.Tensor, z_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log x_theta under SUBS: mask logit -inf, then carry-over (log one-hot of z_t where unmasked)."""
    logits = logits.float().clone()
    logits[..., mask_id] = float("-inf")
    log_probs = torch.log_softmax(logits, dim=-1)
    carry = torch.full_like(log_probs, float("-inf"))
    carry.scatter_(-1, z_t.unsqueeze(-1), 0.0)
    return torch.where((z_t != mask_id).unsqueeze(-1), carry, log_probs)


def masked_nll(logits: torch.Tensor, x: torch.Tensor, z_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """-log x_theta^l(z_t)[x^l] per position; exactly 0 where z_t is not masked (carry-over).

    Computed without materialising -inf so that gradients stay finite.
    """
    logits = logits.float()
    logits = logits.masked_fill(
        torch.arange(logits.shape[-1], device=logits.device) == mask_id, float("-inf")
    )
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    return torch.where(z_t == mask_id, nll, torch.zeros_like(nll))


@dataclass
class LossOutput:
    """A batch's objective: ``loss`` (nats/token, what is minimised) and its parts for exact averaging.

    ``per_sequence`` is each row's summed NLL (averaged over the noise draws of an evaluation
    batch) and ``tokens_per_sequence`` the tokens it is counted over. Evaluation batches of the
    diffusion objectives also give ``per_draw`` (batch, draws), each draw's value of the row in
    increasing t (their mean is ``per_sequence``; their spread is the Monte Carlo noise), and ``terms``, the
    per-row parts of the bound (``diffusion``, ``prior``, ``reconstruction``) that add up to
    ``per_sequence``.
    """

    loss: torch.Tensor
    nll_sum: torch.Tensor
    n_tokens: torch.Tensor
    per_sequence: torch.Tensor
    tokens_per_sequence: torch.Tensor
    per_draw: Optional[torch.Tensor] = None
    terms: Optional[dict[str, torch.Tensor]] = None

    @classmethod
    def from_rows(cls, per_sequence: torch.Tensor, tokens_per_sequence: torch.Tensor) -> "LossOutput":
        """The batch figure from per-row NLL sums and token counts (loss = sum NLL / sum tokens)."""
        nll_sum, n_tokens = per_sequence.sum(), tokens_per_sequence.sum()
        return cls(nll_sum / n_tokens.clamp(min=1), nll_sum, n_tokens, per_sequence, tokens_per_sequence)


def call_model(model: nn.Module, z: torch.Tensor, cond: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor:
    """Run the network, passing the time only to time-conditioned models."""
    if getattr(model, "time_conditioned", False):
        return model(z, cond=cond, t=t)
    return model(z, cond=cond)


class MaskedDiffusion(ABC):
    """Absorbing-state diffusion objectives on the schedule's NELBO weight: what MDLM and SEDD share.

    Subclasses define ``position_loss(logits, x, z_t)``, the per-position term at masked positions
    (0 elsewhere); the continuous-time objective weights it by -alpha'_t / (1 - alpha_t).
    """

    likelihood = True
    is_bound = True

    def __init__(
        self,
        schedule: NoiseSchedule,
        mask_id: int,
        pad_id: int,
        t_min: float = 1e-3,
        antithetic: bool = True,
    ) -> None:
        self.schedule = schedule
        self.mask_id = int(mask_id)
        self.pad_id = int(pad_id)
        self.t_min = float(t_min)
        self.antithetic = bool(antithetic)

    @abstractmethod
    def position_loss(self, logits: torch.Tensor, x: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        """Per-position loss term (batch, length), exactly 0 where z_t is not masked."""

    def _weighted(
        self,
        model: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        weight: torch.Tensor,
        cond: torch.Tensor | None,
        uniforms: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> LossOutput:
        maskable = x != self.pad_id
        z_t = forward_mask(x, self.schedule.alpha(t), self.mask_id, uniforms, maskable, generator)
        logits = call_model(model, z_t, cond, t)
        per_seq = (self.position_loss(logits, x, z_t) * weight.unsqueeze(-1)).sum(-1)
        return LossOutput.from_rows(per_seq, maskable.sum(-1))

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        uniforms: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """One-sample estimate of the continuous-time NELBO (nats/token), weighted by -alpha'/(1-alpha)."""
        if t is None:
            t = sample_times(x.shape[0], self.t_min, generator, x.device, self.antithetic)
        return self._weighted(model, x, t, self.schedule.weight(t), cond, uniforms, generator)

    def batch_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Training loss on a stream batch, which carries its own noise (``t_u`` and ``uniforms``)."""
        t = time_from_uniform(batch["t_u"], self.t_min)
        return self.loss(model, batch["input_ids"], batch.get("cond"), t=t, uniforms=batch["uniforms"])

    def prior_term(self, model: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z_1 | x) || p_theta(z_1)) per row, exactly: alpha_1 * sum_l loss_l(all-mask input, t = 1).

        Zero without a network call when alpha_1 = 0 (e.g. the cosine schedule). Pad positions
        stay pad in the all-mask input and contribute nothing. Without pads and conditions, and
        with the model in eval mode, every row's input is the same all-mask sequence: the network
        runs on one row and its output serves them all.
        """
        t = torch.ones(x.shape[0], device=x.device)
        a_1 = self.schedule.alpha(t)
        if not bool((a_1 > 0).any()):
            return torch.zeros(x.shape[0], device=x.device)
        z = torch.where(x != self.pad_id, torch.full_like(x, self.mask_id), x)
        if cond is None and not getattr(model, "training", True) and not bool((x == self.pad_id).any()):
            logits = call_model(model, z[:1], None, t[:1]).expand(x.shape[0], *([-1] * (z.dim())))
        else:
            logits = call_model(model, z, cond, t)
        return a_1 * self.position_loss(logits, x, z).sum(-1)

    def reconstruction_term(
        self,
        model: nn.Module,
        x: torch.Tensor,
        t_end: float,
        cond: torch.Tensor | None = None,
        uniforms: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """-log p_theta(x | z) per row for one draw z ~ q(z_{t_end} | x): the masked positions' loss.

        The network runs only on the rows that have a masked position (at t_end ~ 0 most have none).
        """
        t = torch.full((x.shape[0],), float(t_end), device=x.device)
        z = forward_mask(x, self.schedule.alpha(t), self.mask_id, uniforms, x != self.pad_id, generator)
        out = torch.zeros(x.shape[0], device=x.device)
        rows = (z == self.mask_id).any(-1).nonzero().squeeze(-1)
        if rows.numel():
            c = None if cond is None else cond[rows]
            logits = call_model(model, z[rows], c, t[rows])
            out[rows] = self.position_loss(logits, x[rows], z[rows]).sum(-1)
        return out

    def eval_batch(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """The bound of the module doc per window, averaged over the batch's fixed draws (t_k, z_k).

        Draw k estimates the continuous part by (1 - t_min) w(t_k) * loss(z_{t_k}) and the
        reconstruction term from z_{t_min} made with the same token uniforms; the prior is exact.
        ``per_draw`` holds each draw's value of the window, its columns in increasing t (so that
        neighbouring columns come from neighbouring strata of the stratified times).
        """
        x, cond = batch["input_ids"], batch.get("cond")
        t_all, u_all = time_from_uniform(batch["t_u"], self.t_min), batch["uniforms"]
        batch_size, draws = t_all.shape
        diffusion = torch.stack([
            self._weighted(model, x, t_all[:, k], (1.0 - self.t_min) * self.schedule.weight(t_all[:, k]), cond,
                           u_all[:, k], None).per_sequence
            for k in range(draws)
        ], dim=1)
        flat_cond = None if cond is None else cond.repeat_interleave(draws, 0)
        recon = self.reconstruction_term(model, x.repeat_interleave(draws, 0), self.t_min, flat_cond,
                                         u_all.reshape(batch_size * draws, -1)).view(batch_size, draws)
        prior = self.prior_term(model, x, cond)
        per_draw = (diffusion + recon + prior.unsqueeze(-1)).gather(1, t_all.argsort(1))
        per_seq = per_draw.mean(1)
        per_seq_tokens = (x != self.pad_id).sum(-1)
        n_tokens = per_seq_tokens.sum()
        nll_sum = per_seq.sum()
        terms = {"diffusion": diffusion.mean(1), "prior": prior, "reconstruction": recon.mean(1)}
        return LossOutput(nll_sum / n_tokens.clamp(min=1), nll_sum, n_tokens, per_seq, per_seq_tokens,
                          per_draw, terms)


class MDLM(MaskedDiffusion):
    """The MDLM objective: continuous-time NELBO for training, discrete-time L_T for evaluation."""

    def position_loss(self, logits: torch.Tensor, x: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        """-log x_theta(z_t)[x] under SUBS at masked positions."""
        return masked_nll(logits, x, z_t, self.mask_id)

    def discrete_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        num_steps: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """One-sample estimate of the T-step bound L_T (nats/token), prior and reconstruction included.

        L_T = KL(q(z_1|x) || p_theta(z_1)) + sum_i E_q[(alpha_s - alpha_t)/(1 - alpha_t) * masked CE]
        + E_{z_0}[-log p_theta(x | z_0)] with t = i/T, s = (i-1)/T; the sum is estimated as T times
        the term of a uniformly drawn step i, the prior exactly (see :meth:`prior_term`), the
        reconstruction at t = 0 from one draw (exactly 0 when alpha_0 = 1, as for the log-linear
        schedule; not for the cosine one).
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        i = torch.randint(1, num_steps + 1, (x.shape[0],), generator=generator, device=x.device)
        t = i.float() / num_steps
        s = (i.float() - 1.0) / num_steps
        a_t, a_s = self.schedule.alpha(t), self.schedule.alpha(s)
        weight = num_steps * (a_s - a_t) / (1.0 - a_t)
        steps = self._weighted(model, x, t, weight, cond, None, generator)
        prior = self.prior_term(model, x, cond)
        recon = self.reconstruction_term(model, x, 0.0, cond, generator=generator)
        per_seq = steps.per_sequence + prior + recon
        nll_sum = per_seq.sum()
        terms = {"diffusion": steps.per_sequence, "prior": prior, "reconstruction": recon}
        return LossOutput(nll_sum / steps.n_tokens.clamp(min=1), nll_sum, steps.n_tokens, per_seq,
                          steps.tokens_per_sequence, None, terms)
