"""The checkpoints of a run: only finite weights, written atomically, under one name.

Every ``trainer.checkpoint_every`` optimiser steps and once more at the end, the full state
(weights, EMA, optimiser, schedule, loops) is written to ``checkpoints/stepNNNNNNN.ckpt``
(atomically: a temporary file, then a rename), and ``last.ckpt`` is pointed at it (a hard link
made under a temporary name and renamed over last.ckpt, or a copy where the file system has no
hard links), so last.ckpt is always one whole good checkpoint. The newest ``trainer.keep_last``
step files up to the current step are kept (later ones, left by a run resumed from an older
checkpoint, stay until they are overwritten), so one bad save is never the only copy. Before
each save the weights, the EMA copy and the optimiser moments are checked: a NaN/inf raises
:class:`~dnadiff.train.guards.NonFiniteError` and nothing is written.

A fresh ``overwrite=true`` run removes the earlier run's checkpoints and logs only once its own
first checkpoint is written, so a run that fails before that leaves the earlier one intact.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch

from dnadiff.atomic import atomic_write
from dnadiff.errors import first_line
from dnadiff.train.guards import NonFiniteError, first_nonfinite
from dnadiff.train.outdir import CHECKPOINTS, LAST, RunDir, step_checkpoints, step_of

log = logging.getLogger("dnadiff.pretrain")


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); the previous last.ckpt is intact."""


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (hard link renamed into place, else a copy)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as source:
            atomic_write(dst, lambda fh: shutil.copyfileobj(source, fh))
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _floats(tensors: Any) -> list[tuple[str, torch.Tensor]]:
    return [(n, t) for n, t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]


def nonfinite_state(pl_module: L.LightningModule, optimizers: list[Any]) -> Optional[tuple[str, float]]:
    """(name, value) of a NaN/inf in the weights, EMA or optimiser state, or None when all are finite."""
    named = _floats(pl_module.state_dict().items())
    for i, opt in enumerate(optimizers):
        names = {id(p): n for n, p in pl_module.named_parameters()}
        for p, state in opt.state.items():
            named += _floats((f"optimizer[{i}].{names.get(id(p), '?')}.{k}", v) for k, v in state.items())
    if not named:
        return None
    norms = torch._foreach_norm([t.detach() for _, t in named])
    if bool(torch.stack([n.float() for n in norms]).isfinite().all()):
        return None
    return first_nonfinite(named)  # None when only a norm overflowed: the tensors themselves are finite


class RunCheckpoints(L.Callback):
    """Periodic and final checkpoints of a run (see the module doc)."""

    def __init__(self, run: RunDir, every: int, keep: int) -> None:
        self.folder = run.path
        self.every = every
        self.keep = keep
        self._replaced = list(run.replaced)
        self._replaced_logs = list(run.replaced_logs)
        self._saved_at: Optional[int] = None
        self.last_step: Optional[int] = None  # the step of the newest checkpoint this process wrote

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step and step % self.every == 0 and step != self._saved_at and not trainer.sanity_checking:
            self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        """Check, write and link the checkpoint of the current step; returns its step file."""
        step = trainer.global_step
        bad = nonfinite_state(pl_module, trainer.optimizers)
        if not trainer.strategy.reduce_boolean_decision(bad is None, all=True):
            name, value = bad if bad is not None else ("(on another process)", float("nan"))
            raise NonFiniteError(f"non-finite weight {name} after training step {step}: {value}; "
                                 "no checkpoint was written", step, "weight", value, name)
        path = self.folder / CHECKPOINTS / f"step{step:07d}.ckpt"
        last = self.folder / LAST
        try:
            trainer.save_checkpoint(path, weights_only=False)  # the full state: optimiser, schedule, loops
            if trainer.is_global_zero:
                link_or_copy(path, last)
        except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError
            reason = getattr(err, "strerror", None) or first_line(err)
            raise CheckpointWriteError(f"writing checkpoint {path} failed ({reason}); {last} is unchanged") from None
        self._saved_at = self.last_step = step
        if trainer.is_global_zero:
            self._prune(step, path)
        return path

    def _prune(self, step: int, written: Path) -> None:
        if self._replaced or self._replaced_logs:
            old = [p for p in self._replaced if p.name != LAST and p.resolve() != written.resolve()]
            for p in old:
                p.unlink(missing_ok=True)
            for d in self._replaced_logs:
                shutil.rmtree(d, ignore_errors=True)
            log.warning("overwrite=true: replaced the earlier run in %s (removed %d checkpoint file(s) and %d log "
                        "folder(s); last.ckpt is this run's)", self.folder, len(old), len(self._replaced_logs))
            self._replaced, self._replaced_logs = [], []
        kept = [p for p in step_checkpoints(self.folder) if step_of(p) <= step]
        for p in kept[:-self.keep]:
            p.unlink(missing_ok=True)
