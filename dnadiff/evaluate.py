"""``python -m dnadiff.evaluate ckpt=PATH [data.*] [split=test|all] [out=PATH.json]``: held-out likelihood.

Reports nats/token (with its window-clustered standard error, in the JSON and on the printed
line), bits/base and perplexity over the evaluation windows of ``split``. For diffusion objectives
these are upper bounds on the NLL (``is_bound: true``): the exact prior term, the NELBO over
[t_min, 1] and the reconstruction term at t_min, averaged over ``eval.draws`` stratified
(t, z_t) draws per window; the JSON also gives the Monte Carlo part of the standard error
(``nats_per_token_mc_stderr``) and each term (``bound_terms_nats_per_token``).
``split=all`` takes the windows of every contig of ``data.fasta`` (no BED: another genome, or a
held-out chromosome), at most ``data.max_eval_windows`` of them, evenly spaced (null = every one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.metrics.config import EvaluateConfig

PROG = "python -m dnadiff.evaluate"


def evaluate(cfg: EvaluateConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate a checkpoint as configured (an EvaluateConfig or a mapping of its keys); prints and returns the report."""
    from dnadiff.metrics.evaluation import evaluate_checkpoint

    report = evaluate_checkpoint(to_typed(cfg, EvaluateConfig))
    line, out = report.pop("line"), report.pop("out")
    print(json.dumps(report, indent=1))
    which = "windows of every contig" if report["split"] == "all" else f"{report['split']} windows"
    print(f"{report['objective']} on {report['n_windows']} {which}: {line} -> {out}")
    return report


main = entry_point("evaluate", evaluate, PROG)

if __name__ == "__main__":
    main()
