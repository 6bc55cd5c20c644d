"""Compile and load the fused CPU kernels (``cpu_kernels.cpp``) once per machine, just in time.

No compiler is needed to install dnadiff: the first process that asks for the ``cpu_fused``
backend compiles the one C++ file with the system's C++ compiler (``$CXX``, else ``c++``/``g++``/
``clang++``) against the installed torch headers, in about ten seconds, and caches the library
under the user cache directory (``$DNADIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/dnadiff``, else
``~/.cache/dnadiff``), keyed by a hash of the source, the torch version, the compiler, the flags
and the CPU's instruction-set flags (so a cache on a shared home directory never hands one CPU a
library built for another). A file lock makes concurrent first users (DDP ranks, data-loader
workers) wait for one build. When anything fails, :func:`load_cpu_kernels` returns None and the
reason, and the caller falls back to the pure-PyTorch scan with a one-line notice.

The library is loaded with ``torch.ops.load_library``; its ops live in ``torch.ops.dnadiff_cpu``.
It is built with ``-fopenmp`` and parallelises with ``at::parallel_for``, so it runs on torch's
own OpenMP runtime and thread count (``torch.set_num_threads``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "cpu_kernels.cpp"
LIB_NAME = "dnadiff_cpu_kernels"
BUILD_TIMEOUT_S = 600
_BASE_FLAGS = ["-O3", "-DNDEBUG", "-fPIC", "-shared", "-fopenmp", "-fno-trapping-math", "-w"]
FLAGS_ENV = "DNADIFF_KERNEL_CFLAGS"  # extra compiler flags (part of the cache key), for tuning


def cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring)."""
    env = os.environ.get("DNADIFF_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "dnadiff" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    """The CPU's feature flags (part of the cache key, since the build uses -march=native)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _torch_flags() -> list[str]:
    torch_dir = Path(torch.__file__).resolve().parent
    lib = torch_dir / "lib"
    flags = [f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    return flags + [f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"]


def _extra_flags() -> list[str]:
    return os.environ.get(FLAGS_ENV, "").split()


def _variants() -> list[list[str]]:
    """Flag sets to try in order: tuned for this CPU first, then portable, C++20 then C++17."""
    arch = ["-march=native"] if platform.machine().lower() in ("x86_64", "amd64", "i686") else ["-mcpu=native"]
    return [arch + ["-std=c++20"], ["-std=c++20"], arch + ["-std=c++17"], ["-std=c++17"]]


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _key(cxx: str) -> str:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), _compiler_version(cxx).encode(),
                 " ".join(_BASE_FLAGS + _torch_flags() + _extra_flags()).encode(), _cpu_flags().encode(),
                 sysconfig.get_platform().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


class _FileLock:
    """An exclusive advisory lock on a file (fcntl; a no-op where fcntl is missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = None

    def __enter__(self) -> _FileLock:
        self.fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        except ImportError:
            pass
        self.fh.close()


def _compile(cxx: str, out: Path) -> str:
    """Build ``out``; returns "" on success, else the last compiler message line."""
    tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.so")
    last = "no flag set was tried"
    for flags in _variants():
        cmd = [cxx, *_BASE_FLAGS, *flags, *_extra_flags(), str(SOURCE), "-o", str(tmp), *_torch_flags()]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if res.returncode == 0:
            os.replace(tmp, out)
            return ""
        lines = [ln for ln in (res.stderr or res.stdout).splitlines() if "error" in ln] or (res.stderr or "?").splitlines()
        last = lines[0].strip()[:300] if lines else f"exit status {res.returncode}"
    tmp.unlink(missing_ok=True)
    return last


def _writable_dir() -> Path:
    """The cache directory, or a per-user temporary one when the cache cannot be written."""
    for d in (cache_dir(), Path(tempfile.gettempdir()) / f"dnadiff-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".probe{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return d
        except OSError:
            continue
    raise OSError(f"no writable cache directory (tried {cache_dir()} and the temporary directory)")


@functools.lru_cache(maxsize=None)
def load_cpu_kernels() -> tuple[object | None, str]:
    """``(torch.ops.dnadiff_cpu, "")`` once the kernels are built and loaded, else ``(None, why)``."""
    if os.environ.get("DNADIFF_CPU_KERNELS", "1") == "0":
        return None, "disabled by DNADIFF_CPU_KERNELS=0"
    if not SOURCE.is_file():
        return None, f"kernel source {SOURCE} is missing from this installation"
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found (set $CXX, or install g++ or clang++)"
    try:
        d = _writable_dir()
        lib = d / f"{LIB_NAME}_{_key(cxx)}.so"
        if not lib.exists():
            with _FileLock(d / f"{lib.stem}.lock"):
                if not lib.exists():
                    print(f"dnadiff: compiling the CPU scan kernels once ({cxx}; cached in {d})",
                          file=sys.stderr, flush=True)
                    why = _compile(cxx, lib)
                    if why:
                        return None, f"compiling {SOURCE.name} failed: {why}"
        torch.ops.load_library(str(lib))
        ops = torch.ops.dnadiff_cpu
        ops.vector_width()  # fails here, not later, when the library did not register its ops
    except Exception as exc:  # noqa: BLE001 (any failure means: fall back, saying why)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return ops, ""
