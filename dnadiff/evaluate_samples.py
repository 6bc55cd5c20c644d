"""``python -m dnadiff.evaluate_samples samples=PATH.fa out=PATH.json [reference=PATH.fa]``: sample quality.

The JSON holds: ``kmer_js`` (k = 1..6, bits), ``gc_mean`` / ``gc_mean_reference`` / ``gc_std`` /
``gc_wasserstein``, ``diversity``, ``nn_identity`` (memorisation: exact nearest-window identity
in the reference, both strands), ``motifs`` (JASPAR hits per kb, samples vs reference),
``generative_perplexity`` (with ``ar_ckpt=PATH``), ``oracle`` (with ``classifier_ckpt=DIR``, a
classifier saved by ``python -m dnadiff.finetune save_classifier=DIR``: mean class probabilities
and the Frechet distance of classifier embeddings), and ``plots``: the PNGs written beside the
JSON. The reference set is described in :mod:`dnadiff.metrics.sample_report`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.metrics.config import EvaluateSamplesConfig

PROG = "python -m dnadiff.evaluate_samples"


def evaluate_samples(cfg: EvaluateSamplesConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Compute every configured metric; writes the JSON (and plots), prints a summary, returns the report."""
    from dnadiff.metrics.sample_report import sample_report

    cfg = to_typed(cfg, EvaluateSamplesConfig)
    report = sample_report(cfg)
    js = ", ".join(f"k={k}: {v:.4f}" for k, v in report["kmer_js"].items())
    nn_mean = report["nn_identity"]["mean"]
    nn_text = "n/a (reference shorter than the samples)" if nn_mean is None else f"{nn_mean:.3f}"
    print(f"k-mer JS (bits) {js}; GC {report['gc_mean']:.3f} vs {report['gc_mean_reference']:.3f}; "
          f"nn identity mean {nn_text}; wrote {cfg.out}")
    return report


def rewrite_reference_override(argv: list[str]) -> list[str]:
    """``reference=PATH`` is shorthand for ``reference.fasta=PATH``."""
    return [f"reference.fasta={a.split('=', 1)[1]}" if a.startswith("reference=") else a for a in argv]


_main = entry_point("evaluate_samples", evaluate_samples, PROG)


def main() -> None:
    """Console entry: accepts the ``reference=PATH`` shorthand, then runs the Hydra entry point."""
    sys.argv = [sys.argv[0], *rewrite_reference_override(sys.argv[1:])]
    _main()


if __name__ == "__main__":
    main()
