"""Run the fine-tuning cross-validation of one task (or all) from a finetune config.

Turns the ``configs/finetune.yaml`` sections into objects: the backbone (``ckpt=PATH`` through
``dnadiff.load_model``, or ``model=NAME`` built from scratch with a fresh seeded init per
fold), the head (:class:`dnadiff.models.heads.SequenceClassifier`), the fit settings, the CNN
baseline, and runs :mod:`dnadiff.train.cv` on the same splits for all of them.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from dnadiff.baselines.cnn import GenomicBenchmarksCNN
from dnadiff.data.benchmarks import TASKS, BenchmarkDataError, resolve_task
from dnadiff.models.heads import SequenceClassifier
from dnadiff.train.cv import TaskData, cv_splits, prepare_task, run_model_cv
from dnadiff.train.cv_report import summary_line, write_results
from dnadiff.train.finetune_loop import FitConfig

ALL_TASKS: tuple[str, ...] = TASKS


def seed_list(cv: Mapping) -> list[int]:
    """``cv.seeds``: a count N (seeds cv.seed .. cv.seed+N-1) or an explicit list."""
    seeds = cv.get("seeds", 1)
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"cv.seeds must be a positive count or a list of seeds, got {seeds}")
        return [int(cv.get("seed", 0)) + i for i in range(seeds)]
    return [int(s) for s in seeds]


def _auto(value: Any, default: bool) -> bool:
    return default if value in (None, "auto") else bool(value)


def backbone_factory(cfg: Mapping, device: torch.device) -> tuple[Any, str, dict]:
    """``factory(seed, n_classes) -> SequenceClassifier`` plus a label and the backbone's config."""
    head = cfg["head"]
    if cfg.get("ckpt"):
        from dnadiff import load_model

        template = load_model(str(cfg["ckpt"]))
        label = f"pretrained ({cfg['ckpt']})"
    else:
        from dnadiff.models.registry import model_from_config

        template = None
        label = f"scratch ({cfg['model']['name']})"
    probe = template if template is not None else model_from_config(dict(cfg["model"]))
    arch = probe.config.get("arch", "")
    conjoin = _auto(head.get("conjoin"), arch == "caduceus_ph")
    rc_inv = _auto(head.get("rc_invariant"), bool(probe.rc_equivariant))

    def factory(seed: int, n_classes: int) -> nn.Module:
        torch.manual_seed(seed)
        if template is not None:
            backbone = copy.deepcopy(template)
        else:
            backbone = model_from_config(dict(cfg["model"]))
        clf = SequenceClassifier(
            backbone, n_classes, pooling=head["pooling"], head=head["type"], mlp_hidden=int(head["mlp_hidden"]),
            dropout=float(head["dropout"]), rc_invariant=rc_inv, conjoin=conjoin,
            freeze_backbone=bool(head["freeze_backbone"]),
        )
        return clf.to(device)

    info = {"backbone": label, "arch": arch, "conjoin": conjoin, "rc_invariant": rc_inv, "model_config": probe.config}
    return factory, label, info


def cnn_factory(cfg: Mapping, input_len: int, device: torch.device):
    """``factory(seed, n_classes) -> GenomicBenchmarksCNN`` with a seeded init."""

    def factory(seed: int, n_classes: int) -> nn.Module:
        torch.manual_seed(seed)
        return GenomicBenchmarksCNN(n_classes, input_len, embedding_dim=int(cfg["embedding_dim"])).to(device)

    return factory


def fit_config(section: Mapping) -> FitConfig:
    """FitConfig from a trainer-like config section (unknown keys are ignored)."""
    keys = FitConfig.__dataclass_fields__
    return FitConfig(**{k: section[k] for k in keys if k in section})


def run_task(cfg: Mapping, task: str, progress: bool = True) -> dict:
    """Cross-validate the backbone (and the CNN baseline when ``baseline``) on one task; write outputs."""
    t0 = time.time()
    device = torch.device(cfg.get("device", "cpu"))
    seeds = seed_list(cfg["cv"])
    n_folds = int(cfg["cv"]["folds"])
    sel = float(cfg["cv"]["select_fraction"])
    data_cfg = cfg["data"]
    data: TaskData = prepare_task(
        task, data_cfg.get("root"), data_cfg.get("max_per_class"), seeds[0], n_folds,
        data_cfg.get("max_test_per_class"), sel,
    )
    splits = cv_splits(data, n_folds, seeds, sel)
    max_len = int(data_cfg["max_len"])
    factory, label, info = backbone_factory(cfg, device)
    result = run_model_cv(label, factory, data, splits, fit_config(cfg["trainer"]), max_len, progress)
    baseline = None
    if cfg.get("baseline"):
        longest = max(len(s) for s in data.pool_seqs + (data.test_seqs or []))
        input_len = max(min(longest, max_len), GenomicBenchmarksCNN.min_input_len())
        baseline = run_model_cv(
            "Genomic Benchmarks CNN", cnn_factory(cfg["baseline_cnn"], input_len, device), data, splits,
            fit_config(cfg["baseline_cnn"]), max_len, progress,
        )
        baseline["input_len"] = input_len
    out = {
        "task": data.task,
        "split_used": data.split_used,
        "eval_split": data.eval_split,
        "class_names": data.class_names,
        "n_sequences": {"pool": len(data.pool_seqs), "test": len(data.test_seqs) if data.test_seqs else 0},
        "notes": data.notes,
        "protocol": {"folds": n_folds, "seeds": seeds, "select_fraction": sel, "max_len": max_len,
                     "max_per_class": data_cfg.get("max_per_class"), "device": str(device)},
        **info,
        **result,
        "baseline": baseline,
        "wall_seconds": round(time.time() - t0, 1),
    }
    write_results(out, cfg["out_dir"])
    return out


def run(cfg: Mapping, progress: bool = True) -> list[dict]:
    """Run ``cfg.task`` (a name, an alias, or ``all``); with ``all``, absent tasks are skipped with a reason."""
    name = str(cfg["task"])
    tasks = list(ALL_TASKS) if name == "all" else [resolve_task(name)]
    results = []
    for task in tasks:
        try:
            res = run_task(cfg, task, progress)
        except (BenchmarkDataError, FileNotFoundError) as err:
            if name != "all":
                raise
            res = {"task": task, "skipped": True, "reason": str(err)}
        results.append(res)
        print(summary_line(res), flush=True)
    if name == "all":
        summary = [{"task": r["task"], "skipped": r.get("skipped", False), "reason": r.get("reason"),
                    "split_used": r.get("split_used"), "accuracy_mean": r.get("accuracy_mean"),
                    "accuracy_std": r.get("accuracy_std")} for r in results]
        Path(cfg["out_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(cfg["out_dir"]) / "summary.json").write_text(json.dumps(summary, indent=1))
    return results
