"""A motif grammar: a block of given motifs at given spacings somewhere in the sequence, in a
background free of forbidden k-mers (e.g. restriction sites).

The block is motif_1, gap_1 free positions, motif_2, ..., motif_k (motifs may repeat, so k
copies of one motif at fixed spacings is a block too). The language at length L:

    p(x) = (1 / Z) * sum over offsets o in 0..L-B with the block at o of prod_{l not a motif position of o} q(x_l)
           * [no forbidden k-mer occurs anywhere in x],

i.e. "choose the block's offset uniformly, fill every other position (the gaps included) with
iid bases from q (the background's base composition), and reject sequences that contain a
forbidden k-mer". A sequence that holds the block at two offsets is counted at both.
``is_valid``: the block's motifs match at some offset and no forbidden k-mer is a substring.
The default forbids EcoRI (GAATTC) and BamHI (GGATCC), palindromic, so both strands are clean.

In chain form: one site per position, states = (phase, Aho-Corasick state of the forbidden-
k-mer automaton); phase 0 = block not started, p = 1..B = block position p - 1 just written
(B = block complete, the background continues). Edges into a forbidden match are absent, and
only phase B is final, so the block must be complete by the end.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from dnadiff.data.languages.base import BASES, Language
from dnadiff.data.languages.chain import DTYPE, Site, SiteChain

DEFAULT_MOTIFS = ("CACGTG", "AGATAA", "CACGTG")  # E-box, GATA site, E-box
DEFAULT_GAPS = (10, 10)
DEFAULT_FORBIDDEN = ("GAATTC", "GGATCC")  # EcoRI, BamHI
FREE = "N"


class KmerAutomaton:
    """Aho-Corasick automaton over A/C/G/T for a set of forbidden k-mers: ``step(state, v)``, ``dead``."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        goto: list[dict[int, int]] = [{}]
        out = [False]
        for pat in patterns:
            node = 0
            for ch in pat:
                v = BASES.index(ch)
                if v not in goto[node]:
                    goto.append({})
                    out.append(False)
                    goto[node][v] = len(goto) - 1
                node = goto[node][v]
            out[node] = True
        fail = [0] * len(goto)
        delta = np.zeros((len(goto), 4), dtype=np.int64)
        queue: deque[int] = deque()
        for v in range(4):
            if v in goto[0]:
                child = goto[0][v]
                delta[0, v] = child
                queue.append(child)
        while queue:
            node = queue.popleft()
            out[node] = out[node] or out[fail[node]]
            for v in range(4):
                if v in goto[node]:
                    child = goto[node][v]
                    fail[child] = delta[fail[node], v]
                    delta[node, v] = child
                    queue.append(child)
                else:
                    delta[node, v] = delta[fail[node], v]
        self.delta = delta
        self.dead = np.array(out, dtype=bool)
        self.n_states = len(goto)


class MotifGrammarLanguage(Language):
    """Motif block at a free offset, background without forbidden k-mers (module docstring)."""

    name = "motifs"

    def __init__(self, base_probs: np.ndarray, motifs: tuple[str, ...] = DEFAULT_MOTIFS,
                 gaps: tuple[int, ...] = DEFAULT_GAPS, forbidden: tuple[str, ...] = DEFAULT_FORBIDDEN,
                 fallback_rate: float = 1e-3) -> None:
        super().__init__(fallback_rate)
        motifs, gaps, forbidden = tuple(motifs), tuple(int(g) for g in gaps), tuple(forbidden)
        if not motifs or len(gaps) != len(motifs) - 1 or any(g < 0 for g in gaps):
            raise ValueError(f"need k >= 1 motifs and k - 1 gaps >= 0, got motifs={motifs}, gaps={gaps}")
        for seq in motifs + forbidden:
            if not seq or set(seq) - set(BASES):
                raise ValueError(f"motifs and forbidden k-mers must be non-empty A/C/G/T strings, got {seq!r}")
        self.motifs, self.gaps, self.forbidden = motifs, gaps, forbidden
        self.block = motifs[0] + "".join(FREE * g + m for g, m in zip(gaps, motifs[1:]))
        self.min_length = len(self.block)
        base_probs = np.asarray(base_probs, dtype=np.float64)
        if base_probs.shape != (4,) or (base_probs <= 0).any():
            raise ValueError(f"base_probs must be 4 positive numbers, got {base_probs}")
        self.base_probs = base_probs / base_probs.sum()
        self.automaton = KmerAutomaton(forbidden)

    def describe(self, length: int) -> dict:
        return {"name": self.name, "length": length, "motifs": list(self.motifs), "gaps": list(self.gaps),
                "forbidden": list(self.forbidden), "block_length": len(self.block)}

    def _edges(self) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, float]]]:
        """Reachable states (phase, automaton state) and edges (src, dst, symbol, weight)."""
        block, delta, dead = self.block, self.automaton.delta, self.automaton.dead
        index = {(0, 0): 0}
        states = [(0, 0)]
        edges = []
        queue: deque[int] = deque([0])

        def target(phase: int, q: int, v: int, w: float, src: int) -> None:
            nq = int(delta[q, v])
            if dead[nq]:
                return
            key = (phase, nq)
            if key not in index:
                index[key] = len(states)
                states.append(key)
                queue.append(index[key])
            edges.append((src, index[key], v, w))

        while queue:
            s = queue.popleft()
            phase, q = states[s]
            moves = []
            if phase in (0, len(block)):
                moves += [(phase, v, self.base_probs[v]) for v in range(4)]
            if phase < len(block):
                ch = block[phase]
                if ch == FREE:
                    moves += [(phase + 1, v, self.base_probs[v]) for v in range(4)]
                else:
                    moves.append((phase + 1, BASES.index(ch), 1.0))
            for nphase, v, w in moves:
                target(nphase, q, v, float(w), s)
        return states, edges

    def build_chain(self, length: int) -> SiteChain:
        states, edges = self._edges()
        src, dst, sym, w = (torch.tensor([e[i] for e in edges]) for i in range(4))
        n = len(states)
        sites = [Site((pos,), src, dst, sym, w.to(DTYPE), n, n) for pos in range(length)]
        init = torch.zeros(n, dtype=DTYPE)
        init[0] = 1.0
        final = torch.tensor([1.0 if phase == len(self.block) else 0.0 for phase, _ in states], dtype=DTYPE)
        return SiteChain(length, init, sites, final)

    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        length, blen = codes.shape[1], len(self.block)
        fixed = [(i, BASES.index(c)) for i, c in enumerate(self.block) if c != FREE]
        pos = torch.tensor([i for i, _ in fixed])
        want = torch.tensor([v for _, v in fixed])
        found = torch.zeros(codes.shape[0], dtype=torch.bool)
        for o in range(length - blen + 1):
            found |= (codes[:, o + pos] == want).all(-1)
        clean = torch.ones(codes.shape[0], dtype=torch.bool)
        for kmer in self.forbidden:
            k = len(kmer)
            target = torch.tensor([BASES.index(c) for c in kmer])
            if k > length:
                continue
            windows = codes.unfold(1, k, 1)  # (B, L-k+1, k)
            clean &= ~(windows == target).all(-1).any(-1)
        return found & clean
