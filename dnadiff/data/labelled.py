"""Labelled sequences (a Genomic Benchmarks task) as a pretraining source for class-conditional models.

Each item is ``{"input_ids": LongTensor(seq_len), "cond": LongTensor()}``: the sequence cropped
(centre) or right-padded with [PAD] to ``seq_len`` (pad positions are never masked nor scored),
and its class index. For classifier-free guidance the training draw replaces the label by the
null label (index ``n_classes``) with probability ``label_dropout``; evaluation keeps true labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dnadiff.data.config import DataConfig
from dnadiff.data.benchmarks import BENCHMARK_SPLITS, available_splits, crop, load_task, resolve_task
from dnadiff.tokenizer import Tokenizer

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


class BenchmarkSource:
    """Train/valid/test labelled sequences of one task, with the interface the pretraining code uses.

    With both splits on disk: train -> train/valid (``holdout_fraction`` held out), test -> test.
    With one split only (e.g. the shared offline copies): a seeded permutation holds out
    ``holdout_fraction`` as test and as much again as valid.
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.task = resolve_task(cfg.task)
        self.root = cfg.root
        self.seq_len = int(cfg.seq_len or 0)
        if self.seq_len < 1:
            raise ValueError("data.seq_len must be set for source=benchmark")
        self.batch_size = cfg.batch_size
        self.eval_batch_size = cfg.eval_batch
        self.num_workers = cfg.num_workers
        self.pin_memory = cfg.pin_memory
        self.fasta = None
        self.bed = None
        splits = available_splits(self.task, self.root)
        both = "train" in splits and "test" in splits
        pool_split = "train" if both else [s for s in BENCHMARK_SPLITS if s in splits][0]
        seqs, labels, self.classes = load_task(self.task, self.root, pool_split)
        perm = np.random.default_rng(cfg.seed).permutation(len(seqs))
        n_hold = max(1, int(cfg.holdout_fraction * len(seqs)))
        holdouts = ["valid"] if both else ["test", "valid"]
        parts: dict[str, tuple[list[str], np.ndarray]] = {
            name: _take(seqs, labels, perm[k * n_hold:(k + 1) * n_hold]) for k, name in enumerate(holdouts)
        }
        parts["train"] = _take(seqs, labels, perm[len(holdouts) * n_hold:])
        if both:
            test_seqs, test_labels, _ = load_task(self.task, self.root, "test")
            parts["test"] = (test_seqs, test_labels)
            self.split_used = "train (valid held out), test"
        else:
            self.split_used = (f"{pool_split} only (seeded {cfg.holdout_fraction:.0%} valid / "
                               f"{cfg.holdout_fraction:.0%} test holdouts)")
        cap = cfg.max_eval_windows
        self._datasets = {
            name: LabelledSequences(
                s if name == "train" or cap is None else s[:cap], y if name == "train" or cap is None else y[:cap],
                len(self.classes), self.seq_len,
                label_dropout=cfg.label_dropout if name == "train" else 0.0, rc_aug=cfg.rc_aug and name == "train",
            )
            for name, (s, y) in parts.items()
        }

    def dataset(self, split: str) -> LabelledSequences:
        """The sequences of one split ('train', 'valid' or 'test')."""
        if split not in self._datasets:
            raise ValueError(f"unknown split {split!r}; expected train, valid or test")
        return self._datasets[split]


def _take(seqs: Sequence[str], labels: np.ndarray, idx: np.ndarray) -> tuple[list[str], np.ndarray]:
    return [seqs[i] for i in idx], labels[idx]
