"""One pretraining run: data module, Lightning module and Trainer from a :class:`PretrainConfig`,
``fit``, a final full checkpoint, a last validation and the summary (``out_dir/metrics.json``)."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from dnadiff.atomic import atomic_write_bytes
from dnadiff.config import ConfigError
from dnadiff.data.datamodule import PretrainDataModule
from dnadiff.metrics.likelihood import describe_report
from dnadiff.train.checkpoint_io import AtomicCheckpointIO
from dnadiff.train.config import PretrainConfig, TrainerConfig
from dnadiff.train.module import LMModule

LAST = "last.ckpt"


def resolve_precision(trainer: TrainerConfig) -> str:
    """``auto`` precision: bf16 mixed precision on CUDA, full fp32 on CPU."""
    if trainer.precision != "auto":
        return trainer.precision
    on_gpu = torch.cuda.is_available() and trainer.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def build_trainer(cfg: PretrainConfig, out_dir: Path, callbacks: list | None = None) -> L.Trainer:
    """A Lightning Trainer with atomic checkpointing to ``out_dir/last.ckpt``."""
    t = cfg.trainer
    ckpt_cb = ModelCheckpoint(dirpath=out_dir, filename="step{step:07d}", save_top_k=0, save_last=True,
                              every_n_train_steps=t.checkpoint_every, auto_insert_metric_name=False)
    return L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t),
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=t.val_check_interval * t.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        use_distributed_sampler=False,
        default_root_dir=str(out_dir),
        logger=L.pytorch.loggers.CSVLogger(str(out_dir), name="logs"),  # logs/version_k: one per (re)start
        callbacks=[ckpt_cb, *(callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
    )


def conditional_model(cfg: PretrainConfig, classes: list[str]) -> PretrainConfig:
    """Give the model one class embedding per label of a labelled data source (plus the null label)."""
    n = cfg.model.n_classes
    if n not in (0, len(classes)):
        raise ConfigError(f"model.n_classes={n} but the data has {len(classes)} classes {classes}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_classes=len(classes)))


def pretrain(cfg: PretrainConfig, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train as configured (with extra Lightning ``callbacks``, if any); returns the end summary
    (also written to ``out_dir/metrics.json``)."""
    out_dir = Path(cfg.out_dir)
    resume = cfg.resume_from
    if resume and not Path(resume).is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {resume}")
    L.seed_everything(cfg.seed, verbose=False)
    t = cfg.trainer
    data = PretrainDataModule(cfg.data, cfg.seed, t.max_steps, t.accumulate_grad_batches,
                              antithetic=cfg.objective.antithetic, eval_draws=cfg.eval.draws, eval_seed=cfg.eval.seed)
    data.source.dataset("train")
    data.source.dataset("valid")
    if data.classes:
        cfg = conditional_model(cfg, data.classes)
    module = LMModule(cfg, data.classes)
    trainer = build_trainer(cfg, out_dir, callbacks)
    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|not resumable|mid-epoch).*")
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
        last = out_dir / LAST
        trainer.save_checkpoint(last, weights_only=False)  # a full checkpoint: optimiser, schedulers, loops
        val = trainer.validate(module, datamodule=data, verbose=False, weights_only=True)[0]
    elapsed = time.time() - start
    n_params = sum(p.numel() for p in module.model.parameters())
    summary = {
        "steps": trainer.global_step,
        "train_tokens": trainer.global_step * t.accumulate_grad_batches * cfg.data.batch_size
        * trainer.world_size * cfg.data.seq_len,
        "params": n_params,
        **{name.replace("/", "_"): value for name, value in val.items()},
        "likelihood": module.objective.likelihood,
        "val_windows": len(data.eval_dataset("valid")),
        "classes": data.classes,
        "val_draws_per_window": cfg.eval.draws,
        "is_bound": module.objective.is_bound,
        "seconds": round(elapsed, 1),
        "checkpoint": str(last),
    }
    if trainer.is_global_zero:
        atomic_write_bytes(json.dumps(summary, indent=1).encode(), out_dir / "metrics.json")
        figure = describe_report({k.removeprefix("val/"): v for k, v in val.items()}, summary["is_bound"])
        print(
            f"\ndnadiff.pretrain: {summary['steps']} steps, {n_params:,} params, {elapsed:.0f} s\n"
            f"  validation ({summary['val_windows']} held-out windows x {cfg.eval.draws} draws): {figure}\n"
            f"  checkpoint: {last}"
        )
    return summary
