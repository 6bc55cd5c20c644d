"""Configs of evaluation: the held-out noise draws, ``python -m dnadiff.evaluate`` and
``python -m dnadiff.evaluate_samples``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from dnadiff.config import ConfigError, key, one_of, positive_int, require
from dnadiff.data.config import DataConfig

SPLITS: tuple[str, ...] = ("train", "valid", "test")
EVALUATE_SPLITS: tuple[str, ...] = (*SPLITS, "all")  # all = every window of every contig of data.fasta


@dataclass
class EvalConfig:
    """The noise of a held-out bound: ``draws`` (t, z_t) draws per window, fixed by ``seed``."""

    draws: int = 4
    seed: int = 1234

    def validate(self, prefix: str = "eval") -> None:
        positive_int(self.draws, key(prefix, "draws"))


@dataclass
class EvaluateConfig:
    """``python -m dnadiff.evaluate``: the likelihood of a checkpoint on held-out windows."""

    ckpt: str = MISSING
    split: str = "test"  # train | valid | test (by data.bed / data.chromosomes / the block rule) | all
    out: Optional[str] = None  # null = <ckpt folder>/eval_<split>.json
    device: str = "auto"
    use_ema: bool = True
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=None, max_eval_windows=512))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(draws=8))

    def validate(self, prefix: str = "") -> None:
        one_of(self.split, key(prefix, "split"), EVALUATE_SPLITS)
        require(self.split != "all" or self.data.source == "genome",
                f"{key(prefix, 'split')}=all evaluates every window of a genome FASTA (data.source=genome); "
                f"data.source={self.data.source} has the splits {', '.join(SPLITS)}")


REFERENCE_KEYS: dict[str, Any] = {"fasta": None, "task": None, "class": None, "split": "test", "max_sequences": 2000}


@dataclass
class MetricsConfig:
    """Which sample metrics to compute and how."""

    kmer_max: int = 6  # k-mer JS for k = 1..kmer_max
    plot_k: int = 6  # k of the k-mer scatter plot
    nn_both_strands: bool = True
    nn_max_samples: int = 256  # samples checked for memorisation (exact FFT search)
    motifs: bool = True
    motif_file: Optional[str] = None  # JASPAR file; null = the shipped human core set
    motif_fpr: float = 1e-4  # hit threshold: score with this false-positive rate on uniform DNA

    def validate(self, prefix: str = "metrics") -> None:
        for name in ("kmer_max", "plot_k"):
            value = getattr(self, name)
            require(isinstance(value, int) and 1 <= value <= 12, f"{key(prefix, name)} must be in 1..12, got {value!r}")
        positive_int(self.nn_max_samples, key(prefix, "nn_max_samples"))
        require(0 < self.motif_fpr < 1, f"{key(prefix, 'motif_fpr')} must be in (0, 1), got {self.motif_fpr!r}")


@dataclass
class EvaluateSamplesConfig:
    """``python -m dnadiff.evaluate_samples``: quality metrics of generated sequences."""

    samples: str = MISSING
    out: str = MISSING
    # reference set: {fasta, task, class, split, max_sequences}; a plain mapping because
    # ``class`` is not a Python identifier (see reference_settings)
    reference: Dict[str, Any] = field(default_factory=lambda: dict(REFERENCE_KEYS))
    data: DataConfig = field(default_factory=DataConfig)
    ar_ckpt: Optional[str] = None
    classifier_ckpt: Optional[str] = None
    device: str = "auto"
    batch_size: int = 32
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    plots: bool = True

    def validate(self, prefix: str = "") -> None:
        unknown = sorted(set(self.reference) - set(REFERENCE_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {['reference.' + k for k in unknown]}; "
                              f"valid: {sorted('reference.' + k for k in REFERENCE_KEYS)}")
        self.reference = {**REFERENCE_KEYS, **self.reference}
        one_of(self.reference["split"], "reference.split", SPLITS)
        positive_int(self.reference["max_sequences"], "reference.max_sequences")
        positive_int(self.batch_size, key(prefix, "batch_size"))
