"""Checkable DNA languages with exact likelihoods (issue 16): the ground truth of the
"how many steps?" experiment.

- :class:`MarkovLanguage`: a stationary order-k Markov chain fitted on real hg38 (every sequence
  valid: token error only);
- :class:`HairpinLanguage`: arm, loop, reverse-complement arm (long-range pairs);
- :class:`OrfLanguage`: ATG, sense codons with human codon usage, a stop codon (local triples);
- :class:`MotifGrammarLanguage`: a motif block at a free offset, no forbidden k-mer.

Each has ``sample``, exact ``log_prob``, ``is_valid`` and ``posterior_marginals`` (the exact
oracle's conditionals, wrapped as a sampler denoiser by :class:`LanguageDenoiser`).
:func:`build_language` makes one by name, all sharing one background fitted on a FASTA.
"""

from __future__ import annotations

from pathlib import Path

from dnadiff.data.languages.base import Language, codes_to_ids, ids_to_codes
from dnadiff.data.languages.chain import Site, SiteChain
from dnadiff.data.languages.hairpin import HairpinLanguage
from dnadiff.data.languages.markov import MarkovLanguage
from dnadiff.data.languages.motifs import MotifGrammarLanguage
from dnadiff.data.languages.oracle import LanguageDenoiser
from dnadiff.data.languages.orf import OrfLanguage

LANGUAGES = ("markov", "hairpin", "orf", "motifs")

__all__ = [
    "LANGUAGES", "HairpinLanguage", "Language", "LanguageDenoiser", "MarkovLanguage", "MotifGrammarLanguage",
    "OrfLanguage", "Site", "SiteChain", "build_language", "codes_to_ids", "ids_to_codes",
]


def build_language(name: str, background: MarkovLanguage | None = None, fasta: str | Path | None = None,
                   order: int = 3) -> Language:
    """The language ``name`` with its defaults, over ``background`` (else an order-``order`` chain fitted on ``fasta``)."""
    if name not in LANGUAGES:
        raise ValueError(f"unknown language {name!r}; valid: {list(LANGUAGES)}")
    bg = background if background is not None else MarkovLanguage.fit(fasta, order=order)
    if name == "markov":
        return bg
    if name == "hairpin":
        return HairpinLanguage(bg)
    if name == "orf":
        return OrfLanguage(bg.base_composition())
    return MotifGrammarLanguage(bg.base_composition())
