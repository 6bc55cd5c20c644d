"""MDLM samplers by name, all with one call: ``fn(denoiser, z_init, steps, schedule, mask_id, **options)``.

``options`` are the common ones (temperature, top_p, generator, final, precision) plus the
sampler's own (``configs/generate.yaml`` has one section per sampler). A driver picks the
sampler with ``MDLM_SAMPLERS[name]``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from dnadiff.sampling.ancestral import ancestral_sample
from dnadiff.sampling.common import SampleOutput
from dnadiff.sampling.confidence import confidence_sample
from dnadiff.sampling.remask import remask_sample

MDLM_SAMPLERS: dict[str, Callable[..., SampleOutput]] = {
    "ancestral": partial(ancestral_sample, cache=False),
    "cached": partial(ancestral_sample, cache=True),
    "confidence": confidence_sample,
    "remask": remask_sample,
}
