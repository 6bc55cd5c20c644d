"""Atomic file writes: every output (checkpoint, export, JSON, FASTA, PNG) appears whole or not at all.

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX). Readers never see half a file, and a failed or
interrupted write leaves the previous version untouched. Interrupted writes can leave a
``.<name>.*.tmp`` file behind (a kill -9 skips the clean-up); :func:`remove_orphans` removes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files of interrupted atomic writes in ``folder`` (``.<name>.*.tmp``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file())


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of interrupted writes in ``folder``; returns what was removed."""
    removed = orphan_temporaries(folder)
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
