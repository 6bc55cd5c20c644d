"""dnadiff: masked discrete diffusion language models of DNA.

Public API: :class:`Tokenizer`, :func:`build_model`, :func:`load_model`.
"""

from dnadiff.tokenizer import Tokenizer
from dnadiff.version import __version__

__all__ = ["Tokenizer", "build_model", "load_model", "__version__"]


def __getattr__(name: str):
    """Import the model registry lazily so that ``import dnadiff`` stays fast."""
    if name == "build_model":
        from dnadiff.models.registry import build_model

        return build_model
    if name == "load_model":
        from dnadiff.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'dnadiff' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names plus the lazily imported ones, so ``dir(dnadiff)`` and tab completion show them."""
    return sorted(set(globals()) | set(__all__))
