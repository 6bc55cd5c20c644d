"""Where pretraining and evaluation sequences come from: genome windows or a labelled task.

:func:`data_source` turns a ``data`` config (:class:`dnadiff.data.config.DataConfig`) into a
source with ``dataset(split)`` for ``train``, ``valid`` and ``test``:

- :class:`GenomeSource` (``source: genome``): windows of one genome (``fasta``; null = the
  embedded hg38 sample), split by a BED (``bed``), whole-contig lists (``chromosomes``) or the
  block rule (see :mod:`dnadiff.data.windows`); ``dataset("all")`` is every evaluation window of
  every contig, whatever the split rule (another genome, or a held-out chromosome, needs no BED);
- :class:`dnadiff.data.labelled.BenchmarkSource` (``source: benchmark``): the labelled sequences
  of a Genomic Benchmarks task, for class-conditional pretraining.

The batching, the training stream and the Lightning DataModule are in
:mod:`dnadiff.data.datamodule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dnadiff.config import to_typed
from dnadiff.data.config import DataConfig
from dnadiff.data.genome import Genome
from dnadiff.data.windows import SPLITS, GenomeWindows, Interval, WindowError, make_intervals
from dnadiff.resources import default_fasta
from dnadiff.tokenizer import Tokenizer

EVERY_WINDOW = "all"  # GenomeSource.dataset(EVERY_WINDOW): every contig, whole, for evaluation


class GenomeSource:
    """Train/valid/test windows of one genome, as a ``data`` config describes them."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.fasta = Path(cfg.fasta) if cfg.fasta is not None else default_fasta()
        self.bed = Path(cfg.bed) if cfg.bed is not None else None
        self.seq_len = int(cfg.seq_len) if cfg.seq_len is not None else None
        self.batch_size = cfg.batch_size
        self.eval_batch_size = cfg.eval_batch
        self.num_workers = cfg.num_workers
        self.pin_memory = cfg.pin_memory
        self.classes: list[str] = []
        self.tokenizer = Tokenizer()
        self._genome: Genome | None = None
        self._intervals: list[Interval] | None = None
        self._datasets: dict[str, GenomeWindows] = {}

    @classmethod
    def from_config(cls, cfg: DataConfig | Mapping[str, Any]) -> "GenomeSource":
        """Build from a data config (a DataConfig, a DictConfig or a plain mapping of its keys)."""
        return cls(to_typed(cfg, DataConfig, "data"))

    @property
    def genome(self) -> Genome:
        """The genome, opened on first use."""
        if self._genome is None:
            self._genome = Genome(self.fasta)
        return self._genome

    @property
    def intervals(self) -> list[Interval]:
        """All intervals with their splits (BED, chromosome lists or the block rule)."""
        if self._intervals is None:
            c = self.cfg
            self._intervals = make_intervals(self.genome, self.bed, c.chromosomes, c.split_block,
                                             c.split_period, c.valid_block, c.test_block)
        return self._intervals

    def describe(self, split: str) -> str:
        """Where a split's windows come from, for messages."""
        if split == EVERY_WINDOW:
            return f"every contig of {self.fasta} (split rule ignored)"
        rule = f"BED {self.bed}" if self.bed else (
            "data.chromosomes" if self.cfg.chromosomes else f"the {self.cfg.split_block} bp block rule")
        return f"split {split!r} of {self.fasta} ({rule})"

    def split_intervals(self, split: str) -> list[Interval]:
        """The intervals of one split; for ``all``, every contig from start to end."""
        if split == EVERY_WINDOW:
            return [Interval(name, 0, length, EVERY_WINDOW) for name, length in self.genome.contigs.items()]
        return [iv for iv in self.intervals if iv.split == split]

    def dataset(self, split: str) -> GenomeWindows:
        """The windows of one split ('train', 'valid', 'test', or 'all' for evaluation), built once."""
        if split not in (*SPLITS, EVERY_WINDOW):
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} or {EVERY_WINDOW}")
        if self.seq_len is None:
            raise ValueError("data.seq_len is not set")
        if split not in self._datasets:
            ivs = self.split_intervals(split)
            if not ivs:
                raise WindowError(f"{self.describe(split)} has no intervals")
            c = self.cfg
            train = split == "train"
            try:
                self._datasets[split] = GenomeWindows(
                    self.genome, ivs, self.seq_len, train=train, rc_aug=c.rc_aug, shift=c.shift,
                    max_shift=c.max_shift, max_n_frac=c.max_n_frac, seed=c.seed + (*SPLITS, EVERY_WINDOW).index(split),
                    max_windows=None if train else c.max_eval_windows, tokenizer=self.tokenizer,
                    max_draws=c.max_draws,
                )
            except WindowError as err:
                raise WindowError(f"{self.describe(split)}: {err}") from None
        return self._datasets[split]


def data_source(cfg: DataConfig | Mapping[str, Any]):
    """The source a ``data`` config describes: genome windows (default) or labelled sequences."""
    cfg = to_typed(cfg, DataConfig, "data")
    if cfg.source == "benchmark":
        from dnadiff.data.labelled import BenchmarkSource

        return BenchmarkSource(cfg)
    return GenomeSource(cfg)
