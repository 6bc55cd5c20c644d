"""The held-out likelihood of a checkpoint (``python -m dnadiff.evaluate``): windows, fixed noise,
the objective's per-window figure, and the report with its standard error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dnadiff.atomic import atomic_write_bytes, check_output_file
from dnadiff.checkpoint import load_model, read_metadata, training_seq_len
from dnadiff.data.sources import data_source
from dnadiff.data.stream import EvalNoiseDataset
from dnadiff.data.windows import collate_windows
from dnadiff.device import resolve_device
from dnadiff.metrics.config import EvaluateConfig
from dnadiff.metrics.likelihood import HeldoutNLL, describe_report, objective_report
from dnadiff.objectives import build_objective
from dnadiff.tokenizer import Tokenizer


@torch.no_grad()
def heldout_nll(model: torch.nn.Module, objective: Any, loader: DataLoader, device: torch.device,
                desc: str = "evaluate") -> HeldoutNLL:
    """Run the objective's evaluation figure over every batch of ``loader``."""
    totals = HeldoutNLL()
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):  # no bar when not a terminal
        totals.add(objective.eval_batch(model, {k: v.to(device) for k, v in batch.items()}))
    return totals


def report_path(cfg: EvaluateConfig) -> Path:
    """Where the report goes: ``out``, or ``eval_<split>.json`` beside the checkpoint (in an export folder)."""
    if cfg.out:
        return Path(cfg.out)
    ckpt = Path(cfg.ckpt)
    return (ckpt if ckpt.is_dir() else ckpt.parent) / f"eval_{cfg.split}.json"


def evaluate_checkpoint(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate a checkpoint as configured; returns (and writes) the report."""
    return evaluate_windows(cfg)[0]


def evaluate_windows(cfg: EvaluateConfig) -> tuple[dict[str, Any], HeldoutNLL]:
    """:func:`evaluate_checkpoint`, also returning the per-window totals (for paired comparisons)."""
    ckpt = Path(cfg.ckpt)
    out_path = check_output_file(report_path(cfg))
    meta = read_metadata(ckpt)
    data_cfg = cfg.data
    if data_cfg.seq_len is None:
        seq_len = training_seq_len(meta)
        if seq_len is None:
            raise ValueError(f"{ckpt} does not record its training window length: give data.seq_len=N")
        data_cfg = dataclasses.replace(data_cfg, seq_len=seq_len)
    source = data_source(data_cfg)
    objective = build_objective(meta["objective"], Tokenizer())
    device = resolve_device(cfg.device)
    model = load_model(ckpt, use_ema=cfg.use_ema).to(device)
    dataset = source.dataset(cfg.split)
    loader = DataLoader(EvalNoiseDataset(dataset, cfg.eval.seed, cfg.eval.draws), batch_size=source.eval_batch_size,
                        num_workers=source.num_workers, collate_fn=collate_windows)
    totals = heldout_nll(model, objective, loader, device, desc=f"evaluate {cfg.split}")
    nll_sum, n_tokens = (float(v) for v in totals.sums())
    figures = objective_report(nll_sum, n_tokens, objective.likelihood)
    stderr = totals.standard_error()
    prefix = "nats_per_token" if objective.likelihood else "masked_token_ce_nats"
    report = {
        **figures,
        f"{prefix}_stderr": stderr,
        "stderr_kind": "window-clustered (draws nested in windows), delta method for the ratio of sums",
    }
    if objective.is_bound:
        report[f"{prefix}_mc_stderr"] = totals.mc_standard_error()
        report["mc_stderr_kind"] = "Monte Carlo noise alone (windows fixed), from the spread of the draws in each window"
        report["bound_terms_nats_per_token"] = totals.term_per_token()
        report["bound_terms"] = ("prior: exact KL(q(z_1|x) || p_theta(z_1)) = alpha_1 * sum CE(all-mask); "
                                 "diffusion: integral over [t_min, 1]; reconstruction: -log p_theta(x | z_{t_min})")
    report.update({
        "likelihood": bool(objective.likelihood),
        "n_tokens": int(n_tokens),
        "n_windows": len(dataset),
        "draws_per_window": cfg.eval.draws if objective.is_bound or not objective.likelihood else 1,
        "eval_seed": cfg.eval.seed,
        "is_bound": bool(objective.is_bound),
        "objective": meta["objective"]["name"],
        "split": cfg.split,
        "seq_len": data_cfg.seq_len,
        "n_windows_available": int(getattr(dataset, "n_slots", len(dataset))),
        "n_windows_dropped_n_rich": int(getattr(dataset, "n_dropped_n", 0)),
        "max_eval_windows": data_cfg.max_eval_windows,
        "windows_from": source.describe(cfg.split) if hasattr(source, "describe") else source.split_used,
        "fasta": str(source.fasta) if source.fasta else None,
        "task": getattr(source, "task", None),
        "bed": str(source.bed) if source.bed and cfg.split != "all" else None,
        "ckpt": str(ckpt),
        "ema": cfg.use_ema,
    })
    atomic_write_bytes(json.dumps(report, indent=1).encode(), out_path)
    report["out"] = str(out_path)
    report["line"] = describe_report(figures, objective.is_bound, stderr)
    return report, totals
