"""``python -m dnadiff.pretrain [overrides]``: train a DNA language model (MDLM by default) on genome windows.

With no arguments it trains a tiny Caduceus-PS on the embedded real sample (hg38 chr2:1-2 Mb) in a
few minutes on a CPU. Config groups: model, objective, data, trainer, experiment (see ``--help``).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from dnadiff.cli import one_line_errors, to_plain

PROG = "python -m dnadiff.pretrain"


def resolve_precision(trainer_cfg: dict[str, Any]) -> str:
    """``auto`` precision: bf16 mixed precision on CUDA, full fp32 on CPU."""
    import torch

    precision = str(trainer_cfg.get("precision", "auto"))
    if precision != "auto":
        return precision
    on_gpu = torch.cuda.is_available() and trainer_cfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def build_trainer(cfg: dict[str, Any], out_dir: Path, callbacks: list | None = None):
    """A Lightning Trainer with atomic checkpointing to ``out_dir/last.ckpt``."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from dnadiff.train.checkpoint import AtomicCheckpointIO

    t = cfg["trainer"]
    accumulate = int(t["accumulate_grad_batches"])
    ckpt_cb = ModelCheckpoint(dirpath=out_dir, filename="step{step:07d}", save_top_k=0, save_last=True,
                              every_n_train_steps=int(t["checkpoint_every"]), auto_insert_metric_name=False)
    return L.Trainer(
        max_steps=int(t["max_steps"]),
        accelerator=t["accelerator"],
        devices=t["devices"],
        num_nodes=int(t["num_nodes"]),
        strategy=t["strategy"],
        precision=resolve_precision(t),
        accumulate_grad_batches=accumulate,
        gradient_clip_val=t["gradient_clip_val"],
        val_check_interval=int(t["val_check_interval"]) * accumulate,
        check_val_every_n_epoch=None,
        limit_val_batches=t["limit_val_batches"],
        log_every_n_steps=int(t["log_every_n_steps"]),
        enable_progress_bar=bool(t["enable_progress_bar"]),
        deterministic=bool(t["deterministic"]),
        use_distributed_sampler=False,
        default_root_dir=str(out_dir),
        logger=L.pytorch.loggers.CSVLogger(str(out_dir), name="logs"),  # logs/version_k: one per (re)start
        callbacks=[ckpt_cb, *(callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
    )


def conditional_model_config(cfg: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Give the model one class embedding per label of a labelled data source (plus the null label)."""
    n = cfg["model"].get("n_classes", 0)
    if n not in (0, len(classes)):
        raise ValueError(f"model.n_classes={n} but the data has {len(classes)} classes {classes}")
    return {**cfg, "model": {**cfg["model"], "n_classes": len(classes)}}


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train as configured; returns the end summary (also written to ``out_dir/metrics.json``)."""
    import lightning as L

    from dnadiff.train.checkpoint import atomic_write_bytes
    from dnadiff.train.data import PretrainDataModule
    from dnadiff.train.module import LMModule, describe_report

    out_dir = Path(cfg["out_dir"])
    resume = cfg.get("resume") or cfg.get("ckpt_path")
    if resume and not Path(resume).is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {resume}")
    L.seed_everything(int(cfg["seed"]), verbose=False)
    data = PretrainDataModule(cfg["data"], cfg["seed"], cfg["objective"], cfg["eval"],
                              cfg["trainer"]["max_steps"], cfg["trainer"]["accumulate_grad_batches"])
    data.windows.dataset("train")
    data.windows.dataset("valid")
    if data.classes:
        cfg = conditional_model_config(cfg, data.classes)
    module = LMModule(cfg, data.classes)
    trainer = build_trainer(cfg, out_dir)
    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|not resumable|mid-epoch).*")
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
        last = out_dir / "last.ckpt"
        trainer.save_checkpoint(last, weights_only=False)  # a full checkpoint: optimiser, schedulers, loops
        val = trainer.validate(module, datamodule=data, verbose=False, weights_only=True)[0]
    elapsed = time.time() - start
    n_params = sum(p.numel() for p in module.model.parameters())
    summary = {
        "steps": trainer.global_step,
        "train_tokens": trainer.global_step * cfg["trainer"]["accumulate_grad_batches"]
        * cfg["data"]["batch_size"] * trainer.world_size * cfg["data"]["seq_len"],
        "params": n_params,
        **{key.replace("/", "_"): value for key, value in val.items()},
        "likelihood": module.objective.likelihood,
        "val_windows": len(data.eval_dataset("valid")),
        "classes": data.classes,
        "val_draws_per_window": cfg["eval"]["draws"],
        "is_bound": module.objective.is_bound,
        "seconds": round(elapsed, 1),
        "checkpoint": str(last),
    }
    if trainer.is_global_zero:
        atomic_write_bytes(json.dumps(summary, indent=1).encode(), out_dir / "metrics.json")
        figure = describe_report({k.removeprefix("val/"): v for k, v in val.items()}, summary["is_bound"])
        print(
            f"\ndnadiff.pretrain: {summary['steps']} steps, {n_params:,} params, {elapsed:.0f} s\n"
            f"  validation ({summary['val_windows']} held-out windows x {cfg['eval']['draws']} draws): {figure}\n"
            f"  checkpoint: {last}"
        )
    return summary


@hydra.main(config_path="configs", config_name="pretrain", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run(to_plain(cfg))


if __name__ == "__main__":
    main()
