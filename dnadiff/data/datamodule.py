"""Lightning DataModule for pretraining on genome windows, built from the ``data`` config group.

The config (``configs/data/genome.yaml`` is the default) owns every hyperparameter:
``fasta`` (null = the embedded hg38 chr2 sample, :func:`dnadiff.resources.default_fasta`),
``bed`` (null = the block rule, or ``chromosomes`` lists), ``seq_len``, ``batch_size``,
``eval_batch_size``, ``num_workers``, ``rc_aug``, ``shift``, ``max_shift``, ``max_n_frac``,
``split_block`` / ``split_period`` / ``valid_block`` / ``test_block``, ``seed`` and
``max_eval_windows`` (caps the cost of each validation/test pass).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from dnadiff.data.genome import Genome
from dnadiff.data.windows import GenomeWindows, Interval, WindowError, collate_windows, make_intervals
from dnadiff.resources import default_fasta
from dnadiff.tokenizer import Tokenizer

DEFAULTS: dict[str, Any] = {
    "fasta": None,
    "bed": None,
    "chromosomes": None,
    "seq_len": 512,
    "batch_size": 16,
    "eval_batch_size": None,
    "num_workers": 0,
    "rc_aug": True,
    "shift": True,
    "max_shift": None,
    "max_n_frac": 0.1,
    "split_block": 100_000,
    "split_period": 10,
    "valid_block": 8,
    "test_block": 9,
    "seed": 0,
    "max_eval_windows": 256,
    "pin_memory": False,
}


def _to_plain(cfg: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A DictConfig or mapping as a plain dict (resolving interpolations)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))
    except ImportError:
        pass
    return dict(cfg)


class GenomeDataModule(L.LightningDataModule):
    """Train/valid/test windows of one genome; see the module doc for the options."""

    def __init__(
        self,
        fasta: str | os.PathLike | None = None,
        bed: str | os.PathLike | None = None,
        chromosomes: Mapping[str, list[str]] | None = None,
        seq_len: int = 512,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        rc_aug: bool = True,
        shift: bool = True,
        max_shift: int | None = None,
        max_n_frac: float = 0.1,
        split_block: int = 100_000,
        split_period: int = 10,
        valid_block: int = 8,
        test_block: int = 9,
        seed: int = 0,
        max_eval_windows: int | None = 256,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.fasta = Path(fasta) if fasta is not None else default_fasta()
        self.bed = Path(bed) if bed is not None else None
        self.chromosomes = {k: list(v) for k, v in chromosomes.items()} if chromosomes else None
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size else self.batch_size
        self.num_workers = int(num_workers)
        self.rc_aug = bool(rc_aug)
        self.shift = bool(shift)
        self.max_shift = None if max_shift is None else int(max_shift)
        self.max_n_frac = float(max_n_frac)
        self.split_block = int(split_block)
        self.split_period = int(split_period)
        self.valid_block = int(valid_block)
        self.test_block = int(test_block)
        self.seed = int(seed)
        self.max_eval_windows = None if max_eval_windows is None else int(max_eval_windows)
        self.pin_memory = bool(pin_memory)
        self.tokenizer = Tokenizer()
        self._genome: Genome | None = None
        self._intervals: list[Interval] | None = None
        self._datasets: dict[str, GenomeWindows] = {}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any) -> "GenomeDataModule":
        """Build from a data config (dict or DictConfig); unknown keys are an error."""
        plain = _to_plain(cfg)
        plain.pop("_target_", None)
        plain.pop("name", None)
        unknown = sorted(set(plain) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown data config keys {unknown}; known keys: {sorted(DEFAULTS)}")
        return cls(**{**DEFAULTS, **plain})

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
            self._intervals = make_intervals(
                self.genome, self.bed, self.chromosomes, self.split_block,
                self.split_period, self.valid_block, self.test_block,
            )
        return self._intervals

    def dataset(self, split: str) -> GenomeWindows:
        """The windows of one split ('train', 'valid' or 'test'), built once."""
        if split not in self._datasets:
            ivs = [iv for iv in self.intervals if iv.split == split]
            if not ivs:
                source = self.bed or f"the block rule on {self.fasta}"
                raise WindowError(f"split {split!r} has no intervals in {source}")
            train = split == "train"
            self._datasets[split] = GenomeWindows(
                self.genome, ivs, self.seq_len, train=train, rc_aug=self.rc_aug, shift=self.shift,
                max_shift=self.max_shift, max_n_frac=self.max_n_frac,
                seed=self.seed + ("train", "valid", "test").index(split),
                max_windows=None if train else self.max_eval_windows, tokenizer=self.tokenizer,
            )
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (fit: train+valid, validate: valid, test: test)."""
        needed = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",)}.get(
            stage or "", ("train", "valid", "test")
        )
        for split in needed:
            self.dataset(split)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(split), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
            num_workers=self.num_workers, generator=gen, pin_memory=self.pin_memory,
            persistent_workers=False, collate_fn=collate_windows,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training windows (drops the last incomplete batch)."""
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Deterministic validation windows, in order."""
        return self._loader("valid", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Deterministic test windows, in order."""
        return self._loader("test", self.eval_batch_size, shuffle=False)
