"""Lightning's checkpoint I/O, made atomic and safe: what the Trainer writes appears whole, and
what it reads back is only tensors and plain data (``weights_only=True``), checked as dnadiff's."""

from __future__ import annotations

import os
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO

from dnadiff.atomic import atomic_torch_save
from dnadiff.checkpoint import META_KEY, check_metadata, safe_load


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and loads only tensors and plain data."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None) -> dict:
        ckpt = safe_load(path, map_location if map_location is not None else "cpu")
        check_metadata(ckpt.get(META_KEY), str(path))
        return ckpt
