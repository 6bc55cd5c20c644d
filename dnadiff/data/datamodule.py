"""The Lightning DataModule of pretraining: a data source served through the deterministic stream.

Training batches come from :class:`~dnadiff.data.stream.StreamSampler` /
:class:`~dnadiff.data.stream.StreamDataset` (exact resume, data-parallel invariance);
evaluation batches carry fixed noise (``eval.draws`` per window, :class:`EvalNoiseDataset`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from dnadiff.data.config import DataConfig
from dnadiff.data.sources import data_source
from dnadiff.data.stream import EvalNoiseDataset, StreamDataset, StreamSampler
from dnadiff.data.windows import collate_windows


class PretrainDataModule(L.LightningDataModule):
    """Train/valid/test loaders of one data source (genome windows or labelled sequences).

    ``antithetic`` (the objective's choice) stratifies the diffusion times over each global batch;
    ``eval_draws`` / ``eval_seed`` fix the noise of every held-out window.
    """

    def __init__(self, data: DataConfig | Mapping[str, Any], seed: int, max_steps: int, accumulate: int = 1,
                 antithetic: bool = True, eval_draws: int = 4, eval_seed: int = 1234) -> None:
        super().__init__()
        self.source = data_source(data)
        self.classes: list[str] = list(self.source.classes)
        self.seed = int(seed)
        self.antithetic = bool(antithetic)
        self.eval_draws = int(eval_draws)
        self.eval_seed = int(eval_seed)
        self.max_steps = int(max_steps)
        self.accumulate = int(accumulate)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        per_rank = self.source.batch_size
        global_batch = per_rank * world
        start = self.trainer.global_step * self.accumulate if self.trainer is not None else 0
        sampler = StreamSampler(global_batch, self.max_steps * self.accumulate, rank, world, start)
        dataset = StreamDataset(self.source.dataset("train"), self.seed, global_batch, self.antithetic)
        workers = self.source.num_workers
        return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=False, collate_fn=collate_windows,
                          num_workers=workers, pin_memory=self.source.pin_memory, persistent_workers=workers > 0)

    def eval_dataset(self, split: str) -> EvalNoiseDataset:
        """Held-out windows of ``split`` with their fixed evaluation noise."""
        return EvalNoiseDataset(self.source.dataset(split), self.eval_seed, self.eval_draws)

    def eval_loader(self, split: str) -> DataLoader:
        """Every window of ``split`` once across processes (rank r takes windows r, r + R, ...)."""
        rank, world = self._world()
        dataset = self.eval_dataset(split)
        shard = range(rank, len(dataset), world)
        return DataLoader(dataset, batch_size=self.source.eval_batch_size, sampler=shard, collate_fn=collate_windows,
                          num_workers=self.source.num_workers, pin_memory=self.source.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")
