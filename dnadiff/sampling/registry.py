"""The samplers ``python -m dnadiff.generate sampler=NAME`` can run, by name.

Each entry is ``run(pipeline, denoiser, z, options) -> SampleOutput``: the pipeline
(:class:`dnadiff.sampling.pipeline.SamplingPipeline`: config, schedule, tokenizer, template,
checkpoint metadata), the (guided) denoiser, the initial ids ``z`` (mask = to generate, other ids
kept) and the options every sampler shares (temperature, top_p, generator, final).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dnadiff.sampling.ancestral import ancestral_sample
from dnadiff.sampling.common import SampleOutput
from dnadiff.sampling.semi_ar import semi_ar_sample

# run(pipeline, denoiser, z, options); the pipeline is typed Any so that this module does not import it
Sampler = Callable[[Any, Any, torch.Tensor, dict[str, Any]], SampleOutput]


def _ancestral(cache: bool) -> Sampler:
    def run(p: Any, denoiser: Any, z: torch.Tensor, options: dict[str, Any]) -> SampleOutput:
        return ancestral_sample(denoiser, z, p.cfg.steps, p.schedule, p.tok.mask_id, cache=cache, **options)

    return run


def _semi_ar(p: Any, denoiser: Any, z: torch.Tensor, options: dict[str, Any]) -> SampleOutput:
    if p.template is not None:
        raise ValueError("semi_ar does not combine with infilling; use sampler=ancestral or cached")
    cfg = p.cfg.semi_ar
    block = cfg.block_length or p.training_length
    if block is None:
        raise ValueError("semi_ar.block_length is required (the checkpoint does not record its training length)")
    prefix = int(block) // 2 if cfg.prefix_length is None else cfg.prefix_length
    return semi_ar_sample(denoiser, z.shape[0], z.shape[1], int(block), prefix, p.cfg.steps, p.schedule,
                          p.tok.mask_id, device=z.device, cache=cfg.cache, **options)


SAMPLERS: dict[str, Sampler] = {
    "ancestral": _ancestral(cache=False),
    "cached": _ancestral(cache=True),
    "semi_ar": _semi_ar,
}
