"""dnadiff: masked discrete diffusion language models of DNA.

Public API: :class:`Tokenizer`, :func:`build_model`, :func:`load_model`.
"""

import os as _os
import sys as _sys

# Large CPU tensors on transparent huge pages (torch reads THP_MEM_ALLOC_ENABLE once, at its first
# allocation): the first touch of a big activation then faults 2 MiB at a time instead of 4 KiB,
# 4-6x faster for the 64 MiB temporaries of a training step (bench/results/backbone_cpu.json
# measures it). Only when torch is not imported yet; THP_MEM_ALLOC_ENABLE=0 opts out.
if "torch" not in _sys.modules:
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from dnadiff.tokenizer import Tokenizer  # noqa: E402

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
