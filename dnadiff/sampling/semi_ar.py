"""Semi-autoregressive MDLM generation beyond the training length.

The first block (``block_length`` positions) is sampled from all-mask. Each further block is a
window of ``block_length`` positions whose first ``prefix_length`` are the last
``prefix_length`` generated tokens, kept by carry-over, and whose remaining positions start
masked and are diffused; its new positions are appended. Every step of every block therefore
sees a context no longer than the training length. The last window is shortened to what is
still needed.
"""

from __future__ import annotations

import torch

from dnadiff.objectives.schedules import NoiseSchedule
from dnadiff.sampling.ancestral import DenoiserFn, ancestral_sample, all_mask
from dnadiff.sampling.common import SampleOutput


def semi_ar_sample(
    denoiser: DenoiserFn,
    num_samples: int,
    length: int,
    block_length: int,
    prefix_length: int,
    steps: int,
    schedule: NoiseSchedule,
    mask_id: int,
    device: torch.device | str = "cpu",
    **sampler_kwargs: object,
) -> SampleOutput:
    """Generate (num_samples, length) ids in overlapping blocks; ``steps`` per block.

    ``sampler_kwargs`` go to :func:`ancestral_sample` (cache, temperature, top_p, generator, final).
    NFE and per-sequence NFE are summed over blocks; ``blocks`` holds every diffused window.
    """
    if isinstance(block_length, bool) or not isinstance(block_length, int) or block_length < 2:
        raise ValueError(f"block_length must be an int >= 2, got {block_length!r}")
    if isinstance(prefix_length, bool) or not isinstance(prefix_length, int) or not 0 <= prefix_length < block_length:
        raise ValueError(f"prefix_length must be an int in [0, block_length={block_length}), got {prefix_length!r}")
    out = ancestral_sample(
        denoiser, all_mask(num_samples, min(length, block_length), mask_id, device), steps, schedule, mask_id,
        **sampler_kwargs,
    )
    ids, nfe, nfe_rows, blocks = out.ids, out.nfe, out.nfe_per_sequence.clone(), [out.ids]
    while ids.shape[1] < length:
        new = min(block_length - prefix_length, length - ids.shape[1])
        prefix = ids[:, ids.shape[1] - prefix_length :]
        window = torch.cat([prefix, all_mask(num_samples, new, mask_id, ids.device)], dim=1)
        block = ancestral_sample(denoiser, window, steps, schedule, mask_id, **sampler_kwargs)
        ids = torch.cat([ids, block.ids[:, prefix_length:]], dim=1)
        nfe += block.nfe
        nfe_rows += block.nfe_per_sequence
        blocks.append(block.ids)
    return SampleOutput(ids, nfe, nfe_rows, steps, None, blocks)
