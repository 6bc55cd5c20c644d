"""Pretraining data: genome windows (or labelled sequences) served through the deterministic training stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from dnadiff.data.labelled import data_source
from dnadiff.data.windows import collate_windows
from dnadiff.train.stream import EvalNoiseDataset, StreamDataset, StreamSampler


class PretrainDataModule(L.LightningDataModule):
    """Train/valid/test loaders for pretraining.

    Training batches come from :class:`StreamSampler` / :class:`StreamDataset` (exact resume,
    data-parallel invariance); evaluation batches carry fixed noise (``eval.draws`` per window).
    """

    def __init__(self, data_cfg: Mapping[str, Any], seed: int, objective_cfg: Mapping[str, Any],
                 eval_cfg: Mapping[str, Any], max_steps: int, accumulate: int = 1) -> None:
        super().__init__()
        self.windows = data_source(data_cfg)
        self.classes: list[str] = list(getattr(self.windows, "classes", []))
        self.seed = int(seed)
        self.t_min = float(objective_cfg.get("t_min", 1e-3))
        self.antithetic = bool(objective_cfg.get("antithetic", True))
        self.eval_draws = int(eval_cfg["draws"])
        self.eval_seed = int(eval_cfg["seed"])
        self.max_steps = int(max_steps)
        self.accumulate = int(accumulate)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        per_rank = self.windows.batch_size
        global_batch = per_rank * world
        start = self.trainer.global_step * self.accumulate if self.trainer is not None else 0
        sampler = StreamSampler(global_batch, self.max_steps * self.accumulate, rank, world, start)
        dataset = StreamDataset(self.windows.dataset("train"), self.seed, global_batch, self.t_min, self.antithetic)
        return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=False, collate_fn=collate_windows,
                          num_workers=self.windows.num_workers, pin_memory=self.windows.pin_memory,
                          persistent_workers=self.windows.num_workers > 0)

    def eval_dataset(self, split: str) -> EvalNoiseDataset:
        """Held-out windows of ``split`` with their fixed evaluation noise."""
        return EvalNoiseDataset(self.windows.dataset(split), self.eval_seed, self.eval_draws, self.t_min)

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = self._world()
        dataset = self.eval_dataset(split)
        shard = range(rank, len(dataset), world)  # every window once across processes, no padding
        return DataLoader(dataset, batch_size=self.windows.eval_batch_size, sampler=shard, collate_fn=collate_windows,
                          num_workers=self.windows.num_workers, pin_memory=self.windows.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
