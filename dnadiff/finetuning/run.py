"""Run the fine-tuning cross-validation of one task (or all) from a :class:`FinetuneConfig`.

Turns the config sections into objects: the backbone (``ckpt=PATH`` through
``dnadiff.load_model``, or ``model=NAME`` built from scratch with a fresh seeded init per fold),
the head (:class:`dnadiff.models.heads.SequenceClassifier`), the fit settings, the CNN baseline,
and runs :mod:`dnadiff.finetuning.cv` on the same splits for all of them. With
``save_classifier=DIR`` the classifier of the fold that selected best (on its own selection set,
never the evaluation set) is written there (:func:`dnadiff.checkpoint.save_classifier`).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dnadiff.atomic import atomic_write_files, atomic_write_text, check_output_dir, check_output_file
from dnadiff.checkpoint import CLASSIFIER_WEIGHTS, EXPORT_CONFIG, classifier_files, load_model
from dnadiff.config import as_dict
from dnadiff.data.benchmarks import TASKS, BenchmarkDataError, resolve_task
from dnadiff.device import resolve_device
from dnadiff.finetuning.config import CNNConfig, FinetuneConfig
from dnadiff.finetuning.cv import TaskData, cv_splits, prepare_task, run_model_cv, seed_splits
from dnadiff.finetuning.report import RESULT_FILES, result_files, summary_line
from dnadiff.models.cnn import GenomicBenchmarksCNN, package_input_len
from dnadiff.models.heads import SequenceClassifier
from dnadiff.models.registry import model_from_config

ALL_TASKS: tuple[str, ...] = TASKS


def _auto(value: Any, default: bool) -> bool:
    return default if value in (None, "auto") else bool(value)


def backbone_factory(cfg: FinetuneConfig, device: torch.device) -> tuple[Any, str, dict]:
    """``factory(seed, n_classes) -> SequenceClassifier`` plus a label and the backbone's config."""
    head = cfg.head
    if cfg.ckpt:
        template = load_model(cfg.ckpt)
        label = f"pretrained ({cfg.ckpt})"
    else:
        template = None
        label = f"scratch ({cfg.model.name})"
    probe = template if template is not None else model_from_config(as_dict(cfg.model))
    arch = probe.config.get("arch", "")
    conjoin = _auto(head.conjoin, arch == "caduceus_ph")
    rc_inv = _auto(head.rc_invariant, bool(probe.rc_equivariant))

    def factory(seed: int, n_classes: int) -> nn.Module:
        torch.manual_seed(seed)
        backbone = copy.deepcopy(template) if template is not None else model_from_config(as_dict(cfg.model))
        clf = SequenceClassifier(
            backbone, n_classes, pooling=head.pooling, head=head.type, mlp_hidden=head.mlp_hidden,
            dropout=head.dropout, rc_invariant=rc_inv, conjoin=conjoin, freeze_backbone=head.freeze_backbone,
        )
        return clf.to(device)

    info = {"backbone": label, "arch": arch, "conjoin": conjoin, "rc_invariant": rc_inv, "model_config": probe.config}
    return factory, label, info


def cnn_factory(cfg: CNNConfig, input_len: int, device: torch.device):
    """``factory(seed, n_classes) -> GenomicBenchmarksCNN`` with a seeded init."""

    def factory(seed: int, n_classes: int) -> nn.Module:
        torch.manual_seed(seed)
        return GenomicBenchmarksCNN(n_classes, input_len, embedding_dim=cfg.embedding_dim, loss=cfg.loss).to(device)

    return factory


class BestFold:
    """Keeps (a CPU copy of) the fold model with the highest selection accuracy; earliest on ties."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.row: dict | None = None

    def __call__(self, model: nn.Module, row: dict) -> None:
        if self.row is None or row["select_accuracy"] > self.row["select_accuracy"]:
            self.model, self.row = copy.deepcopy(model).cpu(), row


def protocol_settings(cfg: FinetuneConfig, seeds: list[int]) -> dict[str, Any]:
    """The settings of the protocol that ran (only those it uses)."""
    cv = cfg.cv
    if cv.protocol == "seeds":
        return {"seeds": seeds, "valid_fraction": cv.valid_fraction, "test_fraction_if_one_split": cv.test_fraction}
    return {"folds": cv.folds, "seeds": seeds, "select_fraction": cv.select_fraction}


def run_task(cfg: FinetuneConfig, task: str) -> dict:
    """Cross-validate the backbone (and the CNN baseline when ``baseline``) on one task; write outputs."""
    t0 = time.time()
    device = resolve_device(cfg.device)
    cv = cfg.cv
    seeds = cv.seed_list()
    n_folds, sel = cv.folds, cv.select_fraction
    d = cfg.data
    data: TaskData = prepare_task(task, d.root, d.max_per_class, seeds[0], n_folds, d.max_test_per_class, sel,
                                  protocol=cv.protocol, n_seeds=len(seeds), valid_fraction=cv.valid_fraction,
                                  test_fraction=cv.test_fraction)
    if cv.protocol == "seeds":
        splits = seed_splits(data, seeds, cv.valid_fraction)
    else:
        splits = cv_splits(data, n_folds, seeds, sel)
    factory, label, info = backbone_factory(cfg, device)
    best = BestFold() if cfg.save_classifier else None
    result = run_model_cv(label, factory, data, splits, cfg.trainer, d.max_len, cfg.progress, on_fold=best)
    baseline = None
    if cfg.baseline:
        lengths = [min(len(s), d.max_len) for s in data.pool_seqs + (data.test_seqs or [])]
        input_len = max(package_input_len(lengths), GenomicBenchmarksCNN.min_input_len())
        baseline = run_model_cv("Genomic Benchmarks CNN", cnn_factory(cfg.baseline_cnn, input_len, device), data,
                                splits, cfg.baseline_cnn, d.max_len, cfg.progress)
        baseline["input_len"] = input_len
    files: dict[Path, bytes] = {}
    out = {
        "task": data.task,
        "split_used": data.split_used,
        "eval_split": data.eval_split,
        "class_names": data.class_names,
        "class_order": "label i = class_names[i]: the class folder names sorted (not the directory listing order)",
        "n_sequences": {"pool": len(data.pool_seqs), "test": len(data.test_seqs) if data.test_seqs else 0},
        "notes": data.notes,
        "protocol": {"name": cv.protocol, **protocol_settings(cfg, seeds), "max_len": d.max_len,
                     "max_per_class": d.max_per_class, "device": str(device)},
        **info,
        **result,
        "baseline": baseline,
        "wall_seconds": round(time.time() - t0, 1),
    }
    if best is not None and best.model is not None:
        best.model.classes = list(data.class_names)
        chosen = {"seed": best.row["seed"], "fold": best.row["fold"], "select_accuracy": best.row["select_accuracy"]}
        files.update(classifier_files(best.model, cfg.save_classifier, task=data.task, chosen_fold=chosen,
                                      max_len=d.max_len, backbone=label))
        out["saved_classifier"] = {"path": str(cfg.save_classifier), **chosen}
    files.update(result_files(out, cfg.out_dir))
    atomic_write_files(files)  # all or nothing: a failure leaves an earlier run's files as they were
    return out


def check_outputs(cfg: FinetuneConfig, tasks: list[str]) -> None:
    """Refuse, before any training, output paths that cannot be written."""
    for task in tasks:
        check_output_dir(Path(cfg.out_dir) / task, RESULT_FILES)
    if cfg.save_classifier:
        check_output_dir(cfg.save_classifier, (CLASSIFIER_WEIGHTS, EXPORT_CONFIG))
    if cfg.task == "all":
        check_output_file(Path(cfg.out_dir) / "summary.json")


def run(cfg: FinetuneConfig) -> list[dict]:
    """Run ``cfg.task`` (a name, an alias, or ``all``); with ``all``, absent tasks are skipped with a reason."""
    tasks = list(ALL_TASKS) if cfg.task == "all" else [resolve_task(cfg.task)]
    check_outputs(cfg, tasks)
    results = []
    for task in tasks:
        try:
            res = run_task(cfg, task)
        except (BenchmarkDataError, FileNotFoundError) as err:
            if cfg.task != "all":
                raise
            res = {"task": task, "skipped": True, "reason": str(err)}
        results.append(res)
        print(summary_line(res), flush=True)
    if cfg.task == "all":
        summary = [{"task": r["task"], "skipped": r.get("skipped", False), "reason": r.get("reason"),
                    "protocol": cfg.cv.protocol, "split_used": r.get("split_used"),
                    "accuracy_mean": r.get("accuracy_mean"),
                    "accuracy_std": r.get("accuracy_std")} for r in results]
        atomic_write_text(json.dumps(summary, indent=1), Path(cfg.out_dir) / "summary.json")
    return results
