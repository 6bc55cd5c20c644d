"""The LightningModule that trains a language model with a likelihood objective (MDLM by default)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dnadiff.checkpoint import META_KEY, check_metadata, metadata
from dnadiff.config import as_dict
from dnadiff.metrics.likelihood import HeldoutNLL, objective_report
from dnadiff.models.registry import model_from_config
from dnadiff.objectives import build_objective
from dnadiff.tokenizer import Tokenizer
from dnadiff.train.config import PretrainConfig
from dnadiff.train.ema import EMA
from dnadiff.train.optim import apply_optim_config, build_optimizer


class LMModule(L.LightningModule):
    """Backbone + objective + optimiser + EMA, configured by a :class:`PretrainConfig`."""

    def __init__(self, cfg: PretrainConfig, classes: list[str] | None = None,
                 init_state: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.classes = list(classes or [])
        self.tokenizer = Tokenizer()
        self.model = model_from_config(as_dict(cfg.model))
        if init_state is not None:  # init_from: another model's weights, before the EMA copies them
            self.model.load_state_dict(init_state, strict=True)
        self.objective = build_objective(cfg.objective, self.tokenizer)
        self.ema = EMA(self.model, cfg.optim.ema_decay)
        self._heldout = HeldoutNLL()
        self.run_record: dict[str, Any] = {}  # how the run started and was resumed (dnadiff.train.start)

    def eval_model(self) -> torch.nn.Module:
        """The weights used for evaluation and export: the EMA copy."""
        return self.ema.module

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.objective.batch_loss(self.model, batch)
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, batch_size=batch["input_ids"].shape[0])
        return out.loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.model)

    def on_validation_epoch_start(self) -> None:
        self._heldout = HeldoutNLL()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._heldout.add(self.objective.eval_batch(self.eval_model(), batch))

    def on_validation_epoch_end(self) -> None:
        if not len(self._heldout):
            return
        totals = self.trainer.strategy.reduce(self._heldout.sums().to(self.device), reduce_op="sum")
        report = objective_report(float(totals[0]), float(totals[1]), self.objective.likelihood)
        for name, value in report.items():
            self.log(f"val/{name}", value, prog_bar=name in ("bits_per_base", "masked_token_ce_nats"), sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.cfg.optim, self.cfg.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        """After a resume with resume_override, the restored optimiser follows this config's values."""
        scheduler = self.lr_schedulers()
        for optimizer in self.trainer.optimizers:
            apply_optim_config(optimizer, scheduler, self.cfg.optim)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[META_KEY] = metadata(self.model.config, as_dict(self.cfg.objective), self.classes,
                                        config=as_dict(self.cfg), run=self.run_record,
                                        world_size=self.trainer.world_size)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_metadata(checkpoint.get(META_KEY), "resume checkpoint")
