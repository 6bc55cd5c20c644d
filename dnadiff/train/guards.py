"""Non-finite detection: a NaN/inf loss or gradient never reaches the weights.

:class:`NonFiniteGuard` looks at every micro-batch's loss (``on_before_backward``) and at the
gradients once they are complete (``on_before_optimizer_step``: after backward and the DDP
all-reduce, before clipping and the update). With ``trainer.on_nonfinite=stop`` it raises
:class:`NonFiniteError` there, so the update is not applied and nothing is saved; with ``skip``
it drops the update (every gradient is set to None, so AdamW leaves weights and moments alone),
counts the step (the count is kept in checkpoints) and stops only once more than
``trainer.max_skipped_steps`` steps were skipped. The step counter and the learning-rate
schedule still advance over a skipped step, as they do over a step that a GradScaler skips.

Under fp16 mixed precision (a GradScaler), inf gradients are the scaler's business (it skips
those steps itself), so only the loss is checked there.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import lightning as L
import torch

log = logging.getLogger("dnadiff.pretrain")


class NonFiniteError(RuntimeError):
    """Training met a NaN/inf loss, gradient or weight; the message names the step and the value."""

    def __init__(self, message: str, step: int, what: str, value: float, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.step, self.what, self.value, self.name = step, what, value, name

    @property
    def detail(self) -> str:
        """``non-finite <what> [of <name>]: <value>``."""
        return f"non-finite {self.what}{' of ' + self.name if self.name else ''}: {_value(self.value)}"

    def record(self) -> dict[str, Any]:
        """The failure as plain JSON data (non-finite values as strings)."""
        return {"step": self.step, "what": self.what, "value": str(self.value), "name": self.name,
                "error": str(self)}


def first_nonfinite(named: Any) -> Optional[tuple[str, float]]:
    """(name, a non-finite value) of the first tensor of ``named`` ((name, tensor) pairs) that has one."""
    for name, tensor in named:
        if tensor is None or not tensor.is_floating_point():
            continue
        bad = ~torch.isfinite(tensor.detach())
        if bool(bad.any()):
            return name, float(tensor.detach()[bad].flatten()[0])
    return None


def _value(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


class NonFiniteGuard(L.Callback):
    """Stop or skip a training step whose loss or gradient is not finite (see the module doc)."""

    def __init__(self, policy: str = "stop", max_skipped: int = 10) -> None:
        self.policy = policy
        self.max_skipped = max_skipped
        self.skipped = 0
        self.skipped_steps: list[int] = []
        self._losses: list[torch.Tensor] = []

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
        self.skipped_steps = [int(s) for s in state_dict.get("skipped_steps", [])]

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        losses, self._losses = self._losses, []
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None] if scaler is None else []
        checks = [torch.stack([x.float().reshape(()) for x in losses]).isfinite().all()] if losses else []
        if grads:
            checks.append(torch.stack(torch._foreach_norm(grads)).isfinite().all())
        local_bad = bool(checks) and not bool(torch.stack(checks).all())
        if not trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            return
        error = self._describe(trainer, pl_module, losses, scaler is None)
        if self.policy == "stop":
            raise error
        self.skipped += 1
        self.skipped_steps.append(error.step)
        if scaler is None:
            for p in pl_module.parameters():
                p.grad = None
        if self.skipped > self.max_skipped:
            raise NonFiniteError(
                f"{error.detail} at training step {error.step}: {self.skipped} steps skipped, more than "
                f"trainer.max_skipped_steps={self.max_skipped} (trainer.on_nonfinite=skip); the run diverged",
                error.step, error.what, error.value, error.name,
            )
        log.warning("skipped training step %d, %s (trainer.on_nonfinite=skip; %d skipped so far)",
                    error.step, error.detail, self.skipped)

    def _describe(self, trainer: L.Trainer, pl_module: L.LightningModule, losses: list[torch.Tensor],
                  check_grads: bool) -> NonFiniteError:
        """The first culprit on this process (another rank's when this one saw none)."""
        step = trainer.global_step + 1
        bad_loss = next((float(x) for x in losses if not math.isfinite(float(x))), None)
        if bad_loss is not None:
            what, value, name = "loss", bad_loss, None
        else:
            found = first_nonfinite((n, p.grad) for n, p in pl_module.named_parameters()) if check_grads else None
            if found is None:
                what, value, name = "loss or gradient (on another process)", math.nan, None
            else:
                what, value, name = "gradient", found[1], found[0]
        where = f" of {name}" if name else ""
        message = f"non-finite {what}{where} at training step {step}: {_value(value)} (trainer.on_nonfinite={self.policy})"
        return NonFiniteError(message, step, what, value, name)
