"""The LightningModule that trains a language model with a likelihood objective (MDLM by default)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from dnadiff.objectives import build_objective
from dnadiff.tokenizer import Tokenizer
from dnadiff.train.checkpoint import META_KEY, check_metadata, metadata
from dnadiff.train.ema import EMA
from dnadiff.train.optim import build_optimizer

LN2 = math.log(2.0)


def likelihood_report(nll_sum: float, n_tokens: float) -> dict[str, float]:
    """nats/token, bits/base and perplexity from a summed NLL (or bound) and a token count."""
    nats = nll_sum / max(n_tokens, 1.0)
    return {"nats_per_token": nats, "bits_per_base": nats / LN2, "ppl": math.exp(min(nats, 700.0))}


def objective_report(nll_sum: float, n_tokens: float, likelihood: bool) -> dict[str, float]:
    """The figures an objective reports: likelihood units, or the masked-token CE of a non-likelihood (MLM)."""
    if likelihood:
        return likelihood_report(nll_sum, n_tokens)
    return {"masked_token_ce_nats": nll_sum / max(n_tokens, 1.0)}


def describe_report(report: Mapping[str, float], is_bound: bool) -> str:
    """One line for people: bits/base, NLL and PPL (marked <= for bounds), or the CE of a non-likelihood."""
    if "masked_token_ce_nats" in report:
        return f"masked-token CE {report['masked_token_ce_nats']:.4f} nats (not a likelihood)"
    bound = "<= " if is_bound else ""
    return (f"{bound}{report['bits_per_base']:.4f} bits/base, NLL {bound}{report['nats_per_token']:.4f} nats/token, "
            f"PPL {bound}{report['ppl']:.3f}")


class LMModule(L.LightningModule):
    """Backbone + objective + optimiser + EMA, configured by the resolved Hydra config (a plain dict)."""

    def __init__(self, cfg: Mapping[str, Any], classes: list[str] | None = None) -> None:
        super().__init__()
        from dnadiff.models.registry import model_from_config

        self.cfg = dict(cfg)
        self.classes = list(classes or [])
        self.tokenizer = Tokenizer()
        self.model = model_from_config(dict(cfg["model"]))
        self.objective = build_objective(cfg["objective"], self.tokenizer)
        self.ema = EMA(self.model, cfg["optim"]["ema_decay"])
        self._val_sums: list[torch.Tensor] = []

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

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.objective.eval_batch(self.eval_model(), batch)
        self._val_sums.append(torch.stack([out.nll_sum.detach().double(), out.n_tokens.double()]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        totals = torch.stack(self._val_sums).sum(0)
        self._val_sums.clear()
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        report = objective_report(float(totals[0]), float(totals[1]), self.objective.likelihood)
        for key, value in report.items():
            self.log(f"val/{key}", value, prog_bar=key in ("bits_per_base", "masked_token_ce_nats"), sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.cfg["optim"], self.cfg["trainer"]["max_steps"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[META_KEY] = metadata(
            self.model.config, self.cfg["objective"], self.classes, config=_plain(self.cfg)
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_metadata(checkpoint.get(META_KEY), "resume checkpoint")


def _plain(obj: Any) -> Any:
    """A JSON-like copy (dicts, lists, scalars) safe for ``weights_only`` loading."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
