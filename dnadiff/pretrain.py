"""``python -m dnadiff.pretrain [overrides]``: train a DNA language model (MDLM by default) on genome windows.

With no arguments it trains a tiny Caduceus-PS on the embedded real sample (hg38 chr2:1-2 Mb) in a
few minutes on a CPU. Config groups: model, objective, data, trainer, experiment (see ``--help``);
every key is typed and checked (:class:`dnadiff.train.config.PretrainConfig`). A multirun
(``-m seed=1,2``) writes one folder per job, ``out_dir/0``, ``out_dir/1``, ... (Hydra's job numbers;
each holds its Hydra files, overrides included, in ``hydra/<start time>/``); a single run writes to ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.train.config import PretrainConfig

PROG = "python -m dnadiff.pretrain"


def run(cfg: PretrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Train as configured (a PretrainConfig, or a mapping of its keys); returns the summary."""
    from dnadiff.train.run import pretrain

    return pretrain(to_typed(cfg, PretrainConfig))


def multirun_job_dir() -> str | None:
    """Under a Hydra multirun (``-m``), this job's own output folder (``out_dir/<job number>``); else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    return os.path.join(hydra.sweep.dir, str(hydra.job.num))


def run_job(cfg: PretrainConfig) -> dict[str, Any]:
    """The entry point's job: in a multirun sweep each job trains into its own folder, so that jobs
    never share (and overwrite) one ``out_dir``; a single run writes to ``out_dir`` itself."""
    job_dir = multirun_job_dir()
    return run(dataclasses.replace(cfg, out_dir=job_dir) if job_dir else cfg)


main = entry_point("pretrain", run_job, PROG)

if __name__ == "__main__":
    main()
