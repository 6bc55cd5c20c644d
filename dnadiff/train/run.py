"""One pretraining run: data module, Lightning module and Trainer from a :class:`PretrainConfig`,
``fit``, a final full checkpoint, a last validation and the summary (``out_dir/metrics.json``).

The run's lifecycle lives beside it: :mod:`~dnadiff.train.outdir` (folder checks, lock, no
mixing of two runs, orphan clean-up), :mod:`~dnadiff.train.start` (fresh / init_from / resume
and the resume checks), :mod:`~dnadiff.train.checkpointing` (finite, atomic checkpoints under one
name, keep_last) and :mod:`~dnadiff.train.guards` (NaN/inf loss or gradient: stop or skip). A run
that diverges leaves its last good checkpoint as it was and records the failure in metrics.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch

from dnadiff.atomic import atomic_write_bytes
from dnadiff.config import ConfigError
from dnadiff.data.datamodule import PretrainDataModule
from dnadiff.metrics.likelihood import describe_report
from dnadiff.train.checkpoint_io import AtomicCheckpointIO
from dnadiff.train.checkpointing import RunCheckpoints
from dnadiff.train.config import PretrainConfig, TrainerConfig
from dnadiff.train.guards import NonFiniteError, NonFiniteGuard
from dnadiff.train.module import LMModule
from dnadiff.train.outdir import LAST, RunDir, run_dir
from dnadiff.train.start import InitSource, Start, command_line_model_overrides, plan_start

METRICS = "metrics.json"


def resolve_precision(trainer: TrainerConfig) -> str:
    """``auto`` precision: bf16 mixed precision on CUDA, full fp32 on CPU."""
    if trainer.precision != "auto":
        return trainer.precision
    on_gpu = torch.cuda.is_available() and trainer.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def build_logger(trainer: TrainerConfig, out_dir: Path) -> Any:
    """``trainer.logger``: logs/version_k (one per (re)start) as CSV or TensorBoard events, or none."""
    if trainer.logger == "csv":  # written at every logging step, so that a killed run keeps its log
        return L.pytorch.loggers.CSVLogger(str(out_dir), name="logs", flush_logs_every_n_steps=trainer.log_every_n_steps)
    if trainer.logger == "tensorboard":
        return L.pytorch.loggers.TensorBoardLogger(str(out_dir), name="logs")
    return False


def build_trainer(cfg: PretrainConfig, out_dir: Path, callbacks: list | None = None) -> L.Trainer:
    """A Lightning Trainer whose only checkpoints are the ``callbacks``' (Lightning's own are off)."""
    t = cfg.trainer
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
        logger=build_logger(t, out_dir),
        enable_checkpointing=False,
        callbacks=list(callbacks or []),
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
    )


def conditional_model(cfg: PretrainConfig, classes: list[str]) -> PretrainConfig:
    """Give the model one class embedding per label of a labelled data source (plus the null label)."""
    n = cfg.model.n_classes
    if n not in (0, len(classes)):
        raise ConfigError(f"model.n_classes={n} but the data has {len(classes)} classes {classes}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_classes=len(classes)))


def check_init_classes(init: InitSource, classes: list[str]) -> None:
    """init_from weights carry no class embedding for labels they were not trained with."""
    n = init.config.get("n_classes", 0)
    if classes and n != len(classes):
        raise ConfigError(f"init_from={init.path} has n_classes={n} but the data has {len(classes)} classes "
                          f"{classes}: class-conditional training needs a model trained with these classes")


def pretrain(cfg: PretrainConfig, callbacks: list[L.Callback] | None = None,
             model_overrides: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Train as configured (with extra Lightning ``callbacks``, if any); returns the end summary
    (also written to ``out_dir/metrics.json``). ``model_overrides`` are the explicit model
    overrides that ``init_from`` must not contradict (default: the running Hydra job's)."""
    init = InitSource.read(cfg.init_from) if cfg.init_from else None
    if init is not None:
        cfg = init.apply(cfg, command_line_model_overrides() if model_overrides is None else model_overrides)
    t = cfg.trainer
    with run_dir(cfg.out_dir, cfg.resume_from, cfg.overwrite) as folder:
        init_state = init.weights() if init is not None and not cfg.resume_from else None
        L.seed_everything(cfg.seed, verbose=False)
        data = PretrainDataModule(cfg.data, cfg.seed, t.max_steps, t.accumulate_grad_batches,
                                  antithetic=cfg.objective.antithetic, eval_draws=cfg.eval.draws,
                                  eval_seed=cfg.eval.seed)
        data.source.dataset("train")
        data.source.dataset("valid")
        if init is not None:
            check_init_classes(init, data.classes)
        if data.classes:
            cfg = conditional_model(cfg, data.classes)
        module = LMModule(cfg, data.classes, init_state)
        guard = NonFiniteGuard(t.on_nonfinite, t.max_skipped_steps)
        saver = RunCheckpoints(folder, t.checkpoint_every, t.keep_last)
        trainer = build_trainer(cfg, folder.path, [saver, guard, *(callbacks or [])])
        start = plan_start(cfg, trainer.world_size, init)
        module.run_record = start.run
        folder.remove_orphans()
        return _fit(cfg, data, module, trainer, folder, saver, guard, start)


def _fit(cfg: PretrainConfig, data: PretrainDataModule, module: LMModule, trainer: L.Trainer, folder: RunDir,
         saver: RunCheckpoints, guard: NonFiniteGuard, start: Start) -> dict[str, Any]:
    """fit, the final checkpoint, the last validation and the summary; a divergence is recorded."""
    out_dir, t = folder.path, cfg.trainer
    last = out_dir / LAST
    began = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|not resumable|mid-epoch).*")
        try:
            trainer.fit(module, datamodule=data, ckpt_path=cfg.resume_from, weights_only=True)
            saver.save(trainer, module)  # a full checkpoint at the end: optimiser, schedulers, loops
        except NonFiniteError as err:
            if trainer.is_global_zero:
                record_failure(out_dir, err, saver, guard, start)
            raise NonFiniteError(f"{err}; {last_good(last, saver, start)}", err.step, err.what, err.value,
                                 err.name) from None
        val = trainer.validate(module, datamodule=data, verbose=False, weights_only=True)[0]
    elapsed = time.time() - began
    n_params = sum(p.numel() for p in module.model.parameters())
    summary = {
        "status": "complete",
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
        "nonfinite_skipped_steps": guard.skipped,
        "skipped_steps": list(guard.skipped_steps),
        **start.summary(),
    }
    if trainer.is_global_zero:
        atomic_write_bytes(json.dumps(summary, indent=1).encode(), out_dir / METRICS)
        figure = describe_report({k.removeprefix("val/"): v for k, v in val.items()}, summary["is_bound"])
        print(
            f"\ndnadiff.pretrain: {summary['steps']} steps, {n_params:,} params, {elapsed:.0f} s\n"
            f"  validation ({summary['val_windows']} held-out windows x {cfg.eval.draws} draws): {figure}\n"
            f"  checkpoint: {last}"
        )
    return summary


def last_good(last: Path, saver: RunCheckpoints, start: Start) -> str:
    """Where the last good checkpoint is, for the error line."""
    if saver.last_step is not None:
        return f"the last good checkpoint is {last} (step {saver.last_step})"
    if last.is_file():
        step = f" (step {start.resume_step})" if start.kind == "resume" and start.resume_step is not None else ""
        return f"{last}{step} is unchanged"
    return "no checkpoint was written"


def record_failure(out_dir: Path, err: NonFiniteError, saver: RunCheckpoints, guard: NonFiniteGuard,
                   start: Start) -> None:
    """metrics.json of a failed run: what failed where, the last good checkpoint, and the summary
    of the last complete run in this folder (``previous``), so that nothing of it is lost."""
    path = out_dir / METRICS
    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if isinstance(previous, dict) and previous.get("status") == "failed":
            previous = previous.get("previous")
    last = out_dir / LAST
    record = {
        "status": "failed",
        "failure": err.record(),
        "last_good_checkpoint": str(last) if last.is_file() else None,
        "last_good_step": saver.last_step if saver.last_step is not None else start.resume_step,
        "nonfinite_skipped_steps": guard.skipped,
        "skipped_steps": list(guard.skipped_steps),
        **start.summary(),
        "previous": previous,
    }
    atomic_write_bytes(json.dumps(record, indent=1).encode(), path)
