"""``python -m dnadiff.finetune``: fine-tune a backbone with K-fold CV on Genomic Benchmarks.

    python -m dnadiff.finetune task=NAME [ckpt=PATH] [model=NAME] [data.root=PATH] [cv.folds=5]
        [cv.seeds=N] [trainer.max_epochs=N] [out_dir=PATH] [baseline=true|false] [save_classifier=DIR]

Writes ``out_dir/<task>/cv.json`` and ``cv.md`` (see :mod:`dnadiff.finetuning.run`); ``--help``
lists every option of ``configs/finetune.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.finetuning.config import FinetuneConfig

PROG = "python -m dnadiff.finetune"


def finetune(cfg: FinetuneConfig | Mapping[str, Any]) -> list[dict]:
    """Run the cross-validation as configured (a FinetuneConfig or a mapping of its keys)."""
    from dnadiff.finetuning.run import run

    return run(to_typed(cfg, FinetuneConfig))


main = entry_point("finetune", finetune, PROG)

if __name__ == "__main__":
    main()
