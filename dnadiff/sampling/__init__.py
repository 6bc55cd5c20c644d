"""Generation from dnadiff models.

- :func:`ancestral_sample` (``cache=True``: the cached sampler), :func:`semi_ar_sample`,
  :func:`infill_sample` (+ :func:`span_template`, :func:`motif_template`) for MDLM models,
  through a :class:`Denoiser` or a guided one (:class:`ClassifierFreeGuidance`,
  :class:`ClassifierGuidance`);
- :func:`ar_sample` for causal (AR) checkpoints, by recurrence.

Every sampler returns a :class:`SampleOutput`: ids plus NFE.
"""

from dnadiff.sampling.ancestral import all_mask, ancestral_sample
from dnadiff.sampling.ar import ar_log_likelihood, ar_sample
from dnadiff.sampling.common import SampleOutput, filter_log_probs, make_generator, sample_categorical
from dnadiff.sampling.denoiser import Denoiser
from dnadiff.sampling.guidance import ClassifierFreeGuidance, ClassifierGuidance, cfg_log_probs, onehot_gradient
from dnadiff.sampling.infill import infill_sample, motif_template, parse_region, parse_span, span_template
from dnadiff.sampling.semi_ar import semi_ar_sample

__all__ = [
    "SampleOutput", "Denoiser", "ClassifierFreeGuidance", "ClassifierGuidance", "all_mask", "ancestral_sample",
    "ar_log_likelihood", "ar_sample", "cfg_log_probs", "filter_log_probs", "infill_sample", "make_generator",
    "motif_template", "onehot_gradient", "parse_region", "parse_span", "sample_categorical",
    "semi_ar_sample", "span_template",
]
