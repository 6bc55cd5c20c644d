"""Shared plumbing of the ``python -m dnadiff.*`` entry points: config to plain data, one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf



def is_user_error(err: BaseException) -> bool:
    """Errors about the user's input: bad values and paths, and dnadiff's own error classes."""
    return isinstance(err, (ValueError, OSError)) or type(err).__module__.startswith("dnadiff")


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved DictConfig as plain dicts and lists."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def one_line_errors(prog: str) -> Callable:
    """Report a user error (bad path, value, checkpoint) as one line on stderr and exit with status 2.

    Set DNADIFF_DEBUG=1 for the full traceback.
    """

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            import os

            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if os.environ.get("DNADIFF_DEBUG") or not is_user_error(err):
                    raise
                msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                print(f"{prog}: error: {msg}", file=sys.stderr)
                sys.exit(2)

        return inner

    return wrap
