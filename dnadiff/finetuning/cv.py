"""Cross-validation of fine-tuned backbones (and the CNN baseline) on a Genomic Benchmarks task.

Two protocols (``cv.protocol``); every output names the one that ran (``protocol``, ``split_used``).

``kfold`` (the default), for each seed in ``cv.seeds`` and each of ``cv.folds`` stratified folds
(:mod:`dnadiff.finetuning.folds`):

- **Both splits on disk** (train and test): the folds cut the train split; a model trains on
  the other folds, its epoch is selected on the held-out fold, and it is evaluated on the
  task's test split.
- **One split on disk** (offline copies hold only the published test split of some tasks, or a
  train subset of others): the folds cut that split; the held-out fold is the evaluation set
  and is used for nothing else. The epoch is selected on a stratified slice
  (``cv.select_fraction``) of the training folds.

``seeds``, the protocol of the Caduceus and MDLM papers' Genomic Benchmarks tables (Caduceus
``slurm_scripts/run_genomics_benchmark.sh`` and ``src/dataloaders/genomics.py``): for each of
``cv.seeds`` seeds (5 by default) a random ``1 - cv.valid_fraction`` / ``cv.valid_fraction``
(90/10) train/validation split of the train split, drawn as they draw it
(``torch.utils.data.random_split`` with a generator seeded by the seed; not stratified); the
epoch with the best validation accuracy is evaluated on the official test split. With **one split
on disk** there is no official test split: a stratified ``cv.test_fraction`` slice of the split
(seeded by ``cv.seed``, the same for every seed) stands in for it, and the seeds split the rest
90/10; ``split_used`` says so, and such figures are not comparable with the papers' tables.

In both protocols duplicated sequences (either strand) are reduced to one copy and train
sequences that also occur in the test split are removed first (the papers' code does neither;
``notes`` counts what was removed), so no sequence is on both sides of a split. Every model,
baseline included, sees exactly the same indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.model_selection import train_test_split
from torch.utils.data import random_split
from tqdm.auto import tqdm

from dnadiff.data.benchmarks import (
    BenchmarkDataError,
    available_splits,
    collate_sequences,
    load_task,
    resolve_task,
    task_folder,
)
from dnadiff.tokenizer import Tokenizer
from dnadiff.metrics.classification import classification_metrics, summarize
from dnadiff.finetuning.config import FitConfig
from dnadiff.finetuning.loop import fit_select, predict_proba
from dnadiff.finetuning.folds import deduplicate, drop_overlap, make_folds, stratified_subsample

ModelFactory = Callable[[int, int], nn.Module]


@dataclass
class TaskData:
    """Everything the CV needs of a task, already deduplicated and subsampled."""

    task: str
    class_names: list[str]
    pool_seqs: list[str]
    pool_labels: np.ndarray
    test_seqs: list[str] | None
    test_labels: np.ndarray | None
    split_used: str
    pool_split: str
    notes: list[str] = field(default_factory=list)
    protocol: str = "kfold"
    test_is_slice: bool = False  # seeds protocol on one split: the "test" set is a slice of pool_split

    @property
    def eval_split(self) -> str:
        """Which sequences the reported accuracies are measured on."""
        if self.test_is_slice:
            return (f"a held-out stratified slice of the {self.pool_split} split "
                    "(standing in for the official test split)")
        return "test" if self.test_seqs is not None else f"{self.pool_split} (held-out CV folds)"


def prepare_task(
    task: str,
    root: str | None,
    max_per_class: int | None,
    seed: int,
    n_folds: int,
    max_test_per_class: int | None = None,
    select_fraction: float = 0.1,
    protocol: str = "kfold",
    n_seeds: int = 1,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> TaskData:
    """Load a task, deduplicate, drop train/test overlap, subsample, and describe the split used.

    ``seed`` draws the subsamples (and, for ``protocol="seeds"`` on a one-split task, the
    stand-in test slice); ``n_seeds``, ``valid_fraction`` and ``test_fraction`` only describe or
    shape the seeds protocol.
    """
    task = resolve_task(task)
    splits = available_splits(task, root)
    if not splits:
        raise FileNotFoundError(f"task {task!r} has no train/test folder under data.root={root}")
    notes: list[str] = []
    pool_split = "train" if "train" in splits else splits[0]
    seqs, labels, classes = load_task(task, root, pool_split)
    test_seqs = test_labels = None
    if "train" in splits and "test" in splits:
        test_seqs, test_labels, test_classes = load_task(task, root, "test")
        if test_classes != classes:
            raise ValueError(f"task {task!r}: train classes {classes} differ from test classes {test_classes}")
    dedup = deduplicate(seqs, labels)
    if dedup.n_duplicates or dedup.n_conflicting:
        notes.append(
            f"{dedup.n_duplicates} duplicate sequences (either strand) removed from {pool_split}; "
            f"{dedup.n_conflicting} with conflicting labels dropped"
        )
    seqs = [seqs[i] for i in dedup.keep]
    labels = labels[dedup.keep]
    test_is_slice = protocol == "seeds" and test_seqs is None
    if test_is_slice:
        keep, held = train_test_split(np.arange(len(seqs)), test_size=test_fraction, stratify=labels,
                                      random_state=seed)
        keep, held = np.sort(keep), np.sort(held)
        test_seqs, test_labels = [seqs[i] for i in held], labels[held]
        seqs, labels = [seqs[i] for i in keep], labels[keep]
    if test_seqs is not None:
        keep = drop_overlap(seqs, test_seqs)
        if len(keep) < len(seqs):
            notes.append(f"{len(seqs) - len(keep)} train sequences also in the test split (either strand) removed")
        seqs, labels = [seqs[i] for i in keep], labels[keep]
        sub = stratified_subsample(test_labels, max_test_per_class, seed)
        if len(sub) < len(test_labels):
            what = "stand-in test slice" if test_is_slice else "test split"
            notes.append(f"{what} subsampled to {len(sub)} sequences (data.max_test_per_class={max_test_per_class})")
        test_seqs, test_labels = [test_seqs[i] for i in sub], test_labels[sub]
    sub = stratified_subsample(labels, max_per_class, seed)
    if len(sub) < len(labels):
        pool_name = f"the training pool (rest of {pool_split})" if test_is_slice else pool_split
        notes.append(f"{pool_name} subsampled to {len(sub)} sequences (data.max_per_class={max_per_class})")
    seqs, labels = [seqs[i] for i in sub], labels[sub]
    minimum, why = (n_folds, f"cv.folds={n_folds}") if protocol == "kfold" else (2, "a train/validation split")
    check_class_sizes(labels, classes, minimum, task_folder(task, root) / pool_split, why)
    missing = ", ".join(s for s in ("train", "test") if s not in splits)
    seeds_text = (f"{n_seeds} seeds x a random {1 - valid_fraction:.0%}/{valid_fraction:.0%} train/validation split "
                  f"(torch random_split, not stratified), the epoch with the best validation accuracy")
    if protocol == "seeds" and not test_is_slice:
        split_used = (f"seeds protocol (Caduceus/MDLM papers): train: {seeds_text}; accuracy on the official "
                      f"test split")
    elif protocol == "seeds":
        split_used = (
            f"seeds protocol on {pool_split} only ({missing} split absent under data.root, so NOT the papers' "
            f"data): a stratified {test_fraction:.0%} slice of the {pool_split} split (seed {seed}) stands in "
            f"for the official test split; the other {1 - test_fraction:.0%}: {seeds_text}; accuracy on that slice"
        )
    elif test_seqs is not None:
        split_used = (
            f"kfold protocol: train: {n_folds}-fold stratified CV (train on {n_folds - 1}/{n_folds}, select the "
            f"epoch on the held-out fold); accuracy on the test split"
        )
    else:
        split_used = (
            f"kfold protocol on {pool_split} only ({missing} split absent under data.root): {n_folds}-fold "
            f"stratified CV on the {pool_split} split; train on {n_folds - 1}/{n_folds} minus a "
            f"{select_fraction:.0%} stratified slice that selects the epoch; accuracy on the held-out fold"
        )
    return TaskData(task, list(classes), seqs, labels, test_seqs, test_labels, split_used, pool_split, notes,
                    protocol, test_is_slice)


def check_class_sizes(labels: np.ndarray, classes: list[str], n_folds: int, split_dir: Path,
                      why: str = "cv.folds") -> None:
    """Every class needs at least ``n_folds`` sequences (after deduplication and subsampling) for
    stratified folds (``why`` says what needs them); refuse otherwise, naming the class folder."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    for cls, n in zip(classes, counts.tolist()):
        if n < n_folds:
            raise BenchmarkDataError(
                f"{split_dir / cls}: {n} usable sequence(s) (after removing duplicates and test overlap), "
                f"fewer than {why} needs ({n_folds}); add sequences or lower cv.folds"
            )


@dataclass
class Split:
    """Index sets of one (seed, fold): train, epoch selection, evaluation (into pool, or test)."""

    seed: int
    fold: int | None  # None in the seeds protocol (one split per seed)
    train: np.ndarray
    select: np.ndarray
    evaluate: np.ndarray
    eval_on_test: bool


def cv_splits(data: TaskData, n_folds: int, seeds: list[int], select_fraction: float = 0.1) -> list[Split]:
    """All (seed, fold) splits of the protocol, deterministic for the seeds."""
    out = []
    for seed in seeds:
        for k, (tr, ho) in enumerate(make_folds(data.pool_labels, n_folds, seed)):
            if data.test_seqs is not None:
                out.append(Split(seed, k, tr, ho, np.arange(len(data.test_seqs)), True))
                continue
            n_classes = len(np.unique(data.pool_labels[tr]))
            n_select = max(n_classes, int(round(select_fraction * len(tr))))
            fit, sel = train_test_split(
                tr, test_size=n_select, stratify=data.pool_labels[tr], random_state=seed * 1000 + k
            )
            out.append(Split(seed, k, np.sort(fit), np.sort(sel), ho, False))
    return out


def seed_splits(data: TaskData, seeds: list[int], valid_fraction: float = 0.1) -> list[Split]:
    """The seeds protocol: per seed, the papers' random train/validation split of the pool (validation
    first, as ``random_split(data, [valid_fraction, 1 - valid_fraction], generator)`` in their code);
    evaluation on the test set (official, or the stand-in slice)."""
    if data.test_seqs is None:
        raise ValueError("the seeds protocol needs a test set (prepare_task(..., protocol='seeds'))")
    out = []
    for seed in seeds:
        valid, train = random_split(range(len(data.pool_seqs)), [valid_fraction, 1 - valid_fraction],
                                    generator=torch.Generator().manual_seed(seed))
        out.append(Split(seed, None, np.sort(np.asarray(train.indices)), np.sort(np.asarray(valid.indices)),
                         np.arange(len(data.test_seqs)), True))
    return out


def encode(seqs: list[str], max_len: int, tokenizer: Tokenizer) -> torch.Tensor:
    """Ids of all sequences, right-padded to the longest (center-cropped to ``max_len``)."""
    ids, _ = collate_sequences(seqs, tokenizer, max_len, policy="center", pad_to="longest")
    return ids


def run_model_cv(
    name: str,
    factory: ModelFactory,
    data: TaskData,
    splits: list[Split],
    fit_cfg: FitConfig,
    max_len: int,
    progress: bool = True,
    on_fold: Callable[[nn.Module, dict], None] | None = None,
) -> dict:
    """Fit one fresh model per split (``factory(seed, n_classes)``), select, evaluate; per-fold rows + summary.

    ``on_fold(model, row)`` sees each fold's selected model and its row (e.g. to keep the best one).
    """
    tok = Tokenizer()
    pool_ids = encode(data.pool_seqs, max_len, tok)
    pool_y = torch.from_numpy(data.pool_labels)
    test_ids = encode(data.test_seqs, max_len, tok) if data.test_seqs is not None else None
    rows = []
    bar = tqdm(splits, desc=f"{data.task} {name} folds", disable=not progress)
    for sp in bar:
        model = factory(sp.seed, len(data.class_names))
        fit = fit_select(
            model,
            (pool_ids[sp.train], pool_y[sp.train]),
            (pool_ids[sp.select], pool_y[sp.select]),
            fit_cfg,
            seed=sp.seed * 1000 + (sp.fold or 0),
            pad_id=tok.pad_id,
            desc=f"seed {sp.seed}" + ("" if sp.fold is None else f" fold {sp.fold}") + " epochs",
            progress=progress,
        )
        if sp.eval_on_test:
            ev_ids, ev_y = test_ids, data.test_labels
        else:
            ev_ids, ev_y = pool_ids[sp.evaluate], data.pool_labels[sp.evaluate]
        metrics = classification_metrics(ev_y, predict_proba(model, ev_ids, fit_cfg.eval_batch_size, tok.pad_id))
        rows.append({
            "seed": sp.seed, "fold": sp.fold, "n_train": len(sp.train), "n_select": len(sp.select),
            "n_eval": len(ev_y), "best_epoch": fit.best_epoch, "select_accuracy": fit.best_val_accuracy,
            **metrics, "history": fit.history,
        })
        if on_fold is not None:
            on_fold(model, rows[-1])
        bar.set_postfix(acc=f"{metrics['accuracy']:.3f}")
    return {"name": name, "folds": rows, **summarize(rows)}

