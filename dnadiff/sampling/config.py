"""The ``python -m dnadiff.generate`` config: the checkpoint, the sampler and its options,
infilling templates and guidance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from dnadiff.config import ConfigError, in_range, key, one_of, optional_positive_int, positive_int, require
from dnadiff.sampling.common import PRECISIONS
from dnadiff.sampling.confidence import SCORES
from dnadiff.sampling.registry import SAMPLERS
from dnadiff.sampling.remask import STRATEGIES

FINAL_MODES: tuple[str, ...] = ("sample", "argmax")
TOKEN_SETS: tuple[str, ...] = ("ACGT", "ACGTN")
GUIDANCE_KEYS: dict[str, Any] = {"class": None, "weight": 1.0, "classifier": None}
MOTIF_CODES = frozenset("ACGTNacgtn")  # what a fixed motif may hold


@dataclass
class SemiARConfig:
    """Semi-autoregressive generation beyond the training length."""

    block_length: Optional[int] = None  # null = the checkpoint's training seq_len
    prefix_length: Optional[int] = None  # null = half the block, kept (unmasked) from the previous block
    cache: bool = True  # reuse x_theta inside each block

    def validate(self, prefix: str = "semi_ar") -> None:
        optional_positive_int(self.block_length, key(prefix, "block_length"), minimum=2)
        optional_positive_int(self.prefix_length, key(prefix, "prefix_length"), minimum=0)


@dataclass
class ConfidenceConfig:
    """Confidence-ordered unmasking (``sampler=confidence``; :mod:`dnadiff.sampling.confidence`)."""

    score: str = "max_prob"  # max_prob | margin | neg_entropy
    # Gumbel noise of this scale on the ranking (0: the pure confidence order). A trained model's
    # scores at an all-mask start differ only by boundary effects; without noise T = 8 then unmasks
    # neighbours together (hg38 model, L = 128: generative PPL 4.07 vs 3.83 for ancestral; 3.81
    # with 0.02; bench/results/steps_genome). 0.02 reorders only near-ties of max_prob.
    gumbel: float = 0.02
    block_length: Optional[int] = None  # semi-AR blocks, left to right (LLaDA); null = the whole sequence at once
    min_gap: int = 1  # positions unmasked in one step are at least this far apart (3 keeps codons apart)
    cache: bool = True  # skip the network when no position changed

    def validate(self, prefix: str = "confidence") -> None:
        one_of(self.score, key(prefix, "score"), SCORES)
        in_range(self.gumbel, key(prefix, "gumbel"), 0.0, float("inf"))
        optional_positive_int(self.block_length, key(prefix, "block_length"))
        positive_int(self.min_gap, key(prefix, "min_gap"))


@dataclass
class RemaskConfig:
    """ReMDM remasking (``sampler=remask``; :mod:`dnadiff.sampling.remask`, Wang et al. 2025)."""

    strategy: str = "loop"  # cap | rescale | conf | loop
    eta: float = 0.02  # remasking scale (cap: max sigma; rescale: fraction of sigma_max; loop: sigma)
    t_on: float = 0.55  # loop: the remasking phase runs from t_on down to t_off, alpha held at alpha_on
    t_off: float = 0.05
    alpha_on: float = 0.9
    cache: bool = True  # reuse x_theta for rows whose z did not change

    def validate(self, prefix: str = "remask") -> None:
        one_of(self.strategy, key(prefix, "strategy"), STRATEGIES)
        in_range(self.eta, key(prefix, "eta"), 0.0, 1.0)
        if self.strategy == "loop":
            in_range(self.alpha_on, key(prefix, "alpha_on"), 0.0, 1.0, low_open=True, high_open=True)
            in_range(self.t_off, key(prefix, "t_off"), 0.0, 1.0, high_open=True)
            require(self.t_off < self.t_on < 1.0, f"{key(prefix, 't_on')} must be in ({key(prefix, 't_off')}="
                    f"{self.t_off!r}, 1), got {self.t_on!r}")
            limit = (1.0 - self.alpha_on) / self.alpha_on
            require(self.eta <= limit, f"{key(prefix, 'eta')}={self.eta!r} is too large for {key(prefix, 'alpha_on')}"
                    f"={self.alpha_on!r}: need eta <= (1 - alpha_on) / alpha_on = {limit:.4g}")


@dataclass
class InfillConfig:
    """A template: a genome region with a span to generate, or a motif fixed in a generated sequence."""

    fasta: Optional[str] = None  # FASTA holding the region
    region: Optional[str] = None  # CONTIG:START-END, 1-based inclusive
    mask: Optional[str] = None  # START-END within the region (1-based inclusive): the span to generate
    motif: Optional[str] = None  # a motif to fix in an otherwise generated sequence
    motif_position: Optional[int] = None  # 1-based start of the motif

    def validate(self, prefix: str = "infill") -> None:
        genome = (self.fasta, self.region, self.mask)
        require(all(v is None for v in genome) or all(v is not None for v in genome),
                f"infilling from a genome needs {key(prefix, 'fasta')}, {key(prefix, 'region')} and "
                f"{key(prefix, 'mask')} together")
        require(self.motif is None or self.region is None,
                f"{key(prefix, 'motif')} and {key(prefix, 'region')} are two templates: give one")
        require(self.motif is None or self.motif_position is not None,
                f"{key(prefix, 'motif')} needs {key(prefix, 'motif_position')} (1-based)")
        optional_positive_int(self.motif_position, key(prefix, "motif_position"))
        if self.motif is not None:
            motif = str(self.motif)
            bad = sorted({c for c in motif if c not in MOTIF_CODES})
            require(motif != "" and not bad, f"{key(prefix, 'motif')} must be a sequence of A, C, G, T, N "
                    f"(either case), got {motif!r}" + (f" (bad: {', '.join(map(repr, bad))})" if bad else ""))


@dataclass
class GenerateConfig:
    """``python -m dnadiff.generate``: sample sequences from a checkpoint to FASTA."""

    ckpt: str = MISSING  # MDLM, SEDD or AR checkpoint, or an export folder
    out: str = MISSING  # output FASTA
    num_samples: int = 16
    length: Optional[int] = None  # bp; with an infill region, the region's length
    sampler: str = "cached"  # see dnadiff.sampling.registry.SAMPLERS
    steps: int = 128  # T diffusion steps (per block for semi_ar)
    seed: Optional[int] = 0  # null = a fresh random seed
    temperature: float = 1.0  # x_theta^(1/temperature), renormalised
    top_p: float = 1.0  # nucleus: keep the most probable tokens up to this mass
    final: str = "sample"  # the last step fills the remaining masks by a draw or the argmax of x_theta
    precision: str = "float32"  # float64: categorical draws (softmax, CDF, uniforms) in float64, exact for rare tokens
    tokens: str = "ACGT"  # tokens a generated sequence may contain
    batch_size: int = 64
    device: str = "auto"
    semi_ar: SemiARConfig = field(default_factory=SemiARConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    remask: RemaskConfig = field(default_factory=RemaskConfig)
    infill: InfillConfig = field(default_factory=InfillConfig)
    # {class, weight, classifier}; a plain mapping because ``class`` is not a Python identifier
    guidance: Dict[str, Any] = field(default_factory=lambda: dict(GUIDANCE_KEYS))

    def validate(self, prefix: str = "") -> None:
        one_of(self.sampler, key(prefix, "sampler"), SAMPLERS)
        one_of(self.final, key(prefix, "final"), FINAL_MODES)
        one_of(self.tokens, key(prefix, "tokens"), TOKEN_SETS)
        one_of(self.precision, key(prefix, "precision"), PRECISIONS)
        positive_int(self.num_samples, key(prefix, "num_samples"))
        positive_int(self.batch_size, key(prefix, "batch_size"))
        positive_int(self.steps, key(prefix, "steps"))
        optional_positive_int(self.length, key(prefix, "length"))
        require(self.temperature > 0, f"{key(prefix, 'temperature')} must be > 0, got {self.temperature!r}")
        require(0 < self.top_p <= 1, f"{key(prefix, 'top_p')} must be in (0, 1], got {self.top_p!r}")
        inf = self.infill
        if inf.motif is not None and self.length is not None and inf.motif_position is not None:
            last = inf.motif_position + len(str(inf.motif)) - 1
            require(last <= self.length, f"infill.motif ({len(str(inf.motif))} bp) at infill.motif_position="
                    f"{inf.motif_position} ends at {last}, beyond length={self.length}")
        unknown = sorted(set(self.guidance) - set(GUIDANCE_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {['guidance.' + k for k in unknown]}; "
                              f"valid: {sorted('guidance.' + k for k in GUIDANCE_KEYS)}")
        self.guidance = {**GUIDANCE_KEYS, **self.guidance}
        weight = self.guidance["weight"]
        require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0,
                f"guidance.weight must be a number >= 0, got {weight!r}")
