"""Plumbing of the ``python -m dnadiff.*`` entry points: typed Hydra configs and one-line errors.

Every entry point is ``entry_point(config_name, schema, run, prog)``: Hydra composes
``configs/<config_name>.yaml`` over its structured schema (registered here), the result is
validated into the schema's dataclass (:func:`dnadiff.config.to_typed`), and ``run`` gets it.
Before Hydra runs, the command line is composed once here so that a bad value, an unknown key
or a missing argument is reported as one line naming the key, exit status 2, before anything is
written. ``--help``, ``--cfg`` and ``-m`` (multirun) go to Hydra unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig

from dnadiff.config import ConfigError, omegaconf_message, register_resolvers, to_typed
from dnadiff.errors import first_line

T = TypeVar("T")
CONFIG_MODULE = "dnadiff.configs"
HYDRA_VERSION = "1.3"


# Each job's schema, imported only when that job runs (inference entry points never import training code).
SCHEMAS: dict[str, str] = {
    "pretrain": "dnadiff.train.config:PretrainConfig",
    "evaluate": "dnadiff.metrics.config:EvaluateConfig",
    "generate": "dnadiff.sampling.config:GenerateConfig",
    "finetune": "dnadiff.finetuning.config:FinetuneConfig",
    "export": "dnadiff.checkpoint:ExportConfig",
    "evaluate_samples": "dnadiff.metrics.config:EvaluateSamplesConfig",
}


def schema_of(config_name: str) -> type:
    """The dataclass of a job's config."""
    import importlib

    module, name = SCHEMAS[config_name].split(":")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def register_config(config_name: str) -> None:
    """Register a job's schema with Hydra's ConfigStore as ``<job>_schema`` (its YAML lists it first)."""
    from hydra.core.config_store import ConfigStore

    register_resolvers()
    ConfigStore.instance().store(name=f"{config_name}_schema", node=schema_of(config_name))


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` (Hydra's override syntax), as the
    entry point would; raises :class:`ConfigError` naming the key for a bad override."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_config(config_name)
    try:
        with initialize_config_module(CONFIG_MODULE, version_base=HYDRA_VERSION):
            return compose(config_name=config_name, overrides=list(overrides))
    except HydraException as err:
        raise ConfigError(_hydra_message(err)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_message(err)) from None
    except (AttributeError, TypeError, ValueError) as err:  # OmegaConf validating a nested value
        where = re.search(r"full_key: (\S+)", str(err))
        raise ConfigError(f"{where.group(1) + ': ' if where else ''}invalid value ({first_line(err)})") from None


def load_config(config_name: str, overrides: Sequence[str] = ()) -> Any:
    """The typed, validated config of a job: :func:`compose_config` then :func:`to_typed`."""
    return to_typed(compose_config(config_name, overrides), schema_of(config_name))


def _hydra_message(err: BaseException) -> str:
    """One line from a Hydra composition error: the override, and what is wrong with it."""
    from omegaconf.errors import OmegaConfBaseException

    cause = err.__cause__ or err.__context__
    head = first_line(err)
    if isinstance(cause, OmegaConfBaseException):
        if getattr(cause, "full_key", None):
            return omegaconf_message(cause)
        return f"{head.removeprefix('Error merging override ')}: {omegaconf_message(cause)}"
    options = re.search(r"Available options in '([^']+)':\n((?:\t\S+\n?)+)", str(err))
    if options:
        return f"{head}; available {options.group(1)} options: {', '.join(options.group(2).split())}"
    return head


def is_user_error(err: BaseException) -> bool:
    """Errors about the user's input: bad values and paths, and dnadiff's own error classes."""
    return isinstance(err, (ValueError, OSError, KeyError)) or type(err).__module__.startswith("dnadiff")


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Report a user error (bad path, value, checkpoint) as one line on stderr and exit with status 2.

    Set DNADIFF_DEBUG=1 for the full traceback.
    """
    try:
        yield
    except Exception as err:
        if os.environ.get("DNADIFF_DEBUG") or not is_user_error(err):
            raise
        print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
        sys.exit(2)


def _plain_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides to check up front, or None when Hydra flags (--help, -m, --cfg ...) are given."""
    if any(a.startswith("-") for a in argv):
        return None
    return [a for a in argv if not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]


def entry_point(config_name: str, run: Callable[[Any], Any], prog: str) -> Callable[[], None]:
    """The ``main()`` of a Hydra entry point running ``run(typed_config)`` (see the module doc)."""
    import hydra

    register_config(config_name)
    schema = schema_of(config_name)

    @hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base=HYDRA_VERSION)
    def hydra_main(cfg: DictConfig) -> None:
        with user_errors(prog):
            run(to_typed(cfg, schema))

    def main() -> None:
        overrides = _plain_overrides(sys.argv[1:])
        if overrides is not None:
            with user_errors(prog):
                to_typed(compose_config(config_name, overrides), schema)
        hydra_main()

    main.__doc__ = f"Console entry point of {prog} (Hydra overrides; --help lists the options)."
    return main
