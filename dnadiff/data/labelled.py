"""Labelled sequences (a Genomic Benchmarks task) as a pretraining source for class-conditional models.

Each item is ``{"input_ids": LongTensor(seq_len), "cond": LongTensor()}``: the sequence cropped
(centre) or right-padded with [PAD] to ``seq_len`` (pad positions are never masked nor scored),
and its class index. For classifier-free guidance the training draw replaces the label by the
null label (index ``n_classes``) with probability ``label_dropout``; evaluation keeps true labels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dnadiff.data.benchmarks import BENCHMARK_SPLITS, available_splits, crop, load_task, resolve_task
from dnadiff.tokenizer import Tokenizer

DEFAULTS: dict[str, Any] = {
    "source": "benchmark",
    "task": "enhancers",
    "root": None,
    "seq_len": 512,
    "batch_size": 16,
    "eval_batch_size": None,
    "num_workers": 0,
    "label_dropout": 0.1,
    "rc_aug": True,
    "holdout_fraction": 0.1,
    "seed": 0,
    "max_eval_windows": 512,
    "pin_memory": False,
}


class LabelledSequences(Dataset):
    """Fixed-length token ids and class labels; ``sample(i, rng)`` adds RC augmentation and label dropout."""

    def __init__(self, seqs: Sequence[str], labels: np.ndarray, n_classes: int, seq_len: int, *,
                 label_dropout: float = 0.0, rc_aug: bool = False, tokenizer: Tokenizer | None = None) -> None:
        if not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
        self.tokenizer = tokenizer or Tokenizer()
        self.seq_len = int(seq_len)
        ids = np.full((len(seqs), self.seq_len), self.tokenizer.pad_id, dtype=np.int64)
        self.lengths = np.zeros(len(seqs), dtype=np.int64)
        for row, seq in enumerate(seqs):
            enc = self.tokenizer.encode_numpy(crop(seq, self.seq_len, "center"))
            ids[row, : len(enc)] = enc
            self.lengths[row] = len(enc)
        self.ids = ids
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_classes = int(n_classes)
        self.label_dropout = float(label_dropout)
        self.rc_aug = bool(rc_aug)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.ids[i].copy()), "cond": torch.tensor(int(self.labels[i]))}

    def sample(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A training draw: reverse complement with p = 0.5 (padding kept on the right), label dropout."""
        ids = self.ids[i].copy()
        if self.rc_aug and rng.random() < 0.5:
            n = int(self.lengths[i])
            ids[:n] = self.tokenizer.reverse_complement(ids[:n])
        label = self.n_classes if rng.random() < self.label_dropout else int(self.labels[i])
        return {"input_ids": torch.from_numpy(ids), "cond": torch.tensor(label)}


class BenchmarkDataModule:
    """Train/valid/test labelled sequences of one task, with the interface the pretraining code uses.

    With both splits on disk: train -> train/valid (``holdout_fraction`` held out), test -> test.
    With one split only (e.g. the shared offline copies): a seeded permutation holds out
    ``holdout_fraction`` as test and as much again as valid.
    """

    def __init__(self, task: str, root: str | os.PathLike | None, seq_len: int, batch_size: int,
                 eval_batch_size: int | None, num_workers: int, label_dropout: float, rc_aug: bool,
                 holdout_fraction: float, seed: int, max_eval_windows: int | None, pin_memory: bool) -> None:
        self.task = resolve_task(task)
        self.root = root
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size else self.batch_size
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.fasta = None
        self.bed = None
        splits = available_splits(self.task, root)
        if not 0.0 < holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5), got {holdout_fraction}")
        both = "train" in splits and "test" in splits
        pool_split = "train" if both else [s for s in BENCHMARK_SPLITS if s in splits][0]
        seqs, labels, self.classes = load_task(self.task, root, pool_split)
        perm = np.random.default_rng(seed).permutation(len(seqs))
        n_hold = max(1, int(holdout_fraction * len(seqs)))
        holdouts = ["valid"] if both else ["test", "valid"]
        parts: dict[str, tuple[list[str], np.ndarray]] = {
            name: _take(seqs, labels, perm[k * n_hold:(k + 1) * n_hold]) for k, name in enumerate(holdouts)
        }
        parts["train"] = _take(seqs, labels, perm[len(holdouts) * n_hold:])
        if both:
            test_seqs, test_labels, _ = load_task(self.task, root, "test")
            parts["test"] = (test_seqs, test_labels)
            self.split_used = "train (valid held out), test"
        else:
            self.split_used = f"{pool_split} only (seeded {holdout_fraction:.0%} valid / {holdout_fraction:.0%} test holdouts)"
        cap = max_eval_windows
        self._datasets = {
            name: LabelledSequences(
                s if name == "train" or cap is None else s[:cap], y if name == "train" or cap is None else y[:cap],
                len(self.classes), self.seq_len,
                label_dropout=label_dropout if name == "train" else 0.0, rc_aug=rc_aug and name == "train",
            )
            for name, (s, y) in parts.items()
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "BenchmarkDataModule":
        """Build from a ``data`` config with ``source: benchmark``; unknown keys are an error."""
        plain = dict(cfg)
        unknown = sorted(set(plain) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown data config keys {unknown} for source=benchmark; known keys: {sorted(DEFAULTS)}")
        plain = {**DEFAULTS, **plain}
        plain.pop("source")
        return cls(**plain)

    def dataset(self, split: str) -> LabelledSequences:
        """The sequences of one split ('train', 'valid' or 'test')."""
        if split not in self._datasets:
            raise ValueError(f"unknown split {split!r}; expected train, valid or test")
        return self._datasets[split]


def _take(seqs: Sequence[str], labels: np.ndarray, idx: np.ndarray) -> tuple[list[str], np.ndarray]:
    return [seqs[i] for i in idx], labels[idx]


def data_source(cfg: Mapping[str, Any]):
    """The data module a ``data`` config describes: genome windows (default) or labelled sequences."""
    from dnadiff.data.datamodule import GenomeDataModule

    plain = dict(cfg)
    source = plain.pop("source", "genome")
    if source == "genome":
        return GenomeDataModule.from_config(plain)
    if source == "benchmark":
        return BenchmarkDataModule.from_config(cfg)
    raise ValueError(f"unknown data.source {source!r}; expected 'genome' or 'benchmark'")
