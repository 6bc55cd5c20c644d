"""Training objectives on token ids: MDLM and the baselines that share its interface (SPEC sections 4-5).

Every objective has ``batch_loss(model, batch)`` and ``eval_batch(model, batch)`` returning a
``LossOutput``, and the attributes ``likelihood`` (is the figure a (bound on a) likelihood?) and
``is_bound`` (is it an upper bound rather than the exact NLL?):

| name | model | figure | likelihood | is_bound |
|---|---|---|---|---|
| mdlm | bidirectional | NELBO, SUBS (nats/token) | True | True |
| sedd | bidirectional | score-entropy NELBO (nats/token) | True | True |
| ar   | causal (mamba) | exact next-token NLL (nats/token) | True | False |
| mlm  | bidirectional | CE on the 15% selected tokens | False | False |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from dnadiff.objectives.ar import AutoRegressive
from dnadiff.objectives.mdlm import MDLM
from dnadiff.objectives.mlm import MaskedLM
from dnadiff.objectives.schedules import build_schedule
from dnadiff.objectives.sedd import SEDD
from dnadiff.tokenizer import Tokenizer

OBJECTIVES = ("mdlm", "sedd", "ar", "mlm")

Objective = Union[MDLM, SEDD, AutoRegressive, MaskedLM]


def _check_arch(name: str, arch: Any) -> None:
    """objective=ar needs the causal arch; the others need a bidirectional one (arch from ``model_arch``)."""
    if arch is None:
        return
    from dnadiff.models.model_config import ARCHS

    if arch not in ARCHS:
        return
    bidirectional = ARCHS[arch][0]
    if name == "ar" and bidirectional:
        raise ValueError(f"objective=ar needs a causal model (model=mamba), but model arch {arch!r} is bidirectional")
    if name != "ar" and not bidirectional:
        raise ValueError(f"objective={name} needs a bidirectional model (e.g. model=caduceus_ps), "
                         f"but model arch {arch!r} is causal")


def build_objective(cfg: Mapping[str, Any], tokenizer: Tokenizer) -> Objective:
    """The objective described by an ``objective`` config group entry.

    ``cfg["model_arch"]`` (the configs interpolate ``${model.arch}``) is checked against the
    objective when present: ``ar`` needs ``mamba``, the others a bidirectional arch.
    """
    name = cfg.get("name")
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {list(OBJECTIVES)}")
    _check_arch(name, cfg.get("model_arch"))
    if name in ("mdlm", "sedd"):
        schedule = build_schedule(cfg.get("schedule", "loglinear"), cfg.get("eps", 1e-3))
        cls = MDLM if name == "mdlm" else SEDD
        return cls(schedule, tokenizer.mask_id, tokenizer.pad_id, cfg.get("t_min", 1e-3), cfg.get("antithetic", True))
    if name == "ar":
        return AutoRegressive(tokenizer.bos_id, tokenizer.pad_id)
    return MaskedLM(tokenizer.mask_id, tokenizer.pad_id, list(tokenizer.nucleotide_ids),
                    cfg.get("select_prob", 0.15), cfg.get("mask_frac", 0.8), cfg.get("random_frac", 0.1))
