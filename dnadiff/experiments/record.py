"""What every experiment and benchmark records beside its figures: the machine, and the files.

``machine_info`` says where a figure was measured (CPU model, cores, threads, the load while it
ran, versions, the GPU when one was used); ``write_results`` writes the JSON (and an optional
Markdown table) atomically under ``bench/results/`` by default.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from dnadiff.atomic import atomic_write_text

RESULTS = Path("bench") / "results"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_generation() -> str | None:
    """``family F model M`` of an x86 CPU and its vector extensions (avx2, avx512f), from
    /proc/cpuinfo: the model name alone ("AMD EPYC") does not tell one generation from another,
    and CPU kernels' ratios depend on it. None where there is no such file."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        return None
    if "cpu family" not in fields:
        return None
    vector = [f for f in ("avx2", "avx512f") if f in fields.get("flags", "").split()]
    return f"family {fields['cpu family']} model {fields.get('model', '?')} ({', '.join(vector) or 'no avx2'})"


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The machine a figure comes from; CPU timings on shared cores are noisy, so the load is kept too."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_generation": cpu_generation(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(result: dict[str, Any], stem: str | os.PathLike, markdown: str | None = None) -> Path:
    """Write ``<stem>.json`` (and ``<stem>.md`` when ``markdown`` is given) atomically; returns the JSON path."""
    stem = Path(stem)
    json_path = stem.with_suffix(".json")
    atomic_write_text(json.dumps(result, indent=1, default=float), json_path)
    if markdown is not None:
        atomic_write_text(markdown, stem.with_suffix(".md"))
    return json_path
