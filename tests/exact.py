"""Exact computations at tiny length L, written from the definitions (SPEC sections 2-4, 6), for
checking the objectives' estimators and the samplers.

Everything here is independent of the package's estimators: mask patterns are enumerated, so
E_{z_t ~ q(.|x)}[.] is a finite sum; t-integrals use composite Gauss-Legendre quadrature; the
T-step generative model's likelihood p_T(x) is a dynamic programme over the sets of unmasked
positions; and the samplers' output distribution is the exact Markov chain over all
(|A,C,G,T| + 1)^L states. Only the schedules' alpha_t (tested on their own) and the tokenizer's
ids come from the package.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from dnadiff.objectives.schedules import NoiseSchedule
from dnadiff.tokenizer import Tokenizer

TOK = Tokenizer()
MASK = TOK.mask_id
ACGT = list(TOK.nucleotide_ids)
K = len(TOK)


class BayesOracle(nn.Module):
    """The exact denoiser of a distribution p over all 4^L sequences of A, C, G, T:
    x_theta^l(z)[v] = p(x^l = v | the unmasked tokens of z). Not time-conditioned.

    Its logits are log-probabilities (-inf off A, C, G, T and for impossible tokens).
    """

    def __init__(self, probs: torch.Tensor, length: int) -> None:
        super().__init__()
        seqs = torch.tensor(list(itertools.product(ACGT, repeat=length)), dtype=torch.long)
        if probs.shape != (len(seqs),):
            raise ValueError(f"need {len(seqs)} probabilities, got {tuple(probs.shape)}")
        self.register_buffer("seqs", seqs)
        self.register_buffer("probs", (probs / probs.sum()).double())
        self.length = length
        self.calls = 0

    def conditionals(self, z: torch.Tensor) -> torch.Tensor:
        """p(x^l = v | unmasked z) as float64 (B, L, K)."""
        consistent = ((z[:, None, :] == MASK) | (z[:, None, :] == self.seqs[None])).all(-1)
        weights = consistent.double() * self.probs[None]
        marg = torch.einsum("bn,nlv->blv", weights, nn.functional.one_hot(self.seqs, K).double())
        return marg / marg.sum(-1, keepdim=True)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return self.conditionals(z).log().float()


def encode(seqs: list[str]) -> torch.Tensor:
    return TOK.encode_batch(seqs)


def kmer_distribution(text: str, length: int, pseudo: float = 1.0) -> torch.Tensor:
    """Frequencies of the A/C/G/T k-mers of ``text`` (k = length), in BayesOracle's order, smoothed."""
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=length))}
    counts = np.full(len(index), pseudo)
    text = text.upper()
    for i in range(len(text) - length + 1):
        j = index.get(text[i:i + length])
        if j is not None:
            counts[j] += 1
    return torch.tensor(counts / counts.sum(), dtype=torch.float64)


def all_patterns(length: int) -> torch.Tensor:
    """Every mask pattern (2^L, L) (True = masked)."""
    return torch.tensor(list(itertools.product([False, True], repeat=length)), dtype=torch.bool)


def mdlm_position_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log x_theta[x] under SUBS (mask logit -inf), float64, at every position (..., L)."""
    logits = logits.double().masked_fill(torch.arange(logits.shape[-1]) == MASK, float("-inf"))
    return -torch.log_softmax(logits, -1).gather(-1, x.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def sedd_position_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SEDD's per-position score entropy sum_{y != m} s^_y - log s^_x - 1, s^_y = exp(o_y) / (K - 1), float64."""
    o = logits.double()
    real = torch.arange(o.shape[-1]) != MASK
    s = torch.where(real, o.exp() / (o.shape[-1] - 1), torch.zeros_like(o))
    log_s_x = o.gather(-1, x.expand(o.shape[:-1]).unsqueeze(-1)).squeeze(-1) - math.log(o.shape[-1] - 1)
    return s.sum(-1) - log_s_x - 1.0


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mdlm": mdlm_position_loss, "sedd": sedd_position_loss}


def alpha(schedule: NoiseSchedule, t: float | torch.Tensor) -> torch.Tensor:
    return schedule.alpha(torch.as_tensor(t, dtype=torch.float64))


class ExactBounds:
    """Exact bound terms of one sequence x for a non-time-conditioned network (or oracle).

    ``pattern_loss[j]`` is the summed per-position loss over the masked positions of pattern j
    (``loss`` = "mdlm": cross-entropy under SUBS; "sedd": score entropy).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, schedule: NoiseSchedule, loss: str = "mdlm") -> None:
        self.model, self.x, self.schedule = model, x, schedule
        self.patterns = all_patterns(x.shape[-1])
        z = torch.where(self.patterns, torch.full_like(x, MASK).expand(len(self.patterns), -1),
                        x.expand(len(self.patterns), -1))
        with torch.no_grad():
            per_pos = LOSSES[loss](model(z), x)
        self.pattern_loss = (per_pos * self.patterns).sum(-1)
        self.n_masked = self.patterns.sum(-1).double()
        self.length = x.shape[-1]

    def f(self, t: torch.Tensor) -> torch.Tensor:
        """E_{z_t ~ q(.|x)}[sum_{l masked} loss_l(z_t)] at times t (vector)."""
        a = alpha(self.schedule, t)[:, None]
        prob = (1 - a) ** self.n_masked[None] * a ** (self.length - self.n_masked[None])
        return (prob * self.pattern_loss[None]).sum(-1)

    def prior(self) -> float:
        """alpha_1 * sum_l loss_l(all-mask): KL(q(z_1|x) || p_theta(z_1)) for the MDLM loss."""
        return float(alpha(self.schedule, 1.0) * self.pattern_loss[-1])

    def integral(self, t_low: float) -> float:
        """int_{t_low}^1 -alpha'_t / (1 - alpha_t) f(t) dt, composite Gauss-Legendre (log-spaced pieces)."""
        edges = [t_low] + [e for e in (1e-4, 1e-3, 1e-2, 0.1) if e > t_low] + [1.0]
        nodes, weights = np.polynomial.legendre.leggauss(96)
        total = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            t = torch.tensor(a + (b - a) * (nodes + 1) / 2, dtype=torch.float64)
            w = torch.tensor(weights * (b - a) / 2, dtype=torch.float64)
            total += float((w * self.schedule.weight(t) * self.f(t)).sum())
        return total

    def nelbo(self) -> float:
        """The continuous-time bound: prior + int_0^1 + reconstruction at t = 0."""
        return self.prior() + self.integral(0.0) + float(self.f(torch.zeros(1, dtype=torch.float64)))

    def eval_bound(self, t_min: float) -> float:
        """What evaluation estimates: prior + int_{t_min}^1 + reconstruction at t_min."""
        return self.prior() + self.integral(t_min) + float(self.f(torch.tensor([t_min], dtype=torch.float64)))

    def discrete(self, steps: int) -> float:
        """L_T: prior + sum_i (alpha_s - alpha_t) / (1 - alpha_t) f(t_i) + reconstruction at t = 0."""
        i = torch.arange(1, steps + 1, dtype=torch.float64)
        t, s = i / steps, (i - 1) / steps
        a_t, a_s = alpha(self.schedule, t), alpha(self.schedule, s)
        steps_sum = float(((a_s - a_t) / (1 - a_t) * self.f(t)).sum())
        return self.prior() + steps_sum + float(self.f(torch.zeros(1, dtype=torch.float64)))


def neg_log_p_T(model: nn.Module, x: torch.Tensor, schedule: NoiseSchedule, steps: int) -> float:
    """-log p_T(x) of the T-step model, exactly, by a dynamic programme over unmasked sets.

    The model: z at alpha = 0 is all-mask; one step to alpha_1 (each position unmasked with
    probability alpha_1, its token from x_theta(all-mask)); then steps t_i = i/T -> s_i = (i-1)/T
    with p(z_s | z_t) = q(z_s | z_t, x_theta(z_t)); finally x from x_theta(z_0) at the positions
    still masked (none when alpha_0 = 1). Only paths that unmask to x's own tokens can end at x.
    """
    length = x.shape[-1]
    patterns = all_patterns(length)  # masked sets; state j <-> pattern j
    z = torch.where(patterns, torch.full_like(x, MASK).expand(len(patterns), -1), x.expand(len(patterns), -1))
    with torch.no_grad():
        logp = torch.log_softmax(model(z).double().masked_fill(torch.arange(K) == MASK, float("-inf")), -1)
    p_x = logp.gather(-1, x.expand(len(patterns), -1).unsqueeze(-1)).squeeze(-1).exp()  # (S, L)
    masked = patterns.double()
    # transition probability from state a to state b (b's masked set within a's)
    sub = (patterns[None, :, :] <= patterns[:, None, :]).all(-1)  # sub[a, b]: masked(b) subset of masked(a)

    def step(prob: torch.Tensor, p_unmask: float) -> torch.Tensor:
        newly = masked[:, None, :] * (1 - masked[None, :, :])  # (a, b, L): unmasked in this step
        stay = masked[None, :, :]  # still masked in b
        factor = torch.where(newly > 0, p_unmask * p_x[:, None, :], torch.ones_like(newly))
        factor = factor * torch.where(stay > 0, torch.full_like(stay, 1 - p_unmask), torch.ones_like(stay))
        trans = factor.prod(-1) * sub
        return prob @ trans

    prob = torch.zeros(len(patterns), dtype=torch.float64)
    prob[-1] = 1.0  # all-mask
    a_1 = float(alpha(schedule, 1.0))
    if a_1 > 0:
        prob = step(prob, a_1)
    for i in range(steps, 0, -1):
        a_t, a_s = float(alpha(schedule, i / steps)), float(alpha(schedule, (i - 1) / steps))
        prob = step(prob, (a_s - a_t) / (1 - a_t))
    final = torch.where(patterns, p_x, torch.ones_like(p_x)).prod(-1)  # x from x_theta at the masks left
    return float(-torch.log((prob * final).sum()))


def chain_distribution(oracle: BayesOracle, schedule: NoiseSchedule, steps: int) -> dict[tuple[int, ...], float]:
    """The exact output distribution of the ancestral sampler's chain (SPEC section 6) for an oracle.

    From z = all-mask at t = 1, steps i = T..1: each masked position is unmasked with probability
    (alpha_s - alpha_t) / (1 - alpha_t) (1 at the last step), its token drawn from the oracle's
    x_theta(z) of the current z; unmasked positions are kept.
    """
    length = oracle.length
    dist: dict[tuple[int, ...], float] = {(MASK,) * length: 1.0}
    for i in range(steps, 0, -1):
        a_t, a_s = float(alpha(schedule, i / steps)), float(alpha(schedule, (i - 1) / steps))
        p_unmask = 1.0 if i == 1 else (a_s - a_t) / (1 - a_t)
        states = list(dist)
        cond = oracle.conditionals(torch.tensor(states, dtype=torch.long))
        new: dict[tuple[int, ...], float] = {}
        for state, probs in zip(states, cond):
            options = []
            for pos, tok in enumerate(state):
                if tok != MASK:
                    options.append([(tok, 1.0)])
                else:
                    opts = [(v, p_unmask * float(probs[pos, v])) for v in ACGT if probs[pos, v] > 0]
                    if p_unmask < 1.0:
                        opts.append((MASK, 1.0 - p_unmask))
                    options.append(opts)
            for combo in itertools.product(*options):
                key = tuple(tok for tok, _ in combo)
                new[key] = new.get(key, 0.0) + dist[state] * math.prod(p for _, p in combo)
        dist = new
    return dist
