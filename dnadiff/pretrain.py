"""``python -m dnadiff.pretrain [overrides]``: train a DNA language model (MDLM by default) on genome windows.

With no arguments it trains a tiny Caduceus-PS on the embedded real sample (hg38 chr2:1-2 Mb) in a
few minutes on a CPU. Config groups: model, objective, data, trainer, experiment (see ``--help``);
every key is typed and checked (:class:`dnadiff.train.config.PretrainConfig`).
"""

from __future__ import annotations

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


main = entry_point("pretrain", run, PROG)

if __name__ == "__main__":
    main()
