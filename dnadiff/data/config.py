"""The ``data`` config group: where training and evaluation sequences come from, and how they are cut.

One dataclass for both sources (``source: genome``, the default, or ``source: benchmark``); the
keys of the other source are ignored. Every default is stated here once; the group files
(``configs/data/*.yaml``) set only what their recipe changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from dnadiff.config import in_range, key, one_of, optional_positive_int, positive_int, require

SOURCES: tuple[str, ...] = ("genome", "benchmark")


@dataclass
class DataConfig:
    """Genome windows (FASTA + BED / chromosome lists / block rule) or a Genomic Benchmarks task."""

    source: str = "genome"
    # genome windows
    fasta: Optional[str] = None  # null = the embedded sample, dnadiff.resources.default_fasta()
    bed: Optional[str] = None  # contig, start, end, split; null = chromosome lists or the block rule
    chromosomes: Any = None  # e.g. {valid: [chr8], test: [chr9]} (untyped: OmegaConf cannot merge into a null typed dict)
    seq_len: Optional[int] = 256  # null (evaluate only) = the checkpoint's training length
    batch_size: int = 16
    eval_batch_size: Optional[int] = 32  # null = batch_size
    num_workers: int = 0
    pin_memory: bool = False
    rc_aug: bool = True  # reverse complement training windows with p = 0.5
    shift: bool = True  # random shift of training windows within their interval
    max_shift: Optional[int] = None  # null = anywhere within the interval
    max_n_frac: float = 0.1  # windows with more N are dropped (eval) or redrawn (train)
    max_draws: int = 32  # redraws of an N-rich training window before giving up
    split_block: int = 100_000  # block rule: contigs tiled into blocks of this many bp ...
    split_period: int = 10  # ... block i -> valid if i % period == valid_block,
    valid_block: int = 8  # test if i % period == test_block, else train
    test_block: int = 9
    seed: int = 0
    max_eval_windows: Optional[int] = 256  # cap on windows per validation/test pass (evenly spaced)
    # benchmark (labelled sequences of a Genomic Benchmarks task, for class-conditional pretraining)
    task: str = "enhancers"
    root: Optional[str] = None  # genomic-benchmarks layout folder; null = the package cache
    label_dropout: float = 0.1  # P(label -> null label) in training, for classifier-free guidance
    holdout_fraction: float = 0.1

    def validate(self, prefix: str = "data") -> None:
        """Ranges of every value, naming the key."""
        one_of(self.source, key(prefix, "source"), SOURCES)
        optional_positive_int(self.seq_len, key(prefix, "seq_len"))
        positive_int(self.batch_size, key(prefix, "batch_size"))
        optional_positive_int(self.eval_batch_size, key(prefix, "eval_batch_size"))
        positive_int(self.num_workers, key(prefix, "num_workers"), minimum=0)
        optional_positive_int(self.max_shift, key(prefix, "max_shift"), minimum=0)
        in_range(self.max_n_frac, key(prefix, "max_n_frac"), 0.0, 1.0)
        positive_int(self.max_draws, key(prefix, "max_draws"))
        positive_int(self.split_block, key(prefix, "split_block"))
        positive_int(self.split_period, key(prefix, "split_period"), minimum=2)
        for name in ("valid_block", "test_block"):
            value = getattr(self, name)
            require(isinstance(value, int) and 0 <= value < self.split_period,
                    f"{key(prefix, name)} must be in 0..{key(prefix, 'split_period')}-1 = {self.split_period - 1}, got {value!r}")
        require(self.valid_block != self.test_block,
                f"{key(prefix, 'valid_block')} and {key(prefix, 'test_block')} must differ, both are {self.valid_block}")
        optional_positive_int(self.max_eval_windows, key(prefix, "max_eval_windows"))
        in_range(self.label_dropout, key(prefix, "label_dropout"), 0.0, 1.0)
        in_range(self.holdout_fraction, key(prefix, "holdout_fraction"), 0.0, 0.5, low_open=True, high_open=True)
        chrom = self.chromosomes
        require(chrom is None or (isinstance(chrom, dict) and all(
            k in ("train", "valid", "test") and isinstance(v, list) and all(isinstance(c, str) for c in v)
            for k, v in chrom.items())),
            f"{key(prefix, 'chromosomes')} must map train/valid/test to lists of contig names, "
            f"e.g. {{valid: [chr8], test: [chr9]}}; got {chrom!r}")
        require(self.bed is None or self.chromosomes is None,
                f"{key(prefix, 'bed')} and {key(prefix, 'chromosomes')} are two ways to split: give one")

    @property
    def eval_batch(self) -> int:
        """The evaluation batch size (``eval_batch_size``, or ``batch_size`` when null)."""
        return self.eval_batch_size or self.batch_size
