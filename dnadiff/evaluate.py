"""``python -m dnadiff.evaluate ckpt=PATH [data.*] [split=test] [out=PATH.json]``: held-out likelihood.

Reports nats/token, bits/base (nats / ln 2) and perplexity exp(nats/token) over the evaluation
windows of ``split``; for diffusion objectives these are upper bounds (``is_bound: true``) from the
NELBO averaged over ``eval.draws`` stratified (t, z_t) draws per window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from dnadiff.cli import one_line_errors, to_plain

PROG = "python -m dnadiff.evaluate"


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a checkpoint as configured; returns (and writes) the report."""
    from torch.utils.data import DataLoader

    from dnadiff.data.labelled import data_source
    from dnadiff.data.windows import collate_windows
    from dnadiff.objectives import build_objective
    from dnadiff.tokenizer import Tokenizer
    from dnadiff.train.checkpoint import atomic_write_bytes, load_model, read_metadata
    from dnadiff.train.module import describe_report, objective_report
    from dnadiff.train.stream import EvalNoiseDataset

    ckpt = Path(cfg["ckpt"])
    meta = read_metadata(ckpt)
    if cfg["split"] not in ("train", "valid", "test"):
        raise ValueError(f"split must be train, valid or test, got {cfg['split']!r}")
    data_cfg = dict(cfg["data"])
    if data_cfg.get("seq_len") is None:
        data_cfg["seq_len"] = int(meta.get("config", {}).get("data", {}).get("seq_len", 1024))
    windows = data_source(data_cfg)
    objective = build_objective(meta["objective"], Tokenizer())
    device = pick_device(cfg["device"])
    model = load_model(ckpt, use_ema=cfg["use_ema"]).to(device)
    dataset = windows.dataset(cfg["split"])
    t_min = float(meta["objective"].get("t_min", 1e-3))
    loader = DataLoader(EvalNoiseDataset(dataset, cfg["eval"]["seed"], cfg["eval"]["draws"], t_min),
                        batch_size=windows.eval_batch_size, num_workers=windows.num_workers,
                        collate_fn=collate_windows)
    nll_sum, n_tokens = 0.0, 0.0
    for batch in tqdm(loader, desc=f"evaluate {cfg['split']}", unit="batch", leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = objective.eval_batch(model, batch)
        nll_sum += float(out.nll_sum)
        n_tokens += float(out.n_tokens)
    figures = objective_report(nll_sum, n_tokens, objective.likelihood)
    report = {
        **figures,
        "likelihood": bool(objective.likelihood),
        "n_tokens": int(n_tokens),
        "n_windows": len(dataset),
        "draws_per_window": int(cfg["eval"]["draws"]) if objective.is_bound or not objective.likelihood else 1,
        "is_bound": bool(objective.is_bound),
        "objective": meta["objective"]["name"],
        "split": cfg["split"],
        "seq_len": data_cfg["seq_len"],
        "fasta": str(windows.fasta) if windows.fasta else None,
        "task": getattr(windows, "task", None),
        "bed": str(windows.bed) if windows.bed else None,
        "ckpt": str(ckpt),
        "ema": bool(cfg["use_ema"]),
    }
    out_path = Path(cfg["out"]) if cfg.get("out") else (ckpt if ckpt.is_dir() else ckpt.parent) / f"eval_{cfg['split']}.json"
    atomic_write_bytes(json.dumps(report, indent=1).encode(), out_path)
    figure = describe_report(figures, objective.is_bound)
    print(json.dumps(report, indent=1))
    print(f"{report['objective']} on {report['n_windows']} {cfg['split']} windows: {figure} -> {out_path}")
    return report


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate(to_plain(cfg))


if __name__ == "__main__":
    main()
