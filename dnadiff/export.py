"""``python -m dnadiff.export ckpt=PATH out=DIR [format=dnadiff|hf]``: safetensors weights + config.json for sharing.

``format=dnadiff`` (default) writes dnadiff's export, which loads with ``dnadiff.load_model(DIR)``;
``format=hf`` writes a snapshot in the Caduceus authors' Hugging Face schema
(``dnadiff.models.hf_caduceus.export_hf``). Neither holds pickled code.
"""

from __future__ import annotations

from pathlib import Path

from dnadiff.checkpoint import ExportConfig
from dnadiff.cli import entry_point

PROG = "python -m dnadiff.export"


def export(cfg: ExportConfig) -> Path:
    """Export as configured; returns the output folder."""
    if cfg.format == "hf":
        from dnadiff.checkpoint import export_hf_checkpoint

        out = export_hf_checkpoint(cfg.ckpt, cfg.out, use_ema=cfg.use_ema, code_repo=cfg.code_repo)
    else:
        from dnadiff.checkpoint import export_model

        out = export_model(cfg.ckpt, cfg.out, use_ema=cfg.use_ema)
    print(f"exported {cfg.ckpt} -> {out}/model.safetensors + config.json ({cfg.format} format)")
    return out


main = entry_point("export", export, PROG)

if __name__ == "__main__":
    main()
