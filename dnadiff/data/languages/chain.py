"""A weighted finite-state chain over "sites": the exact machinery behind every checkable language.

A sequence of length L is emitted by J sites in a fixed order. Site j covers a tuple of
positions P_j (one position, an arm pair (i, L-1-i) of a hairpin, a codon, or none for a
silent transition) and has a list of edges e = (src, dst, symbols, weight): from state src
(before the site) to state dst (after it), writing ``symbols`` (one code 0..3 = A, C, G, T per
position of P_j) with weight w_e >= 0. With initial weights pi over the states before site 0
and final weights f over the states after site J-1,

    W(x) = sum over edge paths e_0..e_{J-1} of pi(src_0) prod_j w_{e_j} [symbols_j = x at P_j] f(dst_{J-1}),
    p(x) = W(x) / Z,   Z = sum_x W(x).

Every position must be covered by exactly one site. Evidence generalises the indicator: a
(B, L, 4) array E with E[b, l, v] >= 0 (all ones at a masked position, a one-hot at an
observed one, or a soft noisy-channel vector), W_E = sum over paths of the same product times
prod_j prod_r E[P_j[r], symbols_j[r]].

- ``log_partition(E)``: log W_E by the scaled forward algorithm (log Z with all-ones E; the
  exact log p(x) is log W_onehot(x) - log Z).
- ``marginals(E)``: the exact posterior p(x^l = v | E) at every position, by forward-backward:
  the posterior of edge e at site j is alpha_{j-1}(src) w_e E_e beta_j(dst) / W_E and the
  marginal of position P_j[r] is the sum of the edge posteriors with symbols[r] = v.
- ``sample(n, generator, E)``: exact draws from p(x | E) (backward filtering, then forward
  sampling of edges with weights w_e E_e beta_j(dst)).

Arithmetic is float64 by default (``to(torch.float32)`` gives a copy that runs about twice as
fast, exact up to float32 rounding, for long sampling sweeps); alphas and betas are renormalised
at every site (their logs are accumulated) so that nothing underflows at L in the thousands. Batches are processed in chunks
of ``chunk`` rows to bound memory (the forward pass stores one (rows, states) alpha per site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DTYPE = torch.float64
DENSE_MAX = 1 << 16  # states_in * states_out up to which a site steps by a dense matrix product


@dataclass
class Site:
    """One site: its positions and edges (src -> dst writing ``symbols`` with ``weight``)."""

    positions: tuple[int, ...]
    src: torch.Tensor
    dst: torch.Tensor
    symbols: torch.Tensor
    weight: torch.Tensor
    n_in: int
    n_out: int
    _out_table: torch.Tensor | None = field(default=None, repr=False)
    dense: torch.Tensor | None = field(default=None, repr=False)
    dst_symbols: torch.Tensor | None = field(default=None, repr=False)
    _onehot_cache: dict = field(default_factory=dict, repr=False)
    dtype: torch.dtype = DTYPE

    def __post_init__(self) -> None:
        self.src = torch.as_tensor(self.src, dtype=torch.long)
        self.dst = torch.as_tensor(self.dst, dtype=torch.long)
        self.weight = torch.as_tensor(self.weight, dtype=self.dtype)
        sym = torch.as_tensor(self.symbols, dtype=torch.long)
        self.symbols = sym.reshape(len(self.src), len(self.positions))
        e = len(self.src)
        if not (len(self.dst) == len(self.weight) == e) or e == 0:
            raise ValueError(f"site at positions {self.positions}: src, dst, weight must have the same length >= 1")
        if bool((self.weight < 0).any()) or not bool(torch.isfinite(self.weight).all()):
            raise ValueError(f"site at positions {self.positions}: edge weights must be finite and >= 0")
        if int(self.src.min()) < 0 or int(self.src.max()) >= self.n_in:
            raise ValueError(f"site at positions {self.positions}: src outside 0..{self.n_in - 1}")
        if int(self.dst.min()) < 0 or int(self.dst.max()) >= self.n_out:
            raise ValueError(f"site at positions {self.positions}: dst outside 0..{self.n_out - 1}")
        if self.symbols.numel() and (int(self.symbols.min()) < 0 or int(self.symbols.max()) > 3):
            raise ValueError(f"site at positions {self.positions}: symbols must be codes 0..3")
        self._try_dense()

    def _try_dense(self) -> None:
        """Dense form when the written symbols are a function of dst: then a step is one matrix product."""
        if self.n_in * self.n_out > DENSE_MAX:
            return
        dst_symbols = torch.full((self.n_out, len(self.positions)), -1, dtype=torch.long)
        dst_symbols[self.dst] = self.symbols
        if not torch.equal(dst_symbols[self.dst], self.symbols):
            return
        dense = torch.zeros(self.n_in, self.n_out, dtype=self.dtype)
        dense.index_put_((self.src, self.dst), self.weight, accumulate=True)
        self.dense, self.dst_symbols = dense, dst_symbols.clamp(min=0)

    def dst_evidence(self, evidence: torch.Tensor) -> torch.Tensor | None:
        """prod_r E[:, P[r], symbols of dst] per state after the site, (B, n_out) (dense form)."""
        return _product(evidence, self.positions, self.onehots(self.dst_symbols))

    def edge_evidence(self, evidence: torch.Tensor) -> torch.Tensor | None:
        """prod_r E[:, P[r], symbols[:, r]] per edge, (B, E); None for a silent site."""
        return _product(evidence, self.positions, self.onehots(self.symbols))

    def onehots(self, symbols: torch.Tensor) -> list[torch.Tensor]:
        """(4, n) float64 one-hot of each column of ``symbols`` (cached per tensor)."""
        key = id(symbols)
        if key not in self._onehot_cache:
            self._onehot_cache[key] = [torch.nn.functional.one_hot(symbols[:, r], 4).to(self.dtype).T.contiguous()
                                       for r in range(symbols.shape[1])]
        return self._onehot_cache[key]

    def to(self, dtype: torch.dtype) -> "Site":
        """A copy computing in ``dtype``."""
        return Site(self.positions, self.src, self.dst, self.symbols, self.weight.to(dtype), self.n_in, self.n_out,
                    dtype=dtype)

    def evidence(self, evidence: torch.Tensor) -> torch.Tensor | None:
        """The site's evidence factor: per state after it (dense form) or per edge (B, ...)."""
        if self.dense is not None:
            return self.dst_evidence(evidence)
        return self.edge_evidence(evidence)

    def out_table(self) -> torch.Tensor:
        """(n_in, max out-degree) edge ids leaving each state, padded with -1 (for sampling)."""
        if self._out_table is None:
            order = torch.argsort(self.src, stable=True)
            counts = torch.bincount(self.src, minlength=self.n_in)
            width = max(1, int(counts.max()))
            table = torch.full((self.n_in, width), -1, dtype=torch.long)
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(len(order)) - starts[self.src[order]]
            table[self.src[order], slot] = order
            self._out_table = table
        return self._out_table


def _product(evidence: torch.Tensor, positions: tuple[int, ...], onehots: list[torch.Tensor]) -> torch.Tensor | None:
    """prod_r evidence[:, positions[r], :] @ onehots[r]: each column's evidence, multiplied over positions."""
    ev = None
    for pos, onehot in zip(positions, onehots):
        part = evidence[:, pos, :] @ onehot
        ev = part if ev is None else ev * part
    return ev


def _normalise(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows divided by their sums (zero rows kept at zero), and the log of the sums (-inf for zero rows)."""
    total = a.sum(-1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return a / safe.unsqueeze(-1), torch.log(total)


class SiteChain:
    """The weighted chain of a language at one length (module docstring)."""

    def __init__(self, length: int, init: torch.Tensor, sites: list[Site], final: torch.Tensor,
                 chunk: int = 1024, dtype: torch.dtype = DTYPE) -> None:
        self.length = int(length)
        self.dtype = dtype
        self.init = torch.as_tensor(init, dtype=dtype)
        self.final = torch.as_tensor(final, dtype=dtype)
        self.sites = list(sites)
        self.chunk = int(chunk)
        covered = [p for s in self.sites for p in s.positions]
        if sorted(covered) != list(range(self.length)):
            raise ValueError(f"sites must cover every position 0..{self.length - 1} exactly once")
        n_in = len(self.init)
        for s in self.sites:
            if s.n_in != n_in:
                raise ValueError(f"site at positions {s.positions} expects {s.n_in} input states, the chain has {n_in}")
            n_in = s.n_out
        if len(self.final) != n_in:
            raise ValueError(f"final weights have {len(self.final)} entries for {n_in} states")
        if any(site.dtype != dtype for site in self.sites):
            raise ValueError(f"every site must compute in the chain's dtype {dtype}")
        self.log_z = float(self.log_partition(torch.ones(1, self.length, 4, dtype=dtype))[0])
        if not math.isfinite(self.log_z):
            raise ValueError("the language is empty at this length (its total weight is 0)")

    def to(self, dtype: torch.dtype) -> "SiteChain":
        """A copy of the chain computing in ``dtype``."""
        return SiteChain(self.length, self.init, [s.to(dtype) for s in self.sites], self.final, self.chunk, dtype)

    # ----------------------------------------------------------------------------- passes
    def _chunks(self, n: int):
        for i in range(0, n, self.chunk):
            yield slice(i, min(n, i + self.chunk))

    def _forward(self, evidence: torch.Tensor) -> tuple[list[torch.Tensor], list, torch.Tensor]:
        """Normalised alphas before every site, every site's evidence factor, and log W_E per row."""
        rows = evidence.shape[0]
        a, log_scale = _normalise(self.init.expand(rows, -1))
        alphas, evs = [], []
        for site in self.sites:
            alphas.append(a)
            ev = site.evidence(evidence)
            evs.append(ev)
            a, log_c = _normalise(self._step(site, a, ev))
            log_scale = log_scale + log_c
        return alphas, evs, log_scale + torch.log((a * self.final).sum(-1))

    @staticmethod
    def _step(site: Site, a: torch.Tensor, ev: torch.Tensor | None) -> torch.Tensor:
        """Unnormalised alpha after ``site`` from alpha before it."""
        if site.dense is not None:
            out = a @ site.dense
            return out if ev is None else out * ev
        m = a.index_select(1, site.src) * site.weight
        if ev is not None:
            m = m * ev
        return m.new_zeros(a.shape[0], site.n_out).index_add_(1, site.dst, m)

    @staticmethod
    def _back_step(site: Site, b: torch.Tensor, ev: torch.Tensor | None) -> torch.Tensor:
        """Unnormalised beta before ``site`` from beta after it."""
        if site.dense is not None:
            return (b if ev is None else b * ev) @ site.dense.T
        wb = b.index_select(1, site.dst) * site.weight
        if ev is not None:
            wb = wb * ev
        return wb.new_zeros(b.shape[0], site.n_in).index_add_(1, site.src, wb)

    def _backward(self, evidence: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Normalised betas after every site (index j = after site j), and beta before site 0."""
        rows = evidence.shape[0]
        b, _ = _normalise(self.final.expand(rows, -1))
        betas: list[torch.Tensor] = [b] * len(self.sites)
        for j in range(len(self.sites) - 1, -1, -1):
            site = self.sites[j]
            betas[j] = b
            b, _ = _normalise(self._back_step(site, b, site.evidence(evidence)))
        return betas, b

    def _check_evidence(self, evidence: torch.Tensor) -> torch.Tensor:
        evidence = torch.as_tensor(evidence).to(self.dtype)
        if evidence.dim() != 3 or evidence.shape[1:] != (self.length, 4):
            raise ValueError(f"evidence must be (batch, {self.length}, 4), got {tuple(evidence.shape)}")
        return evidence

    def log_partition(self, evidence: torch.Tensor) -> torch.Tensor:
        """log W_E per row (B,): -inf where the evidence is impossible."""
        evidence = self._check_evidence(evidence)
        return torch.cat([self._forward(evidence[c])[2] for c in self._chunks(evidence.shape[0])])

    def marginals(self, evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(x^l = v | E), (B, L, 4), and log W_E (B,). Rows with W_E = 0 get all-zero marginals."""
        evidence = self._check_evidence(evidence)
        outs, logs = [], []
        for c in self._chunks(evidence.shape[0]):
            out, log_w = self._marginals(evidence[c])
            outs.append(out)
            logs.append(log_w)
        return torch.cat(outs), torch.cat(logs)

    def _marginals(self, evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = evidence.shape[0]
        alphas, evs, log_w = self._forward(evidence)
        out = evidence.new_zeros(rows, self.length, 4)
        b, _ = _normalise(self.final.expand(rows, -1))
        for j in range(len(self.sites) - 1, -1, -1):
            site, ev = self.sites[j], evs[j]
            if site.dense is not None:
                wb = b if ev is None else b * ev
                post, _ = _normalise((alphas[j] @ site.dense) * wb)
                onehots = site.onehots(site.dst_symbols)
                b, _ = _normalise(wb @ site.dense.T)
            else:
                wb = b.index_select(1, site.dst) * site.weight
                if ev is not None:
                    wb = wb * ev
                post, _ = _normalise(alphas[j].index_select(1, site.src) * wb)
                onehots = site.onehots(site.symbols)
                b, _ = _normalise(wb.new_zeros(rows, site.n_in).index_add_(1, site.src, wb))
            for pos, onehot in zip(site.positions, onehots):
                out[:, pos, :] = post @ onehot.T
        return out, log_w

    def sample(self, n: int, generator: torch.Generator | None = None,
               evidence: torch.Tensor | None = None) -> torch.Tensor:
        """n exact draws (codes, (n, L)) from p(x), or from p(x | E) with evidence (B = n rows)."""
        if evidence is None:
            evidence = torch.ones(n, self.length, 4, dtype=self.dtype)
        evidence = self._check_evidence(evidence)
        if evidence.shape[0] != n:
            raise ValueError(f"evidence has {evidence.shape[0]} rows for {n} samples")
        return torch.cat([self._sample(evidence[c], generator) for c in self._chunks(n)])

    def _sample(self, evidence: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        rows = evidence.shape[0]
        betas, b0 = self._backward(evidence)
        first = self.init.unsqueeze(0) * b0
        if bool((first.sum(-1) <= 0).any()):
            raise ValueError("cannot sample: the evidence is impossible under the language for some rows")
        state = _draw(first, generator)
        x = torch.zeros(rows, self.length, dtype=torch.long)
        row_idx = torch.arange(rows).unsqueeze(-1)
        for j, site in enumerate(self.sites):
            table = site.out_table()[state]  # (rows, D) edge ids, -1 padded
            valid = table >= 0
            edges = table.clamp(min=0)
            w = site.weight[edges] * betas[j].gather(1, site.dst[edges])
            ev = site.edge_evidence(evidence)
            if ev is not None:
                w = w * ev.gather(1, edges)
            w = torch.where(valid, w, torch.zeros_like(w))
            chosen = edges[row_idx.squeeze(-1), _draw(w, generator)]
            if site.positions:
                x[:, list(site.positions)] = site.symbols[chosen]
            state = site.dst[chosen]
        return x


def _draw(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of non-negative (unnormalised) float64 ``weights``, by inverse CDF in float64."""
    cdf = torch.cumsum(weights, dim=-1)
    u = (1.0 - torch.rand(weights.shape[0], generator=generator, dtype=torch.float64)).to(weights.dtype) * cdf[:, -1]
    idx = (cdf < u.unsqueeze(-1)).sum(-1)
    return idx.clamp(max=weights.shape[-1] - 1)
