"""Training objectives on token ids: MDLM (and the baselines that share its interface)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dnadiff.objectives.mdlm import MDLM
from dnadiff.objectives.schedules import build_schedule
from dnadiff.tokenizer import Tokenizer

OBJECTIVES = ("mdlm",)


def build_objective(cfg: Mapping[str, Any], tokenizer: Tokenizer) -> MDLM:
    """The objective described by an ``objective`` config group entry."""
    name = cfg.get("name")
    if name == "mdlm":
        schedule = build_schedule(cfg.get("schedule", "loglinear"), cfg.get("eps", 1e-3))
        return MDLM(schedule, tokenizer.mask_id, tokenizer.pad_id, cfg.get("t_min", 1e-3), cfg.get("antithetic", True))
    raise ValueError(f"unknown objective {name!r}; valid: {list(OBJECTIVES)}")
