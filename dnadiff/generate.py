"""``python -m dnadiff.generate ckpt=PATH num_samples=N length=L sampler=cached steps=T out=PATH.fa``.

Writes a FASTA of N generated sequences; each header holds ``sampler``, ``steps``, ``nfe`` (the
network evaluations that sequence took part in), ``seed``, ``temperature``, ``top_p`` and
``guidance``. MDLM and SEDD checkpoints use the samplers of :data:`dnadiff.sampling.pipeline.SAMPLERS`;
AR checkpoints are sampled by recurrence whatever ``sampler`` says. Infilling:
``infill.fasta=PATH infill.region=CONTIG:START-END infill.mask=START-END`` (samtools-style,
1-based inclusive; the mask is relative to the region) generates the masked span and keeps the
flanks; ``infill.motif=SEQ infill.motif_position=P`` (1-based) fixes a motif. Guidance:
``guidance.class=NAME guidance.weight=W`` (classifier-free, for class-conditional models;
W = 0 unconditional, 1 conditional, > 1 guided) or with ``guidance.classifier=DIR`` (classifier-
based, a classifier saved by ``python -m dnadiff.finetune save_classifier=DIR``).
See ``configs/generate.yaml`` for every option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.sampling.config import GenerateConfig

PROG = "python -m dnadiff.generate"


def generate(cfg: GenerateConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Run generation as configured (a GenerateConfig or a mapping of its keys); returns throughput figures."""
    from dnadiff.sampling.pipeline import generate_fasta

    stats = generate_fasta(to_typed(cfg, GenerateConfig))
    print(
        f"wrote {stats['num_samples']} sequences of {stats['length']} bp to {stats['out']} in {stats['seconds']:.2f} s "
        f"on {stats['device']}: {stats['sequences_per_second']:.2f} sequences/s, "
        f"mean NFE {stats['mean_nfe_per_sequence']:.1f} per sequence, {stats['network_calls']} network calls"
    )
    return stats


main = entry_point("generate", generate, PROG)

if __name__ == "__main__":
    main()
