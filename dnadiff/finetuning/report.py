"""Write cross-validation results: ``<out>/<task>/cv.json``, a markdown table ``cv.md``, a summary line."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dnadiff.atomic import atomic_write_files
from dnadiff.metrics.classification import METRICS

PROTOCOL_NAMES: dict[str, str] = {
    "kfold": "stratified K-fold cross-validation",
    "seeds": "the Caduceus/MDLM papers' protocol: seeded 90/10 train/validation splits, best validation epoch",
}


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _pm(res: dict, metric: str) -> str:
    return f"{_fmt(res[f'{metric}_mean'])} ± {_fmt(res[f'{metric}_std'])}"


def markdown_table(result: dict) -> str:
    """Per-fold accuracy of the model (and the baseline beside it), then mean ± std of every metric."""
    model, base = result, result.get("baseline")
    lines = [
        f"# {result['task']}: {model['name']}" + (f" vs {base['name']}" if base else ""),
        "",
        f"- protocol: {result['protocol']['name']} ({PROTOCOL_NAMES[result['protocol']['name']]})",
        f"- split used: {result['split_used']}",
        f"- evaluated on: {result['eval_split']}",
        f"- sequences: {result['n_sequences']}",
    ]
    lines += [f"- note: {n}" for n in result.get("notes", [])]
    header = "| seed | fold | n_train | n_eval | best epoch | accuracy | MCC | F1 | AUROC |"
    if base:
        header += " CNN accuracy | CNN MCC |"
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    for i, row in enumerate(model["folds"]):
        cells = [row["seed"], "-" if row["fold"] is None else row["fold"], row["n_train"], row["n_eval"],
                 row["best_epoch"]]
        cells += [_fmt(row[m]) for m in METRICS]
        if base:
            cells += [_fmt(base["folds"][i]["accuracy"]), _fmt(base["folds"][i]["mcc"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for res in [model] + ([base] if base else []):
        lines.append(f"| {res['name']} | " + " | ".join(_pm(res, m) for m in METRICS) + " |")
    lines.append("")
    lines.append("mean ± std (sample std, ddof=1) over every (seed, fold)" if result["protocol"]["name"] == "kfold"
                 else "mean ± std (sample std, ddof=1) over the seeds.")
    return "\n".join(lines) + "\n"


RESULT_FILES: tuple[str, ...] = ("cv.json", "cv.md")


def result_files(result: dict, out_dir: str | Path) -> dict[Path, bytes]:
    """``<out_dir>/<task>/cv.json`` and ``cv.md`` as {path: bytes}, to be written together."""
    task_dir = Path(out_dir) / result["task"]
    return {task_dir / "cv.json": json.dumps(result, indent=1, default=float).encode(),
            task_dir / "cv.md": markdown_table(result).encode()}


def write_results(result: dict, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<task>/cv.json`` and ``cv.md`` together; returns the task folder."""
    atomic_write_files(result_files(result, out_dir))
    return Path(out_dir) / result["task"]


def summary_line(result: dict) -> str:
    """One line per task for the end-of-run summary."""
    if result.get("skipped"):
        return f"{result['task']}: skipped ({result['reason']})"
    text = f"{result['task']}: {result['name']} accuracy {_pm(result, 'accuracy')}"
    if result.get("baseline"):
        text += f"; CNN baseline {_pm(result['baseline'], 'accuracy')}"
    return text + f" [protocol {result['protocol']['name']}; evaluated on {result['eval_split']}]"
