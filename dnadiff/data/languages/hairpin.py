"""Hairpins: a stem arm, a loop, then the reverse complement of the arm (a long-range pairing rule).

At length L the loop has ``loop(L) = max(min_loop, round(loop_fraction * L))`` positions,
rounded up by one when needed so that the two arms have equal length a = (L - loop) / 2:

    x[0:a]        arm, and with the loop x[0:a+loop] is a path of the background Markov chain;
    x[a:a+loop]   loop;
    x[a+loop:L]   the reverse complement of the arm: x[L-1-i] = complement(x[i]) for i < a.

So p(x) = p_background(x[0:a+loop]) if the stem pairs, else 0, and ``is_valid`` checks the
pairing. The chain runs over pairs: site i < a covers the positions (i, L-1-i) and writes
(v, complement(v)) with the background's P(v | context); the loop sites continue the chain.
A hairpin is RC-palindromic on its stem (rc(x) has the same stem), a natural test of
reverse-complement-equivariant backbones.
"""

from __future__ import annotations

import torch

from dnadiff.data.languages.base import COMPLEMENT_CODE, Language
from dnadiff.data.languages.chain import DTYPE, Site, SiteChain
from dnadiff.data.languages.markov import MarkovLanguage


class HairpinLanguage(Language):
    """Stem-loop sequences over a background Markov chain (module docstring)."""

    name = "hairpin"

    def __init__(self, background: MarkovLanguage, loop_fraction: float = 0.25, min_loop: int = 3,
                 fallback_rate: float = 1e-3) -> None:
        super().__init__(fallback_rate)
        if not 0.0 <= loop_fraction < 1.0:
            raise ValueError(f"loop_fraction must be in [0, 1), got {loop_fraction}")
        if isinstance(min_loop, bool) or not isinstance(min_loop, int) or min_loop < 0:
            raise ValueError(f"min_loop must be an int >= 0, got {min_loop!r}")
        self.background = background
        self.loop_fraction = float(loop_fraction)
        self.min_loop = int(min_loop)
        self.min_length = self.min_loop + 2

    def geometry(self, length: int) -> tuple[int, int]:
        """(arm length a, loop length) at ``length``."""
        length = self.check_length(length)
        loop = max(self.min_loop, round(self.loop_fraction * length))
        if (length - loop) % 2:
            loop += 1
        return (length - loop) // 2, loop

    def describe(self, length: int) -> dict:
        arm, loop = self.geometry(length)
        return {"name": self.name, "length": length, "arm": arm, "loop": loop,
                "background_order": self.background.order, "fitted_on": self.background.source}

    def build_chain(self, length: int) -> SiteChain:
        arm, loop = self.geometry(length)
        src, dst, sym, w = self.background.context_edges()
        n = 4**self.background.order
        pair_sym = torch.stack([sym, COMPLEMENT_CODE[sym]], dim=1)
        sites = [Site((i, length - 1 - i), src, dst, pair_sym, w, n, n) for i in range(arm)]
        sites += [Site((pos,), src, dst, sym, w, n, n) for pos in range(arm, arm + loop)]
        pi = torch.as_tensor(self.background.pi, dtype=DTYPE)
        return SiteChain(length, pi, sites, torch.ones(n, dtype=DTYPE))

    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        arm, _ = self.geometry(codes.shape[1])
        if arm == 0:
            return torch.ones(codes.shape[0], dtype=torch.bool)
        left = codes[:, :arm]
        right = codes[:, codes.shape[1] - arm:].flip(-1)
        return (COMPLEMENT_CODE[left] == right).all(-1)
