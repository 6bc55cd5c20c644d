"""Likelihood figures: nats/token, bits/base and perplexity from a summed NLL (or bound), and the
one line that reports them to people."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from dnadiff.objectives.mdlm import LossOutput

LN2 = math.log(2.0)


def likelihood_report(nll_sum: float, n_tokens: float) -> dict[str, float]:
    """nats/token, bits/base and perplexity from a summed NLL (or bound) and a token count."""
    nats = nll_sum / max(n_tokens, 1.0)
    return {"nats_per_token": nats, "bits_per_base": nats / LN2, "ppl": math.exp(min(nats, 700.0))}


def objective_report(nll_sum: float, n_tokens: float, likelihood: bool) -> dict[str, float]:
    """The figures an objective reports: likelihood units, or the masked-token CE of a non-likelihood (MLM)."""
    if likelihood:
        return likelihood_report(nll_sum, n_tokens)
    return {"masked_token_ce_nats": nll_sum / max(n_tokens, 1.0)}


def describe_report(report: Mapping[str, float], is_bound: bool, stderr: float | None = None) -> str:
    """One line for people: bits/base, NLL (+- its standard error) and PPL (marked <= for bounds),
    or the CE of a non-likelihood."""
    pm = f" +- {stderr:.4f}" if stderr is not None and math.isfinite(stderr) else ""
    if "masked_token_ce_nats" in report:
        return f"masked-token CE {report['masked_token_ce_nats']:.4f}{pm} nats (not a likelihood)"
    bound = "<= " if is_bound else ""
    pm_bits = f" +- {stderr / LN2:.4f}" if pm else ""
    return (f"{bound}{report['bits_per_base']:.4f}{pm_bits} bits/base, NLL {bound}{report['nats_per_token']:.4f}{pm} "
            f"nats/token, PPL {bound}{report['ppl']:.3f}")


class HeldoutNLL:
    """Accumulates an objective's held-out figure over evaluation batches, window by window.

    Each batch's :class:`~dnadiff.objectives.mdlm.LossOutput` adds its windows' NLL (averaged over
    the noise draws for bounds) and token counts, and, for bounds, each draw's value and the parts
    of the bound. ``sums()`` are what data-parallel processes add up. Two standard errors of
    nats/token:

    - ``standard_error()``, window-clustered: windows are the independent units (draws are nested
      in them), so the spread between windows carries both the test-set sampling and the Monte
      Carlo noise; it is the uncertainty of the figure as an estimate over the window population.
    - ``mc_standard_error()``, the Monte Carlo part alone (the windows held fixed), from the spread
      of the draws within each window. The draws' times are stratified (one per stratum), so the
      collapsed-strata estimator is used: draws of neighbouring strata are paired and the variance
      of a window's mean is sum_pairs (y_a - y_b)^2 / K^2 (for an odd K the i.i.d. formula
      var / K). Both err on the large side (they include the differences between strata means).
    """

    def __init__(self) -> None:
        self._nll: list[torch.Tensor] = []
        self._tokens: list[torch.Tensor] = []
        self._draws: list[torch.Tensor] = []
        self._terms: dict[str, list[torch.Tensor]] = {}

    def add(self, out: "LossOutput") -> None:
        """Add one evaluation batch."""
        self._nll.append(out.per_sequence.detach().double().cpu())
        self._tokens.append(out.tokens_per_sequence.detach().double().cpu())
        if out.per_draw is not None:
            self._draws.append(out.per_draw.detach().double().cpu())
        for name, value in (out.terms or {}).items():
            self._terms.setdefault(name, []).append(value.detach().double().cpu())

    def __len__(self) -> int:
        return int(sum(len(t) for t in self._tokens))

    def sums(self) -> torch.Tensor:
        """(summed NLL, summed tokens) as a float64 tensor of shape (2,)."""
        if not self._nll:
            return torch.zeros(2, dtype=torch.float64)
        return torch.stack([torch.cat(self._nll).sum(), torch.cat(self._tokens).sum()])

    def per_window(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(NLL, tokens) of every window in the order added, float64: what paired comparisons use."""
        if not self._nll:
            empty = torch.zeros(0, dtype=torch.float64)
            return empty, empty
        return torch.cat(self._nll), torch.cat(self._tokens)

    def term_per_token(self) -> dict[str, float]:
        """Each part of the bound (``diffusion``, ``prior``, ``reconstruction``) in nats/token."""
        n = float(self.sums()[1])
        return {name: float(torch.cat(v).sum()) / max(n, 1.0) for name, v in self._terms.items()}

    def standard_error(self) -> float:
        """Window-clustered standard error of nats/token (delta method for a ratio of sums); NaN for < 2 windows."""
        if len(self) < 2:
            return float("nan")
        y, n = self.per_window()
        ratio = y.sum() / n.sum()
        resid = y - ratio * n
        w = len(y)
        return float(torch.sqrt((resid**2).sum() / (w * (w - 1))) / n.mean())

    def mc_standard_error(self) -> float:
        """Monte Carlo standard error of nats/token for these windows (NaN without >= 2 draws per window).

        Expects each batch's ``per_draw`` columns in stratum order (as ``eval_batch`` gives them).
        """
        if not self._draws or len(self._draws) != len(self._nll) or self._draws[0].shape[1] < 2:
            return float("nan")
        draws = torch.cat(self._draws)
        k = draws.shape[1]
        if k % 2 == 0:
            var_of_mean = ((draws[:, 0::2] - draws[:, 1::2]) ** 2).sum(1) / k**2
        else:
            var_of_mean = draws.var(dim=1, unbiased=True) / k
        return float(torch.sqrt(var_of_mean.sum()) / self.sums()[1])
