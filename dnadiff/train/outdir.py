"""The run folder of ``python -m dnadiff.pretrain``: checked before anything is written, locked
against a second process, never silently taken from another run, and cleaned of what
interrupted writes left behind.

Layout: ``out_dir/last.ckpt`` (always the newest good checkpoint; the one name to resume from),
``out_dir/checkpoints/stepNNNNNNN.ckpt`` (the last ``trainer.keep_last`` good ones; last.ckpt is a
hard link to the newest), ``metrics.json``, ``logs/``, ``hydra/<start time>/`` and, while a run
is on, ``.pretrain.lock`` holding the owner's pid.

The lock is an ``flock`` on that file: the kernel releases it when its process dies, however it
dies, so a lock left by a killed run is stale by construction and the next start takes it over
(and says so). In data-parallel runs only the primary process (rank 0 of node 0) takes the lock
and prepares the folder; the processes Lightning starts for the other ranks skip it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dnadiff.atomic import remove_orphans
from dnadiff.config import ConfigError

LAST = "last.ckpt"
CHECKPOINTS = "checkpoints"
LOCK = ".pretrain.lock"
LOGS = "logs"
LEGACY_GLOB = "last-v*.ckpt"  # what Lightning's ModelCheckpoint wrote before there was one naming rule
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

log = logging.getLogger("dnadiff.pretrain")


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked (in use, or holding another run); names the folder."""


def check_out_dir(out_dir: str, name: str = "out_dir") -> None:
    """Refuse, naming the key, an ``out_dir`` that is a file, sits under a file, or cannot be written
    (no permission, read-only file system). Writes nothing."""
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name}={out_dir} is a file, not a folder")
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{name}={out_dir}: {probe} is a file, not a folder")
    where = "" if probe == path.absolute() else f" ({probe} is the nearest existing folder)"
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):
        read_only = False
    if read_only:
        raise ConfigError(f"{name}={out_dir} is on a read-only file system{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}={out_dir} is not writable (permission denied){where}")


def is_primary_process() -> bool:
    """False in the processes of the other ranks of a data-parallel run (whatever launched them)."""
    for variable in RANK_VARIABLES:
        value = os.environ.get(variable)
        if value not in (None, "", "0"):
            return False
    return True


def step_checkpoints(folder: Path) -> list[Path]:
    """``checkpoints/stepNNNNNNN.ckpt`` files of a run folder, oldest step first."""
    ckpt_dir = folder / CHECKPOINTS
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob("step*.ckpt") if p.is_file() and step_of(p) is not None)


def step_of(path: Path) -> Optional[int]:
    """The step number of a ``stepNNNNNNN.ckpt`` name, or None."""
    digits = path.stem.removeprefix("step")
    return int(digits) if digits.isdigit() else None


def run_checkpoints(folder: Path) -> list[Path]:
    """Every checkpoint a run left in ``folder``: last.ckpt, checkpoints/step*.ckpt, legacy last-v*.ckpt."""
    found = [folder / LAST] if (folder / LAST).is_file() else []
    return found + step_checkpoints(folder) + sorted(folder.glob(LEGACY_GLOB))


def _inside(path: Path, folder: Path) -> bool:
    parent = path.resolve().parent
    return parent in (folder.resolve(), (folder / CHECKPOINTS).resolve())


def check_start(folder: Path, resume: Optional[str], overwrite: bool) -> list[Path]:
    """Refuse a start that would mix two runs in one folder; returns the earlier run's files that a
    permitted ``overwrite=true`` start replaces (empty otherwise)."""
    existing = run_checkpoints(folder)
    if not existing:
        return []
    if resume and _inside(Path(resume), folder):
        return []
    if overwrite:
        return existing
    if resume:
        raise RunDirError(
            f"out_dir={folder} holds another run ({existing[0]}) than resume={resume}; "
            "give overwrite=true to replace it, or another out_dir"
        )
    raise RunDirError(
        f"out_dir={folder} already holds a run ({existing[0]}); give resume={folder / LAST} to continue it, "
        "overwrite=true to replace it, or another out_dir"
    )


def _owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 512).decode("utf-8", "replace").strip()


def _pid_text(owner: str) -> str:
    pid, _, rest = owner.partition(" ")
    host = rest.split(" ")[0] if rest else "?"
    return f"process {pid or '?'} on {host}"


class RunLock:
    """An exclusive, crash-safe lock on a run folder (see the module doc)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._fd: Optional[int] = None
        self.taken_over: Optional[str] = None  # the stale owner's line, when the lock was taken over

    def acquire(self) -> "RunLock":
        import fcntl

        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(fd)
                os.close(fd)
                raise RunDirError(
                    f"out_dir={self.path.parent} is in use by another run ({_pid_text(owner)}, lock file {self.path}); "
                    "wait for it to end or give another out_dir"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner removed the file between our open and flock: take the new one
                os.close(fd)
                continue
            stale = _owner(fd)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            os.fsync(fd)
            self._fd = fd
            self.taken_over = stale or None
            return self
        raise RunDirError(f"out_dir={self.path.parent}: could not take the lock {self.path} (it keeps changing)")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


@dataclass
class RunDir:
    """A prepared run folder: where checkpoints go, and what an ``overwrite=true`` start replaces."""

    path: Path
    primary: bool
    replaced: list[Path] = field(default_factory=list)  # the earlier run's checkpoints (overwrite=true)
    replaced_logs: list[Path] = field(default_factory=list)  # and its log folders

    def remove_orphans(self) -> list[Path]:
        """Delete the temporaries of interrupted writes (``.*.tmp``) in the folder and checkpoints/;
        says so in the log. Call once the start is known to go ahead."""
        if not self.primary:
            return []
        removed = []
        for folder in (self.path, self.path / CHECKPOINTS):
            sizes = {p: p.stat().st_size for p in folder.glob(".*.tmp") if p.is_file()} if folder.is_dir() else {}
            for p in remove_orphans(folder):
                removed.append(p)
                log.warning("removed %s (%s bytes), the temporary file of a write that was interrupted", p,
                            f"{sizes.get(p, 0):,}")
        return removed


@contextlib.contextmanager
def run_dir(out_dir: str, resume: Optional[str], overwrite: bool) -> Iterator[RunDir]:
    """Lock ``out_dir`` (creating it) and check that this start may use it; unlocks at the end."""
    folder = Path(out_dir)
    if not is_primary_process():
        yield RunDir(folder, primary=False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder).acquire()
    try:
        if lock.taken_over:
            log.warning("took over the lock %s of an earlier run that ended without releasing it (%s)",
                        lock.path, _pid_text(lock.taken_over))
        replaced = check_start(folder, resume, overwrite)
        logs = sorted(p for p in (folder / LOGS).glob("version_*") if p.is_dir()) if replaced else []
        yield RunDir(folder, primary=True, replaced=replaced, replaced_logs=logs)
    finally:
        lock.release()
