"""Atomic file writes: every output (checkpoint, export, JSON, FASTA, PNG) appears whole or not at all.

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX). Readers never see half a file, and a failed or
interrupted write leaves the previous version untouched. Outputs that belong together (an
export's weights and config, a report's JSON and plots) go through :func:`atomic_write_files`:
every file is staged first and renamed only when all of them are complete, so a failure (a full
disk, a folder that is not writable) changes none of the files of an earlier run.

Errors: every operating-system error while writing becomes one :class:`OutputError` that names
the output path (``cannot write out/x.fa: No space left on device``). :func:`check_output_file`
and :func:`check_output_dir` refuse, before any work is done, an output path that cannot be
written: a folder where a file is wanted (or the reverse), a parent that is a file, a folder
without write permission, or a read-only file.

Interrupted writes can leave a ``.<name>.*.tmp`` file behind (a kill -9 skips the clean-up);
:func:`remove_orphans` removes them.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Union

TMP_SUFFIX = ".tmp"
Content = Union[bytes, Callable[[BinaryIO], Any]]


class OutputError(OSError):
    """An output path that cannot be written; the message names it and says why."""

    def __init__(self, path: str | os.PathLike, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` (itself included) that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_folder(folder: Path, target: Path) -> None:
    """``folder`` (which may not exist yet) can hold ``target``: its nearest existing ancestor is
    a folder we may create files in."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(target, f"{base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(target, f"permission denied (folder {base} is not writable)")


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise OutputError(path, "it is a folder (give a file path)")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise OutputError(path, "it exists and is not a regular file")
        if not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise OutputError(path, "the file is read-only (make it writable, or choose another path)")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output file path that cannot be written (see the module doc); returns it as a Path."""
    path = Path(path)
    _check_file(path)
    _check_folder(path.parent, path)
    return path


def check_output_dir(path: str | os.PathLike, files: Iterable[str] = ()) -> Path:
    """Refuse an output folder that cannot be written, or whose ``files`` cannot be replaced."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise OutputError(path, "it exists and is not a folder")
    _check_folder(path, path)
    for name in files:
        _check_file(path / name)
    return path


def _stage(path: Path, content: Content) -> str:
    """Write ``content`` to a fsynced temporary file beside ``path``; returns the temporary's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(content, (bytes, bytearray, memoryview)):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_files(files: Mapping[str | os.PathLike, Content]) -> list[Path]:
    """Write several files as one: each ``content`` (bytes, or ``write(fh)``) is staged beside its
    path, and only when every file is staged are they renamed into place. A failure while staging
    leaves every target as it was; returns the paths written."""
    staged: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for name, content in files.items():
            current = Path(name)
            staged.append((_stage(current, content), current))
        for tmp, current in staged:
            os.replace(tmp, current)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(current if current is not None else "?", _reason(err), err.errno) from err
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [p for _, p in staged]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    atomic_write_files({path: write})


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write_files({path: data})


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
