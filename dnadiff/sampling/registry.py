"""The samplers ``python -m dnadiff.generate sampler=NAME`` can run, by name.

Two tables:

- :data:`MDLM_SAMPLERS`: the sampler functions with one calling convention,
  ``fn(denoiser, z, steps, schedule, mask_id, **options)`` (``z``: mask = to generate, other ids
  kept, so infilling templates work with every entry; guidance goes through the denoiser). The
  experiments (:mod:`dnadiff.experiments.steps`) call these directly.
- :data:`SAMPLERS`: each entry is ``run(pipeline, denoiser, z, options) -> SampleOutput``: the
  pipeline (:class:`dnadiff.sampling.pipeline.SamplingPipeline`: config, schedule, tokenizer,
  template, checkpoint metadata), the (guided) denoiser, the initial ids ``z`` and the options
  every sampler shares (temperature, top_p, generator, final, precision). A sampler with its own
  config section (``confidence.*``, ``remask.*``: :mod:`dnadiff.sampling.config`) gets it as
  keyword options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

import torch

from dnadiff.sampling.ancestral import ancestral_sample
from dnadiff.sampling.common import SampleOutput
from dnadiff.sampling.confidence import confidence_sample
from dnadiff.sampling.remask import remask_sample
from dnadiff.sampling.semi_ar import semi_ar_sample

# run(pipeline, denoiser, z, options); the pipeline is typed Any so that this module does not import it
Sampler = Callable[[Any, Any, torch.Tensor, dict[str, Any]], SampleOutput]

MDLM_SAMPLERS: dict[str, Callable[..., SampleOutput]] = {
    "ancestral": partial(ancestral_sample, cache=False),
    "cached": partial(ancestral_sample, cache=True),
    "confidence": confidence_sample,
    "remask": remask_sample,
}


def _direct(name: str, section: str | None = None) -> Sampler:
    """A SAMPLERS entry calling ``MDLM_SAMPLERS[name]``, with the config section ``section`` as options."""
    def run(p: Any, denoiser: Any, z: torch.Tensor, options: dict[str, Any]) -> SampleOutput:
        own = asdict(getattr(p.cfg, section)) if section else {}
        return MDLM_SAMPLERS[name](denoiser, z, p.cfg.steps, p.schedule, p.tok.mask_id, **own, **options)

    return run


def _semi_ar(p: Any, denoiser: Any, z: torch.Tensor, options: dict[str, Any]) -> SampleOutput:
    if p.template is not None:
        raise ValueError("semi_ar does not combine with infilling; use sampler=ancestral, cached, confidence or remask")
    cfg = p.cfg.semi_ar
    block = cfg.block_length or p.training_length
    if block is None:
        raise ValueError("semi_ar.block_length is required (the checkpoint does not record its training length)")
    prefix = int(block) // 2 if cfg.prefix_length is None else cfg.prefix_length
    return semi_ar_sample(denoiser, z.shape[0], z.shape[1], int(block), prefix, p.cfg.steps, p.schedule,
                          p.tok.mask_id, device=z.device, cache=cfg.cache, **options)


SAMPLERS: dict[str, Sampler] = {
    "ancestral": _direct("ancestral"),
    "cached": _direct("cached"),
    "confidence": _direct("confidence", "confidence"),
    "remask": _direct("remask", "remask"),
    "semi_ar": _semi_ar,
}
