"""Typed configuration: the checks every config dataclass shares, and loading a Hydra config into them.

Each folder owns the dataclasses of what it configures (``models/model_config.py``,
``data/config.py``, ``objectives/config.py``, ``train/config.py``, ``sampling/config.py``,
``finetune/config.py``, ``metrics/config.py``); :mod:`dnadiff.cli` registers them with Hydra as
structured configs, so a wrong type or an unknown key is refused while the config is composed,
naming the key. Each dataclass also has ``validate(prefix)``, which checks ranges and
combinations and raises :class:`ConfigError` naming the full key (``trainer.max_steps must be
>= 1, got 0``), before any output is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from dnadiff.errors import first_line

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that is out of range or contradicts another; the message names the key."""


def key(prefix: str, name: str) -> str:
    """``prefix.name`` (or just ``name`` without a prefix)."""
    return f"{prefix}.{name}" if prefix else name


def require(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, name: str, minimum: int = 1) -> None:
    """``name`` must be an int >= ``minimum``."""
    require(is_int(value) and value >= minimum, f"{name} must be an integer >= {minimum}, got {value!r}")


def optional_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    """``name`` must be null or an int >= ``minimum``."""
    if value is not None:
        positive_int(value, name, minimum)


def in_range(value: Any, name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """``name`` must be a number in the interval [low, high] (ends open as told)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    require(ok, f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def one_of(value: Any, name: str, choices: Iterable[Any]) -> None:
    """``name`` must be one of ``choices``."""
    choices = tuple(choices)
    require(value in choices, f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def validate_tree(obj: Any, prefix: str = "") -> None:
    """Call ``validate(prefix)`` on a config dataclass and, recursively, on its dataclass fields."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate_tree(value, key(prefix, field.name))
    own = getattr(obj, "validate", None)
    if own is not None:
        own(prefix)


def omegaconf_message(err: Exception, prefix: str = "") -> str:
    """One line from an OmegaConf error: the full key and what is wrong with its value."""
    full_key = getattr(err, "full_key", None) or ""
    full_key = key(prefix, full_key) if full_key else prefix
    text = first_line(err)
    if type(err).__name__ in ("ConfigKeyError", "ConfigAttributeError"):
        return f"unknown config key {full_key}"
    if type(err).__name__ == "MissingMandatoryValue":
        return f"{full_key} is required ({full_key}=...)"
    return f"{full_key}: {text}" if full_key else text


def check_known_keys(tree: Any, cls: type, prefix: str = "") -> None:
    """Refuse keys of ``tree`` (nested dicts) that are not fields of the dataclass ``cls`` (recursively).

    Hydra's ``+key=value`` adds a key even to a typed node; this is where such a typo is caught.
    """
    if not isinstance(tree, dict):
        return
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in tree if k not in fields)
    if unknown:
        names = [key(prefix, k) for k in unknown]
        raise ConfigError(f"unknown config key{'s' if len(names) > 1 else ''} {', '.join(names)}; "
                          f"valid keys{' of ' + prefix if prefix else ''}: {', '.join(sorted(fields))}")
    for name, value in tree.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            check_known_keys(value, type(default), key(prefix, name))


def required(name: str) -> Any:
    """The ``${dnadiff_required:KEY}`` resolver: a config (e.g. an experiment) that cannot run
    without ``KEY`` says so in one line unless the command line gives it (a ``???`` cannot: OmegaConf
    keeps the schema's default when merging a missing value over it)."""
    raise ConfigError(f"{name} is required by this config: give {name}=...")


def register_resolvers() -> None:
    """The resolvers dnadiff's YAMLs use (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("dnadiff_required"):
        OmegaConf.register_new_resolver("dnadiff_required", required)


def _config_error_in(err: BaseException) -> ConfigError | None:
    """The ConfigError an OmegaConf error was raised from (it keeps it as the context)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def to_typed(cfg: Any, cls: type[T], prefix: str = "") -> T:
    """A composed Hydra config (DictConfig), a mapping or an instance as a validated ``cls``.

    Unknown keys, wrong types and missing mandatory values raise :class:`ConfigError` naming
    the key (under ``prefix``); then every ``validate`` runs.
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, cls):
        obj = cfg
    else:
        register_resolvers()
        try:
            node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
            check_known_keys(OmegaConf.to_container(node, resolve=False), cls, prefix)
            merged = OmegaConf.merge(OmegaConf.structured(cls), node)
            obj = OmegaConf.to_object(merged)
        except OmegaConfBaseException as err:
            own = _config_error_in(err)
            if own is not None:  # raised by a dnadiff resolver: already one line
                raise ConfigError(str(own)) from None
            raise ConfigError(omegaconf_message(err, prefix)) from None
    validate_tree(obj, prefix)
    return obj  # type: ignore[return-value]


def as_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts and lists (what checkpoints store)."""
    return dataclasses.asdict(obj)


def without_abs_paths(obj: Any) -> Any:
    """A copy with every absolute path string (e.g. the run's data.fasta, out dir) cut to its file
    name, so that an export carries no paths of the exporting machine."""
    if isinstance(obj, dict):
        return {k: without_abs_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_abs_paths(v) for v in obj]
    if isinstance(obj, str) and (os.path.isabs(obj) or obj.startswith("~")):
        return Path(obj).name
    return obj
