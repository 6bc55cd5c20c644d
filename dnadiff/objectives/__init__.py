"""Training objectives on token ids: MDLM and the baselines that share its interface.

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

from dnadiff.config import to_typed
from dnadiff.objectives.ar import AutoRegressive
from dnadiff.objectives.config import OBJECTIVES, ObjectiveConfig
from dnadiff.objectives.mdlm import MDLM
from dnadiff.objectives.mlm import MaskedLM
from dnadiff.objectives.schedules import build_schedule
from dnadiff.objectives.sedd import SEDD
from dnadiff.tokenizer import Tokenizer

Objective = Union[MDLM, SEDD, AutoRegressive, MaskedLM]

__all__ = ["OBJECTIVES", "AutoRegressive", "MDLM", "MaskedLM", "Objective", "ObjectiveConfig", "SEDD", "build_objective"]


def build_objective(cfg: ObjectiveConfig | Mapping[str, Any], tokenizer: Tokenizer) -> Objective:
    """The objective an ``objective`` config describes (a dataclass, or the dict a checkpoint stores).

    ``model_arch`` (the configs interpolate ``${model.arch}``) is checked against the objective
    when present (:meth:`ObjectiveConfig.validate`): ``ar`` needs ``mamba``, the others a
    bidirectional arch.
    """
    c = to_typed(cfg, ObjectiveConfig, "objective")
    if c.name in ("mdlm", "sedd"):
        schedule = build_schedule(c.schedule, c.eps)
        cls = MDLM if c.name == "mdlm" else SEDD
        return cls(schedule, tokenizer.mask_id, tokenizer.pad_id, c.t_min, c.antithetic)
    if c.name == "ar":
        return AutoRegressive(tokenizer.bos_id, tokenizer.pad_id)
    return MaskedLM(tokenizer.mask_id, tokenizer.pad_id, list(tokenizer.nucleotide_ids),
                    c.select_prob, c.mask_frac, c.random_frac)
