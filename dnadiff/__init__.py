"""dnadiff: masked discrete diffusion language models of DNA.

Public API: :class:`Tokenizer`, :func:`build_model`, :func:`load_model`.
"""

from dnadiff.tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = ["Tokenizer", "build_model", "load_model", "__version__"]


def __getattr__(name: str):
    """Import the model registry lazily so that ``import dnadiff`` stays fast."""
    if name == "build_model":
        from dnadiff.models.registry import build_model

        return build_model
    if name == "load_model":
        from dnadiff.train.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'dnadiff' has no attribute {name!r}")
