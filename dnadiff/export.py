"""``python -m dnadiff.export ckpt=PATH out=DIR [format=dnadiff|hf]``: safetensors weights + config.json for sharing.

``format=dnadiff`` (default) writes dnadiff's export, which loads with ``dnadiff.load_model(DIR)``;
``format=hf`` writes a snapshot in the Caduceus authors' Hugging Face schema
(``dnadiff.models.hf_caduceus.export_hf``). Neither holds pickled code.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dnadiff.cli import one_line_errors

PROG = "python -m dnadiff.export"
FORMATS = ("dnadiff", "hf")


@hydra.main(config_path="configs", config_name="export", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format!r} is not one of {list(FORMATS)}")
    if cfg.format == "hf":
        from dnadiff.models.hf_caduceus import export_hf_checkpoint

        out = export_hf_checkpoint(cfg.ckpt, cfg.out, use_ema=bool(cfg.use_ema), code_repo=cfg.get("code_repo"))
    else:
        from dnadiff.train.checkpoint import export_model

        out = export_model(cfg.ckpt, cfg.out, use_ema=bool(cfg.use_ema))
    print(f"exported {cfg.ckpt} -> {out}/model.safetensors + config.json ({cfg.format} format)")


if __name__ == "__main__":
    main()
