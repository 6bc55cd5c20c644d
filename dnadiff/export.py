"""``python -m dnadiff.export ckpt=PATH out=DIR``: write safetensors weights + config.json for sharing.

The export loads with ``dnadiff.load_model(DIR)`` and holds no pickled code.
"""

from __future__ import annotations

from pathlib import Path

from dnadiff.checkpoint import ExportConfig
from dnadiff.cli import entry_point

PROG = "python -m dnadiff.export"


def export(cfg: ExportConfig) -> Path:
    """Export as configured; returns the output folder."""
    from dnadiff.checkpoint import export_model

    out = export_model(cfg.ckpt, cfg.out, use_ema=cfg.use_ema)
    print(f"exported {cfg.ckpt} -> {out}/model.safetensors + config.json")
    return out


main = entry_point("export", export, PROG)

if __name__ == "__main__":
    main()
