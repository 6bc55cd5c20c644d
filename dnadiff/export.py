"""``python -m dnadiff.export ckpt=PATH out=DIR``: write safetensors weights + config.json for sharing.

The export loads with ``dnadiff.load_model(DIR)`` and holds no pickled code.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dnadiff.cli import one_line_errors

PROG = "python -m dnadiff.export"


@hydra.main(config_path="configs", config_name="export", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from dnadiff.train.checkpoint import export_model

    out = export_model(cfg.ckpt, cfg.out, use_ema=bool(cfg.use_ema))
    print(f"exported {cfg.ckpt} -> {out}/model.safetensors + config.json")


if __name__ == "__main__":
    main()
