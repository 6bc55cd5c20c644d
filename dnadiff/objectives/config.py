"""The ``objective`` config group: which training objective, and its parameters.

One dataclass for the four objectives; each uses the keys it needs (``schedule``, ``eps``,
``t_min`` for the diffusion objectives, ``select_prob``/``mask_frac``/``random_frac`` for MLM).
``antithetic`` says how the training stream draws the diffusion times over a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dnadiff.config import in_range, key, one_of, require

OBJECTIVES: tuple[str, ...] = ("mdlm", "sedd", "ar", "mlm")
SCHEDULES: tuple[str, ...] = ("loglinear", "cosine")


@dataclass
class ObjectiveConfig:
    """Objective name and parameters (see the module doc)."""

    name: str = "mdlm"
    schedule: str = "loglinear"  # loglinear: alpha_t = 1 - (1 - eps) t, NELBO weight 1/t; or cosine
    eps: float = 1e-3  # alpha_1 = eps (loglinear)
    t_min: float = 1e-3  # t ~ U[t_min, 1]
    antithetic: bool = True  # stratified times over the global batch (else i.i.d.)
    model_arch: Optional[str] = None  # the configs interpolate ${model.arch}; checked against the objective
    select_prob: float = 0.15  # mlm: fraction of (non-pad) tokens selected for prediction
    mask_frac: float = 0.8  # mlm: of the selected, replaced by [MASK]
    random_frac: float = 0.1  # mlm: of the selected, replaced by a random nucleotide

    def validate(self, prefix: str = "objective") -> None:
        """Ranges and the objective/architecture match, naming the key."""
        one_of(self.name, key(prefix, "name"), OBJECTIVES)
        one_of(self.schedule, key(prefix, "schedule"), SCHEDULES)
        in_range(self.eps, key(prefix, "eps"), 0.0, 1.0, high_open=True)
        in_range(self.t_min, key(prefix, "t_min"), 0.0, 1.0, low_open=True, high_open=True)
        in_range(self.select_prob, key(prefix, "select_prob"), 0.0, 1.0, low_open=True, high_open=True)
        in_range(self.mask_frac, key(prefix, "mask_frac"), 0.0, 1.0)
        in_range(self.random_frac, key(prefix, "random_frac"), 0.0, 1.0)
        if self.model_arch is not None:
            from dnadiff.models.model_config import ARCHS

            bidirectional = ARCHS.get(self.model_arch, (None,))[0]
            require(not (self.name == "ar" and bidirectional is True),
                    f"objective=ar needs a causal model (model=mamba), but model arch {self.model_arch!r} is bidirectional")
            require(not (self.name != "ar" and bidirectional is False),
                    f"objective={self.name} needs a bidirectional model (e.g. model=caduceus_ps), "
                    f"but model arch {self.model_arch!r} is causal")
        require(self.mask_frac + self.random_frac <= 1.0,
                f"{key(prefix, 'mask_frac')} + {key(prefix, 'random_frac')} must be <= 1, "
                f"got {self.mask_frac} + {self.random_frac}")
