"""The training stream: which window, which augmentation and which diffusion noise each step sees.

Every training sample is identified by its position p in one infinite stream
(p = global_batch * global_batch_size + slot). The window index (a fresh seeded permutation per
pass over the data), the augmentation draw and the objective's noise (time t and per-token
uniforms) are all pure functions of (seed, p). Hence:

- resuming at step k reproduces an uninterrupted run exactly (the stream simply starts at
  batch k * accumulate_grad_batches; no RNG state has to be restored);
- data parallelism over R processes sees the same samples and noise as one process with an R
  times larger batch (rank r takes slots r, r + R, ... of every global batch).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dnadiff.noise import stratified

# Stream keys of the seeded generators: one independent stream of randomness per purpose.
_PERM, _AUG, _NOISE, _TIME, _EVAL = 0, 1, 2, 3, 7


class StreamSampler(Sampler[int]):
    """Yields this rank's stream positions, starting at global batch ``start_batch``."""

    def __init__(
        self,
        global_batch_size: int,
        total_batches: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(
                f"global batch size {global_batch_size} is not divisible by the {world_size} processes"
            )
        self.global_batch_size = global_batch_size
        self.total_batches = total_batches
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[int]:
        for b in range(self.start_batch, self.total_batches):
            base = b * self.global_batch_size
            yield from range(base + self.rank, base + self.global_batch_size, self.world_size)

    def __len__(self) -> int:
        # The whole run is one epoch; its length counts the batches already consumed before a
        # resume, because Lightning restores its batch counter and expects the epoch's full length.
        return self.total_batches * (self.global_batch_size // self.world_size)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


class StreamDataset(Dataset):
    """Maps a stream position to a training example with its augmentation and diffusion noise.

    ``base.sample(index, rng)`` must return a dict with ``input_ids`` (LongTensor) and may use
    ``rng`` for its augmentation; the noise added here is ``t_u`` (the time's uniform in [0, 1),
    stratified over the global batch when ``antithetic``, which the objective maps to a time) and
    ``uniforms`` (one U[0, 1) per token, which objectives turn into masks).
    """

    def __init__(self, base: Dataset, seed: int, global_batch_size: int, antithetic: bool = True) -> None:
        if len(base) == 0:
            raise ValueError("the training set is empty: no window passed the filters (check data.* settings)")
        self.base = base
        self.seed = int(seed)
        self.global_batch_size = int(global_batch_size)
        self.antithetic = antithetic
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.base)

    def _index(self, position: int) -> int:
        n = len(self.base)
        epoch, offset = divmod(position, n)
        if epoch != self._perm_epoch:
            self._perm = _rng(self.seed, _PERM, epoch).permutation(n)
            self._perm_epoch = epoch
        return int(self._perm[offset])

    def _time_uniform(self, position: int) -> float:
        batch, slot = divmod(position, self.global_batch_size)
        if self.antithetic:
            return float(stratified(_rng(self.seed, _TIME, batch).random(), slot, self.global_batch_size))
        return float(_rng(self.seed, _TIME, position).random())

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        item = dict(self.base.sample(self._index(position), _rng(self.seed, _AUG, position)))
        length = item["input_ids"].shape[-1]
        uniforms = _rng(self.seed, _NOISE, position).random(length, dtype=np.float32)
        item["uniforms"] = torch.from_numpy(uniforms)
        item["t_u"] = torch.tensor(self._time_uniform(position), dtype=torch.float32)
        item["position"] = torch.tensor(position, dtype=torch.long)
        return item


class EvalNoiseDataset(Dataset):
    """Evaluation windows with fixed noise: ``draws`` (time uniform, token uniforms) pairs per
    window, the time uniforms stratified over the draws."""

    def __init__(self, base: Dataset, seed: int, draws: int) -> None:
        if draws < 1:
            raise ValueError(f"eval.draws must be >= 1, got {draws}")
        self.base = base
        self.seed = int(seed)
        self.draws = int(draws)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[index])
        length = item["input_ids"].shape[-1]
        rng = _rng(self.seed, _EVAL, index)
        t_u = stratified(rng.random(), np.arange(self.draws), self.draws)
        item["t_u"] = torch.from_numpy(t_u.astype(np.float32))
        item["uniforms"] = torch.from_numpy(rng.random((self.draws, length), dtype=np.float32))
        return item
