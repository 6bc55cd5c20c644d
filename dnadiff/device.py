"""Which device to compute on: the ``device: auto`` rule, and a module's own device."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; any other value is passed to torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (cpu for a parameterless module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
