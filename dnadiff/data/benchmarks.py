"""Genomic Benchmarks classification tasks, read from the genomic-benchmarks on-disk layout.

Layout (what ``genomic_benchmarks.loc2seq.download_dataset`` writes): ``<root>/<task>/<split>/<class>/<name>.txt``,
one sequence per file, split in ``train``/``test``. Labels are indices into the task's class
names **sorted alphabetically over every split on disk**, so a class has the same label in
train and test, on every machine (the package itself numbers the class folders in the order the
file system lists them, which need not be sorted; see :mod:`dnadiff.finetune`). Files
within a class are read in natural order (r2 before r10).

``root=None`` means the genomic-benchmarks package's cache, ``~/.genomic_benchmarks``; a task
missing there is fetched with the package's downloader when it is installed (needs internet).
Otherwise a :class:`BenchmarkDataError` says how to get the data; a local copy is used with
``root=PATH`` (config ``data.root=PATH``, e.g. ``../shared/data/genomic_benchmarks``).

Variable-length tasks (human_ocr_ensembl 71-593 bp, human_ensembl_regulatory 113-801 bp,
drosophila_enhancers_stark) are batched by :func:`collate_sequences`: a sequence longer than
``max_len`` is cropped (``policy="center"`` keeps the middle, ``"left"`` the start, ``"error"``
refuses), then the batch is right-padded with ``[PAD]`` to its longest sequence
(``pad_to="longest"``) or to exactly ``max_len`` (``pad_to="max_len"``), with an attention mask.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dnadiff.tokenizer import SEQUENCE_CODES, Tokenizer, non_nucleotide

CACHE_PATH = Path.home() / ".genomic_benchmarks"
BENCHMARK_SPLITS: tuple[str, ...] = ("train", "test")

#: The eight tasks of the MDLM/Caduceus Genomic Benchmarks tables, plus drosophila_enhancers_stark.
TASKS: tuple[str, ...] = (
    "dummy_mouse_enhancers_ensembl",
    "demo_coding_vs_intergenomic_seqs",
    "demo_human_or_worm",
    "human_enhancers_cohn",
    "human_enhancers_ensembl",
    "human_ensembl_regulatory",
    "human_nontata_promoters",
    "human_ocr_ensembl",
    "drosophila_enhancers_stark",
)

#: Short names and the row labels of the MDLM/Caduceus tables (lower case, spaces -> _).
TASK_ALIASES: dict[str, str] = {
    "enhancers": "human_enhancers_cohn",
    "enhancers_cohn": "human_enhancers_cohn",
    "enhancers_ensembl": "human_enhancers_ensembl",
    "human_enhancer_ensembl": "human_enhancers_ensembl",
    "promoters": "human_nontata_promoters",
    "nontata_promoters": "human_nontata_promoters",
    "human_nontata_promoter": "human_nontata_promoters",
    "ocr": "human_ocr_ensembl",
    "ocr_ensembl": "human_ocr_ensembl",
    "regulatory": "human_ensembl_regulatory",
    "human_regulatory": "human_ensembl_regulatory",
    "coding": "demo_coding_vs_intergenomic_seqs",
    "coding_vs_intergenomic": "demo_coding_vs_intergenomic_seqs",
    "human_or_worm": "demo_human_or_worm",
    "human_vs_worm": "demo_human_or_worm",
    "mouse_enhancers": "dummy_mouse_enhancers_ensembl",
    "drosophila_enhancers": "drosophila_enhancers_stark",
}

CROP_POLICIES: tuple[str, ...] = ("center", "left", "error")


class BenchmarkDataError(RuntimeError):
    """Benchmark data missing or malformed on disk; the message says where and how to get it."""


def resolve_task(name: str) -> str:
    """Canonical task name for a task name or alias; unknown names raise ValueError listing valid ones."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    if key in TASKS:
        return key
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    raise ValueError(
        f"unknown Genomic Benchmarks task {name!r}; valid tasks: {', '.join(TASKS)}; "
        f"aliases: {', '.join(sorted(TASK_ALIASES))}"
    )


def list_tasks(root: str | os.PathLike) -> list[str]:
    """Known tasks present under ``root`` (a folder with at least one split folder)."""
    root = Path(root)
    return [t for t in TASKS if any((root / t / s).is_dir() for s in BENCHMARK_SPLITS)]


def available_splits(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """Splits of a task present on disk under ``root`` (default: the package cache)."""
    task_dir = _task_dir(resolve_task(name), root, download=False)
    return [s for s in BENCHMARK_SPLITS if (task_dir / s).is_dir()]


def task_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of a task on disk (``<root>/<task>``; the package cache when root is None)."""
    return _task_dir(resolve_task(name), root, download=False)


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _how_to_get(task: str) -> str:
    return (
        f"get it with `pip install genomic-benchmarks` and "
        f"`python -m data_prep.download --out DIR --what benchmarks --tasks {task}` (needs internet), "
        f"or point to a local copy with root=PATH (config data.root=PATH, "
        f"e.g. ../shared/data/genomic_benchmarks)"
    )


def _task_dir(task: str, root: str | os.PathLike | None, download: bool = True) -> Path:
    """The folder of a task. With root None: the package cache, downloading into it when the task is missing."""
    base = CACHE_PATH if root is None else Path(root)
    task_dir = base / task
    if task_dir.is_dir():
        return task_dir
    if root is not None:
        present = list_tasks(base) if base.is_dir() else []
        where = f"tasks there: {', '.join(present) or 'none'}" if base.is_dir() else "the folder does not exist"
        raise BenchmarkDataError(f"task {task!r} not found under {base} ({where}); {_how_to_get(task)}")
    if download:
        try:
            from genomic_benchmarks.loc2seq import download_dataset
        except ImportError as err:
            partial = err.name and not err.name.startswith("genomic")  # installed without its dependencies
            lacking = f" with its downloader's dependencies (missing: {err.name})" if partial else ""
            raise BenchmarkDataError(
                f"task {task!r} is not in the cache {base} and the genomic-benchmarks package is not "
                f"installed{lacking}; {_how_to_get(task)}"
            ) from None
        try:
            download_dataset(task, dest_path=base)
        except Exception as err:  # network errors come in many types; report them all the same way
            raise BenchmarkDataError(
                f"downloading task {task!r} into {base} failed ({type(err).__name__}: {err}); {_how_to_get(task)}"
            ) from None
        if task_dir.is_dir():
            return task_dir
    raise BenchmarkDataError(f"task {task!r} not found in the cache {base}; {_how_to_get(task)}")


def _class_names(task_dir: Path) -> list[str]:
    names = {
        c.name
        for s in BENCHMARK_SPLITS
        if (task_dir / s).is_dir()
        for c in (task_dir / s).iterdir()
        if c.is_dir()
    }
    return sorted(names)


@lru_cache(maxsize=32)
def _read_split(task_dir: str, split: str, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """Read every sequence of one split once (cached; the mtime key invalidates on change)."""
    tdir = Path(task_dir)
    classes = _class_names(tdir)
    seqs: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        cdir = tdir / split / cls
        if not cdir.is_dir():  # a class of another split only (fine-tuning checks its pool has every class)
            continue
        files = sorted((e.name for e in os.scandir(cdir) if e.name.endswith(".txt")), key=_natural_key)
        if not files:
            raise BenchmarkDataError(f"{cdir}: empty class folder (no <name>.txt sequence files)")
        for fname in files:
            with open(cdir / fname, encoding="ascii", errors="replace") as handle:
                seq = "".join(handle.read().split())
            if not seq:
                raise BenchmarkDataError(f"{cdir / fname}: empty sequence file")
            bad = non_nucleotide(seq)
            if bad is not None:
                raise BenchmarkDataError(
                    f"{cdir / fname}: {bad[0]} character(s) that are not nucleotide codes (first {bad[2]!r} at "
                    f"position {bad[1] + 1}); a sequence file holds only {SEQUENCE_CODES} (either case)"
                )
            seqs.append(seq)
            labels.append(label)
    if len(classes) < 2:
        raise BenchmarkDataError(f"{tdir / split}: {len(classes)} class folder(s) {list(classes)}; "
                                 "a classification task needs at least 2 (<split>/<class>/<name>.txt)")
    return tuple(seqs), np.asarray(labels, dtype=np.int64), tuple(classes)


def load_task(
    name: str, root: str | os.PathLike | None = None, split: str = "train"
) -> tuple[list[str], np.ndarray, list[str]]:
    """Sequences, integer labels and sorted class names of one split of a task.

    Reads the thousands of small files once per process (cached in memory).
    """
    task = resolve_task(name)
    if split not in BENCHMARK_SPLITS:
        raise ValueError(f"unknown split {split!r}; Genomic Benchmarks splits are {', '.join(BENCHMARK_SPLITS)}")
    task_dir = _task_dir(task, root)
    split_dir = task_dir / split
    if not split_dir.is_dir():
        have = [s for s in BENCHMARK_SPLITS if (task_dir / s).is_dir()]
        raise BenchmarkDataError(
            f"task {task!r} has no {split!r} split under {task_dir} (present: {', '.join(have) or 'none'}); "
            + _how_to_get(task)
        )
    mtime = max([split_dir.stat().st_mtime_ns] + [c.stat().st_mtime_ns for c in split_dir.iterdir()])
    seqs, labels, classes = _read_split(str(task_dir.resolve()), split, mtime)
    if not seqs:
        raise BenchmarkDataError(f"{split_dir}: no sequence files (<class>/<name>.txt)")
    return list(seqs), labels.copy(), list(classes)


def crop(seq: str, max_len: int, policy: str = "center") -> str:
    """Crop one sequence to at most ``max_len`` characters by ``policy`` (center, left, error)."""
    if policy not in CROP_POLICIES:
        raise ValueError(f"unknown crop policy {policy!r}; expected one of {', '.join(CROP_POLICIES)}")
    if len(seq) <= max_len:
        return seq
    if policy == "error":
        raise ValueError(f"sequence of length {len(seq)} exceeds max_len={max_len} (policy 'error')")
    if policy == "left":
        return seq[:max_len]
    start = (len(seq) - max_len) // 2
    return seq[start : start + max_len]


def collate_sequences(
    seqs: Sequence[str],
    tokenizer: Tokenizer,
    max_len: int,
    policy: str = "center",
    pad_to: str = "longest",
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """Token ids (B, L) right-padded with [PAD], and an attention mask True on real tokens.

    Sequences longer than ``max_len`` are cropped by ``policy``; ``pad_to`` is "longest"
    (L = longest cropped sequence in the batch) or "max_len" (L = max_len).
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if pad_to not in ("longest", "max_len"):
        raise ValueError(f"pad_to must be 'longest' or 'max_len', got {pad_to!r}")
    encoded = [tokenizer.encode_numpy(crop(s, max_len, policy)) for s in seqs]
    length = max_len if pad_to == "max_len" else max((len(e) for e in encoded), default=0)
    ids = np.full((len(encoded), length), tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros((len(encoded), length), dtype=bool)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = e
        mask[row, : len(e)] = True
    return torch.from_numpy(ids), torch.from_numpy(mask)


class SequenceDataset(Dataset):
    """(sequence, label) pairs for a DataLoader; batch them with :class:`SequenceCollator`."""

    def __init__(self, seqs: Sequence[str], labels: np.ndarray) -> None:
        if len(seqs) != len(labels):
            raise ValueError(f"{len(seqs)} sequences but {len(labels)} labels")
        self.seqs = list(seqs)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.seqs[i], int(self.labels[i])


class SequenceCollator:
    """DataLoader collate_fn: ``{"input_ids", "attention_mask", "labels"}`` via :func:`collate_sequences`."""

    def __init__(self, tokenizer: Tokenizer, max_len: int, policy: str = "center", pad_to: str = "longest") -> None:
        self.tokenizer, self.max_len, self.policy, self.pad_to = tokenizer, int(max_len), policy, pad_to

    def __call__(self, batch: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
        seqs, labels = zip(*batch)
        ids, mask = collate_sequences(seqs, self.tokenizer, self.max_len, self.policy, self.pad_to)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.long)}
