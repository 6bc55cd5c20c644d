"""Benchmark: K-fold CV accuracy of the CNN baseline, a backbone from scratch, and an MDLM-pretrained backbone.

    python -m dnadiff.experiments.finetune_cv [--ckpt PATH] [--pretrain-steps 300] [--max-per-class 250] [--epochs 3]
        [--folds 5] [--seeds 1] [--max-len 512] [--device cpu|cuda] [--tasks human_enhancers_cohn ...]

For each task (default: human_enhancers_cohn and human_nontata_promoters, whose shared offline
copies hold the published *test* split only) the three models run on exactly the same folds
(:mod:`dnadiff.finetuning.cv`). The reference measured in the same run is the Genomic Benchmarks CNN;
the published figures are printed beside for orientation (different data sizes: the papers
train on the full train split, this benchmark on a stratified CPU-sized subsample of the split
at hand). The scratch backbone has the pretrained checkpoint's architecture. Without ``--ckpt``
a tiny MDLM checkpoint is pretrained first with ``python -m dnadiff.pretrain`` (``--pretrain-steps``).
Writes ``bench/results/finetune_cv.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dnadiff.resources import shared_data_dir
from dnadiff.metrics.classification import METRICS
from dnadiff.finetuning.cv import cv_splits, prepare_task, run_model_cv
from dnadiff.finetuning.run import backbone_factory, cnn_factory
from dnadiff.models.cnn import GenomicBenchmarksCNN, package_input_len
from dnadiff.config import to_typed
from dnadiff.experiments.record import RESULTS, machine_info, write_results
from dnadiff.finetuning.config import CNNConfig, FinetuneConfig, FitConfig


REFERENCE = "Genomic Benchmarks CNN"  # the baseline every model is compared with, on the same folds
# Published top-1 accuracies of the package's own CNN runs (full train split -> test split, one run).
PUBLISHED: dict[str, dict[str, dict]] = {
    "human_enhancers_cohn": {
        "Genomic Benchmarks CNN": {
            "accuracy": 0.696,
            "source": "ML-Bioinfo-CEITEC/genomic_benchmarks@03c4658d, experiments/torch_cnn_experiments/"
                      "human_enhancers_cohn.ipynb: test accuracy 69.6% (15 epochs, batch 32)",
        },
    },
    "human_nontata_promoters": {
        "Genomic Benchmarks CNN": {
            "accuracy": 0.829,
            "source": "ML-Bioinfo-CEITEC/genomic_benchmarks@325cb8e7, experiments/torch_cnn_experiments/"
                      "human_nontata_promoters.ipynb: test accuracy 0.8288, F1 0.8220 (10 epochs)",
        },
    },
}
NOT_FOUND = (
    "CNN figures are the genomic-benchmarks package's own experiment notebooks (cited per row). The MDLM paper's "
    "Genomic Benchmarks table (Sahoo et al. 2024, arXiv:2406.07524) and the Genomic Benchmarks paper's CNN table "
    "(Gresova et al. 2023, BMC Genomic Data 24:25) could not be retrieved with this project's search tools, so "
    "their figures are not quoted rather than guessed"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = shared_data_dir()
    p.add_argument("--tasks", nargs="+", default=["human_enhancers_cohn", "human_nontata_promoters"])
    p.add_argument("--data-root", default=str(shared / "genomic_benchmarks") if shared else None)
    p.add_argument("--ckpt", default=None, help="MDLM pretraining checkpoint (out_dir/last.ckpt) or export")
    p.add_argument("--pretrain-steps", type=int, default=300, help="without --ckpt: pretrain this many steps (0 = skip)")
    p.add_argument("--pretrain-args", nargs="*", default=[], help="extra dnadiff.pretrain overrides")
    p.add_argument("--model", default="caduceus_ps", help="scratch architecture when no checkpoint is at hand")
    p.add_argument("--max-per-class", type=int, default=250)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--work-dir", default=str(Path("runs") / "finetune_cv"))
    p.add_argument("--out", default=str(RESULTS / "finetune_cv.json"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def pretrain_tiny(args: argparse.Namespace) -> tuple[str | None, str]:
    """Pretrain a tiny MDLM checkpoint with the package's entry point; (path, how) or (None, why not)."""
    if args.pretrain_steps <= 0:
        return None, "no --ckpt given and --pretrain-steps 0"
    out = Path(args.work_dir) / "pretrain"
    cmd = [sys.executable, "-m", "dnadiff.pretrain", f"trainer.max_steps={args.pretrain_steps}", f"out_dir={out}",
           "trainer.enable_progress_bar=false", "overwrite=true", *args.pretrain_args]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ckpt = out / "last.ckpt"
    if proc.returncode != 0 or not ckpt.is_file():
        tail = (proc.stderr or proc.stdout)[-600:].strip().replace("\n", " | ")
        return None, f"pretraining failed (rc={proc.returncode}): {tail}"
    return str(ckpt), f"{' '.join(cmd[1:])} ({time.time() - t0:.0f} s)"


def row(res: dict, wall: float) -> dict:
    """The summary of one model's CV on one task."""
    return {
        **{k: res[k] for k in res if k.endswith("_mean") or k.endswith("_std")},
        "fold_accuracies": [f["accuracy"] for f in res["folds"]],
        "best_epochs": [f["best_epoch"] for f in res["folds"]],
        "wall_seconds": round(wall, 1),
    }


def run_task(task: str, args: argparse.Namespace, ckpt: str | None, head: dict, device: torch.device,
             save: Callable[[dict], None]) -> dict:
    """All three models on one task, same folds; ``save(partial)`` after each model."""
    seeds = list(range(args.seeds))
    data = prepare_task(task, args.data_root, args.max_per_class, 0, args.folds)
    splits = cv_splits(data, args.folds, seeds)
    fit = FitConfig(max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_batch_size=256)
    progress = not args.no_progress
    rows: dict[str, dict] = {}
    out = {
        "task": data.task, "split_used": data.split_used, "eval_split": data.eval_split, "notes": data.notes,
        "n_pool": len(data.pool_seqs), "n_per_fold_train": int(len(splits[0].train)),
        "n_per_fold_select": int(len(splits[0].select)), "n_per_fold_eval": int(len(splits[0].evaluate)),
        "rows": rows, "published": PUBLISHED.get(task, {}),
    }
    lengths = [min(len(s), args.max_len) for s in data.pool_seqs + (data.test_seqs or [])]
    input_len = max(package_input_len(lengths), GenomicBenchmarksCNN.min_input_len())
    t0 = time.time()
    cnn_fit = CNNConfig(max_epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, eval_batch_size=256)
    cnn = run_model_cv("cnn", cnn_factory(cnn_fit, input_len, device), data, splits, cnn_fit, args.max_len, progress)
    rows[REFERENCE] = row(cnn, time.time() - t0)
    out["cnn_input_len"] = input_len
    save(out)
    if ckpt:
        from dnadiff import load_model

        config = load_model(ckpt).config
    else:
        from dnadiff.models.registry import load_model_config

        config = load_model_config(args.model)
    t0 = time.time()
    factory, _, info = backbone_factory(to_typed({"ckpt": None, "model": config, "head": head}, FinetuneConfig), device)
    scratch = run_model_cv("scratch", factory, data, splits, fit, args.max_len, progress)
    rows[f"{config['arch']} from scratch"] = row(scratch, time.time() - t0)
    out["backbone"] = info
    save(out)
    if ckpt:
        t0 = time.time()
        factory, _, _ = backbone_factory(to_typed({"ckpt": ckpt, "model": config, "head": head}, FinetuneConfig), device)
        pre = run_model_cv("mdlm", factory, data, splits, fit, args.max_len, progress)
        rows[f"{config['arch']} MDLM-pretrained"] = row(pre, time.time() - t0)
    else:
        rows[f"{config['arch']} MDLM-pretrained"] = {"not_run": True}
    save(out)
    return out


def paired_differences(task_result: dict) -> dict[str, dict[str, float]]:
    """Accuracy of each model minus the CNN's on the same folds (paired t interval), and
    pretrained minus scratch: the only comparisons a claim of one model beating another may use."""
    from dnadiff.experiments.stats import paired_interval

    rows = {k: v for k, v in task_result["rows"].items() if not v.get("not_run")}
    out = {f"{name} - {REFERENCE}": paired_interval(r["fold_accuracies"], rows[REFERENCE]["fold_accuracies"])
           for name, r in rows.items() if name != REFERENCE and REFERENCE in rows}
    scratch = next((k for k in rows if k.endswith("from scratch")), None)
    pre = next((k for k in rows if k.endswith("MDLM-pretrained")), None)
    if scratch and pre:
        out[f"{pre} - {scratch}"] = paired_interval(rows[pre]["fold_accuracies"], rows[scratch]["fold_accuracies"])
    return out


def fmt(r: dict, m: str = "accuracy") -> str:
    return "not run" if r.get("not_run") else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}"


def markdown(result: dict) -> str:
    lines = ["# Fine-tuning cross-validation on Genomic Benchmarks", "", f"- settings: {result['settings']}",
             f"- pretrained checkpoint: {result['pretrained']}", f"- published figures: {result['published_note']}", ""]
    for t in result["tasks"]:
        lines += [f"## {t['task']}", "", f"- split used: {t['split_used']}",
                  f"- per fold: {t['n_per_fold_train']} train, {t['n_per_fold_select']} epoch selection, "
                  f"{t['n_per_fold_eval']} evaluation ({t['eval_split']}); pool {t['n_pool']} after subsampling", ""]
        lines += ["| model | " + " | ".join(METRICS) + " | wall s |", "|---|" + "---|" * (len(METRICS) + 1)]
        lines += [f"| {name} | " + " | ".join(fmt(r, m) for m in METRICS) + f" | {r['wall_seconds']} |"
                  for name, r in t["rows"].items() if not r.get("not_run")]
        lines += [f"| {name} | not run | | | | - |" for name, r in t["rows"].items() if r.get("not_run")]
        paired = t.get("paired_accuracy_differences", {})
        if paired:
            lines += ["", "Paired accuracy differences over the same folds (mean, 95% t interval; a claim needs an "
                      "interval that excludes 0):", ""]
            lines += [f"- {name}: {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" for name, d in paired.items()]
            lines.append("")
        for name, ref in t["published"].items():
            lines.append(f"| published: {name} | {ref['accuracy']:.3f} | | | | see source |")
            lines.append(f"\n{name} source: {ref['source']}\n")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.data_root is None:
        sys.exit("error: no shared data folder found; pass --data-root PATH (a genomic-benchmarks layout folder)")
    device = torch.device(args.device)
    t0 = time.time()
    ckpt, how = (args.ckpt, "given with --ckpt") if args.ckpt else pretrain_tiny(args)
    head = {"pooling": "auto", "type": "linear", "mlp_hidden": 64, "dropout": 0.1, "rc_invariant": "auto",
            "conjoin": "auto", "freeze_backbone": False}
    result = {
        "benchmark": "finetune_cv",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work_dir", "no_progress")},
        "machine": machine_info(device),
        "pretrained": ckpt or f"not run: {how}", "pretrain_command": how if ckpt else None,
        "reference_in_run": f"{REFERENCE} on the same folds",
        "published_note": NOT_FOUND, "tasks": [], "complete": False,
    }
    out = Path(args.out)

    def save(task_result: dict | None = None) -> None:
        if task_result is not None and task_result not in result["tasks"]:
            result["tasks"].append(task_result)
        for t in result["tasks"]:
            t["paired_accuracy_differences"] = paired_differences(t)
        result["wall_seconds"] = round(time.time() - t0, 1)
        write_results(result, out.with_suffix(""), markdown(result))

    for task in args.tasks:
        run_task(task, args, ckpt, head, device, save)
    result["complete"] = True
    result["note"] = ("the CNN is the reference measured in the same run; published figures are trained on the full "
                      "train split and scored on the test split, so they are orientation, not a like-for-like target")
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()
