"""The fine-tuning table's comparisons: paired differences over the same folds with a t interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dnadiff.experiments.finetune_cv import REFERENCE, markdown, paired_differences
from dnadiff.experiments.stats import paired_interval


def test_paired_interval_is_the_t_interval_of_the_differences() -> None:
    a, b = [0.70, 0.66, 0.72, 0.69, 0.71], [0.65, 0.64, 0.66, 0.66, 0.64]
    got = paired_interval(a, b)
    diff = np.subtract(a, b)
    lo, hi = stats.t.interval(0.95, diff.size - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert got["mean"] == pytest.approx(diff.mean()) and got["n"] == 5
    assert (got["lo"], got["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    # pairing matters: the same numbers unpaired (shuffled) give a wider interval
    wide = paired_interval(a, b[::-1])
    assert wide["hi"] - wide["lo"] > got["hi"] - got["lo"]


def test_table_lists_paired_differences_against_the_cnn_and_pretrained_vs_scratch() -> None:
    rows = {
        REFERENCE: {"fold_accuracies": [0.60, 0.62, 0.61], "accuracy_mean": 0.61, "accuracy_std": 0.01},
        "caduceus_ps from scratch": {"fold_accuracies": [0.65, 0.66, 0.64]},
        "caduceus_ps MDLM-pretrained": {"fold_accuracies": [0.66, 0.66, 0.66]},
    }
    paired = paired_differences({"rows": rows})
    assert set(paired) == {f"caduceus_ps from scratch - {REFERENCE}", f"caduceus_ps MDLM-pretrained - {REFERENCE}",
                           "caduceus_ps MDLM-pretrained - caduceus_ps from scratch"}
    assert paired[f"caduceus_ps from scratch - {REFERENCE}"]["mean"] == pytest.approx(0.04)
    assert paired["caduceus_ps MDLM-pretrained - caduceus_ps from scratch"]["lo"] < 0.01


def test_markdown_prints_the_intervals() -> None:
    metrics = {f"{m}_{s}": 0.5 for m in ("accuracy", "mcc", "f1", "auroc") for s in ("mean", "std")}
    rows = {REFERENCE: {**metrics, "fold_accuracies": [0.5, 0.6], "wall_seconds": 1.0},
            "x from scratch": {**metrics, "fold_accuracies": [0.7, 0.7], "wall_seconds": 1.0}}
    task = {"task": "t", "split_used": "s", "n_per_fold_train": 1, "n_per_fold_select": 1, "n_per_fold_eval": 1,
            "eval_split": "e", "n_pool": 2, "rows": rows, "published": {}}
    task["paired_accuracy_differences"] = paired_differences(task)
    text = markdown({"settings": {}, "pretrained": "-", "published_note": "-", "tasks": [task]})
    assert "- x from scratch - Genomic Benchmarks CNN: +0.150 [" in text
