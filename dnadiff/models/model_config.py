"""Model config: the keys every ``configs/model/*.yaml`` may set (:class:`ModelConfig`, the one
place their defaults are stated), and validation.

A model config is a plain JSON-serialisable dict; :func:`validate_config` fills defaults,
checks every value and returns the dict that ``model.config`` holds and checkpoints store.
The defaults are mamba-ssm's / Caduceus' (d_state 16, d_conv 4, expand 2, dt in
[1e-3, 0.1] floored at 1e-4, dt_rank "auto" = ceil(d_model / 16), no linear bias, conv bias,
RMSNorm eps 1e-5, vocabulary padded to a multiple of 8, tied embeddings).

Two keys exist for models that come from the Caduceus authors' Hugging Face checkpoints
(``dnadiff.models.hf_caduceus``); their defaults are today's behaviour:

- ``rcps_swap_halves`` (Caduceus-PS only): every RCPS block reads its hidden halves swapped,
  h -> [h[..., D:], h[..., :D]], before the RCPS-wrapped block runs. This is the wiring of the
  authors' ``fused_add_norm: true`` code path (their published checkpoints), which differs from
  their unfused path by exactly this swap; it keeps exact RC equivariance.
- ``hf_extra``: the authors'-schema config values that do not change dnadiff's computation
  (``residual_in_fp32``, init-only ``ssm_cfg`` entries, ...), kept so that a Hugging Face export
  writes them back unchanged. null, or a JSON-serialisable mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

from dnadiff.config import ConfigError

from dnadiff.models.kernels.scan import BACKENDS as SCAN_BACKENDS
from dnadiff.tokenizer import VOCAB

# arch -> (bidirectional, rcps)
ARCHS: dict[str, tuple[bool, bool]] = {
    "mamba": (False, False),
    "bimamba": (True, False),
    "caduceus_ph": (True, False),
    "caduceus_ps": (True, True),
}

@dataclass
class ModelConfig:
    """The ``model`` config group: every key a model config may set, with its one default."""

    name: Optional[str] = None
    arch: str = "caduceus_ps"
    d_model: int = 128
    n_layer: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: float = 2
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_rank: Any = "auto"
    bias: bool = False
    conv_bias: bool = True
    norm_eps: float = 1e-5
    vocab_size: int = len(VOCAB)
    pad_vocab_multiple: int = 8
    n_classes: int = 0
    tie_embeddings: bool = True
    initializer_range: float = 0.02
    scan_backend: str = "auto"
    bidirectional: Optional[bool] = None
    rcps: Optional[bool] = None
    weight_tie: bool = True
    conjoin: bool = False
    time_conditioning: bool = False
    rcps_swap_halves: bool = False  # Caduceus-PS fused_add_norm wiring (see dnadiff.models.hf_caduceus)
    hf_extra: Any = None  # Hugging Face config values that change nothing here, kept for a faithful re-export

    def validate(self, prefix: str = "model") -> None:
        """Check every value (:func:`validate_config`), naming the key under ``prefix``."""
        try:
            validate_config(asdict(self))
        except ValueError as err:
            raise ConfigError(f"{prefix}.{err}" if str(err).split(" ")[0] in DEFAULTS else f"{prefix}: {err}") from None


DEFAULTS: dict[str, Any] = asdict(ModelConfig())

_POSITIVE_INTS = ("d_model", "n_layer", "d_state", "d_conv", "pad_vocab_multiple")
_POSITIVE_FLOATS = ("dt_min", "dt_max", "dt_init_floor", "norm_eps", "initializer_range", "expand")
_BOOLS = ("bias", "conv_bias", "tie_embeddings", "weight_tie", "conjoin", "time_conditioning", "rcps_swap_halves")


def _to_dict(config: Mapping) -> dict:
    """Accept a dict or an omegaconf DictConfig (as Hydra passes it)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return dict(OmegaConf.to_container(config, resolve=True))
    except ImportError:
        pass
    if not isinstance(config, Mapping):
        raise ValueError(f"a model config must be a mapping, got {type(config).__name__}")
    return dict(config)


def check_keys(keys: object, source: str) -> None:
    """Raise ValueError naming any key that is not a model config key, and the valid ones."""
    unknown = sorted(set(keys) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown model config key(s) {unknown} in {source}; valid keys: {sorted(DEFAULTS)}")


def validate_config(config: Mapping) -> dict:
    """Fill defaults and check every value; returns a new, JSON-serialisable dict."""
    cfg = _to_dict(config)
    check_keys(cfg, "model config")
    full = {**DEFAULTS, **cfg}
    arch = full["arch"]
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid archs: {sorted(ARCHS)}")
    if full["name"] is None:
        full["name"] = arch
    for key, implied in zip(("bidirectional", "rcps"), ARCHS[arch]):
        if full[key] is None:
            full[key] = implied
        elif full[key] is not implied:
            raise ValueError(f"{key}={full[key]!r} contradicts arch={arch!r} (which implies {key}={implied})")
    for key in _POSITIVE_INTS:
        v = full[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be a positive int, got {v!r}")
    for key in _POSITIVE_FLOATS:
        v = full[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{key} must be a positive number, got {v!r}")
        full[key] = float(v) if key != "expand" else v
    for key in _BOOLS:
        if not isinstance(full[key], bool):
            raise ValueError(f"{key} must be true or false, got {full[key]!r}")
    if full["expand"] * full["d_model"] != int(full["expand"] * full["d_model"]):
        raise ValueError(f"expand * d_model must be an integer, got {full['expand']} * {full['d_model']}")
    if full["dt_min"] > full["dt_max"]:
        raise ValueError(f"dt_min ({full['dt_min']}) must be <= dt_max ({full['dt_max']})")
    dt_rank = full["dt_rank"]
    if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
        raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
    if full["vocab_size"] != len(VOCAB):
        raise ValueError(
            f"vocab_size must be {len(VOCAB)} (the dnadiff tokenizer's vocabulary), got {full['vocab_size']!r}"
        )
    n_classes = full["n_classes"]
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 0:
        raise ValueError(f"n_classes must be an int >= 0, got {n_classes!r}")
    if full["scan_backend"] not in SCAN_BACKENDS:
        raise ValueError(f"scan_backend must be one of {list(SCAN_BACKENDS)}, got {full['scan_backend']!r}")
    if full["conjoin"] and (full["rcps"] or not full["bidirectional"]):
        raise ValueError(
            f"conjoin=True is for non-RCPS bidirectional models (caduceus_ph, bimamba), not arch={arch!r}"
        )
    if full["rcps_swap_halves"] and not full["rcps"]:
        raise ValueError(f"rcps_swap_halves=True is for RCPS models (caduceus_ps), not arch={arch!r}")
    full["hf_extra"] = _check_hf_extra(full["hf_extra"])
    return full


def _check_hf_extra(extra: Any) -> dict | None:
    """``hf_extra`` is null or a JSON-serialisable mapping (stored as a plain dict)."""
    if extra is None:
        return None
    if not isinstance(extra, Mapping):
        raise ValueError(f"hf_extra must be null or a mapping, got {type(extra).__name__}")
    try:
        return json.loads(json.dumps(dict(extra)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"hf_extra must be JSON-serialisable ({err})") from None
