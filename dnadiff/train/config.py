"""Configs of pretraining: the ``optim`` and ``trainer`` groups and the whole
``python -m dnadiff.pretrain`` job (:class:`PretrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from dnadiff.config import in_range, is_int, key, one_of, positive_int, require
from dnadiff.data.config import DataConfig
from dnadiff.metrics.config import EvalConfig
from dnadiff.models.model_config import ModelConfig
from dnadiff.objectives.config import ObjectiveConfig


NONFINITE_POLICIES: tuple[str, ...] = ("stop", "skip")
LOGGERS: tuple[str, ...] = ("csv", "tensorboard", "none")


def tensorboard_available() -> bool:
    """Lightning's TensorBoardLogger works with either package."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


@dataclass
class OptimConfig:
    """AdamW (decoupled weight decay on matrices), linear warmup + cosine decay, EMA of weights."""

    lr: float = 3e-3
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at max_steps
    ema_decay: float = 0.999  # EMA of weights, used for validation and export

    def validate(self, prefix: str = "optim") -> None:
        require(self.lr > 0, f"{key(prefix, 'lr')} must be > 0, got {self.lr!r}")
        require(self.weight_decay >= 0, f"{key(prefix, 'weight_decay')} must be >= 0, got {self.weight_decay!r}")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"{key(prefix, 'betas')} must be two numbers in [0, 1), got {list(self.betas)!r}")
        require(self.eps > 0, f"{key(prefix, 'eps')} must be > 0, got {self.eps!r}")
        positive_int(self.warmup_steps, key(prefix, "warmup_steps"), minimum=0)
        in_range(self.min_lr_ratio, key(prefix, "min_lr_ratio"), 0.0, 1.0)
        in_range(self.ema_decay, key(prefix, "ema_decay"), 0.0, 1.0, high_open=True)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; any Lightning strategy (ddp, fsdp, ...) works unchanged."""

    max_steps: int = 300
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto = bf16-mixed on CUDA, 32-true on CPU
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = 1.0
    val_check_interval: int = 100  # validate every N optimiser steps (and at the end)
    limit_val_batches: Any = None  # null = every validation window (data.max_eval_windows caps them)
    log_every_n_steps: int = 10
    checkpoint_every: int = 100  # write out_dir/last.ckpt every N optimiser steps and at the end
    keep_last: int = 2  # good checkpoints kept in out_dir/checkpoints/ (last.ckpt is the newest of them)
    on_nonfinite: str = "stop"  # NaN/inf loss or gradient: stop (error, exit status 2) | skip (drop the update, count it)
    max_skipped_steps: int = 10  # on_nonfinite=skip: stop as with `stop` once more steps than this were skipped
    logger: str = "csv"  # csv (out_dir/logs/version_k/metrics.csv) | tensorboard (optional extra) | none
    enable_progress_bar: bool = True
    deterministic: bool = False

    def validate(self, prefix: str = "trainer") -> None:
        for name in ("max_steps", "num_nodes", "accumulate_grad_batches", "val_check_interval",
                     "log_every_n_steps", "checkpoint_every", "keep_last"):
            positive_int(getattr(self, name), key(prefix, name))
        positive_int(self.max_skipped_steps, key(prefix, "max_skipped_steps"), minimum=0)
        one_of(self.on_nonfinite, key(prefix, "on_nonfinite"), NONFINITE_POLICIES)
        one_of(self.logger, key(prefix, "logger"), LOGGERS)
        if self.logger == "tensorboard":
            require(tensorboard_available(),
                    f"{key(prefix, 'logger')}=tensorboard needs the tensorboard package, which is not installed: "
                    "pip install 'dnadiff[tensorboard]' (or use trainer.logger=csv)")
        require(self.gradient_clip_val is None or self.gradient_clip_val > 0,
                f"{key(prefix, 'gradient_clip_val')} must be > 0 or null, got {self.gradient_clip_val!r}")
        devices = self.devices
        require(devices in ("auto", -1) or (is_int(devices) and devices >= 1) or isinstance(devices, (list, tuple)),
                f"{key(prefix, 'devices')} must be auto, -1, a positive count or a list of ids, got {devices!r}")


@dataclass
class PretrainConfig:
    """``python -m dnadiff.pretrain``: every setting of a training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 42  # model init, data order, augmentation and diffusion noise all follow from it
    out_dir: str = "runs/pretrain"  # last.ckpt, checkpoints/, metrics.json, logs/
    resume: Optional[str] = None  # a checkpoint to continue exactly (e.g. runs/pretrain/last.ckpt)
    ckpt_path: Optional[str] = None  # alias of resume (Lightning's name)
    overwrite: bool = False  # a fresh run may replace the run whose checkpoints out_dir holds
    resume_override: bool = False  # resume even though schedule settings changed (recorded in the metadata)
    init_from: Optional[str] = None  # weights (and architecture) of any loadable model; fresh optimiser, step 0

    def validate(self, prefix: str = "") -> None:
        require(not (self.resume and self.ckpt_path and self.resume != self.ckpt_path),
                f"resume={self.resume} and ckpt_path={self.ckpt_path} disagree: give one")
        require(self.data.seq_len is not None, "data.seq_len is required for training")
        from dnadiff.train.outdir import check_out_dir

        check_out_dir(self.out_dir, key(prefix, "out_dir"))
        resume = self.resume_from
        require(not resume or Path(resume).is_file(), f"resume={resume}: checkpoint not found")
        require(not self.init_from or Path(self.init_from).exists(), f"init_from={self.init_from} not found")

    @property
    def resume_from(self) -> Optional[str]:
        """The checkpoint to resume from (``resume`` or its alias ``ckpt_path``)."""
        return self.resume or self.ckpt_path
