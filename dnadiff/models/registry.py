"""Build models by config name: ``build_model("caduceus_ps", d_model=64)``, ``model_from_config(cfg)``.

Names are the files of ``configs/model/*.yaml``; each file sets model config keys (see
``dnadiff.models.model_config.DEFAULTS``), keyword overrides replace them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dnadiff.models.lm import DNALM
from dnadiff.models.model_config import check_keys, validate_config

MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "model"


def available_models() -> list[str]:
    """Names of the model configs shipped in ``configs/model``."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.yaml"))


def load_model_config(name: str, **overrides: Any) -> dict:
    """Read ``configs/model/<name>.yaml``, apply overrides and validate; returns the full config dict."""
    names = available_models()
    if name not in names:
        raise ValueError(f"unknown model name {name!r}; valid names: {names}")
    path = MODEL_CONFIG_DIR / f"{name}.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of model config keys")
    check_keys(raw, str(path))
    check_keys(overrides, f"overrides for model {name!r}")
    return validate_config({**raw, "name": name, **overrides})


def model_from_config(config: Mapping) -> DNALM:
    """Build a model from a full or partial config dict (``name``/``arch`` plus any keys); used
    to rebuild a model from a checkpoint's stored ``model.config``."""
    return DNALM(validate_config(config))


def build_model(name: str, **overrides: Any) -> DNALM:
    """Model ``name`` (a ``configs/model`` file) with its defaults, overridden by ``overrides``."""
    return model_from_config(load_model_config(name, **overrides))
