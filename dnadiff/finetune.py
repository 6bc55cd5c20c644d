"""``python -m dnadiff.finetune``: fine-tune a backbone with K-fold CV on Genomic Benchmarks.

    python -m dnadiff.finetune task=NAME [ckpt=PATH] [model=NAME] [data.root=PATH] [cv.folds=5]
        [cv.seeds=N] [trainer.max_epochs=N] [out_dir=PATH] [baseline=true|false]

Writes ``out_dir/<task>/cv.json`` and ``cv.md`` (see :mod:`dnadiff.train.cv_run`); ``--help``
lists every option of ``configs/finetune.yaml``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="configs", config_name="finetune", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: resolve the config and run the cross-validation."""
    from dnadiff.data.benchmarks import BenchmarkDataError
    from dnadiff.train.cv_run import run

    try:
        run(OmegaConf.to_container(cfg, resolve=True), progress=bool(cfg.progress))
    except (ValueError, BenchmarkDataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
