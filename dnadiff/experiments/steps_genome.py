"""What do sampling steps buy on real DNA? The step sweep on the real-genome MDLM model.

``python -m dnadiff.experiments.steps_genome --ckpt MDLM_CKPT --ar-ckpt AR_CKPT``

Both checkpoints come from ``python -m dnadiff.pretrain`` (the MDLM with the defaults, the AR
judge with ``objective=ar model=mamba``). For every sampler of ``dnadiff/experiments/steps.yaml`` and T in
``--steps``, N sequences of ``--length`` bp are generated and scored against held-out (test
split) windows of the hg38 chr2 slice:

- generative perplexity under the AR model: exp of the mean per-token NLL (per-sequence NLLs
  give a 95% interval, exp(mean +- 1.96 SE));
- k-mer Jensen-Shannon divergence to the held-out windows (bits, k = 1..6; a bootstrap over the
  generated sequences gives the standard error of k = 3 and k = 6). With few short sequences the
  6-mer spectra are sparse and JS has a floor from sampling alone: the reference row scores N
  held-out windows (not in the reference set) the same way, which is that floor;
- NFE per sequence.

The held-out windows themselves are scored too (the level of real DNA). There is no validity
rule on real DNA: these are token-level (TER-like) measures only. Writes ``results.json`` and
``steps_genome.png`` under ``--out`` (default ``bench/results/steps_genome``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from dnadiff.experiments.stats import Z95, mean_se
from dnadiff.experiments.record import machine_info, write_results
from dnadiff.experiments.sampling import heldout_windows
from dnadiff.experiments.steps import CONFIG, ROOT, TOK, sampler_fn
from dnadiff.metrics.samples import kmer_js
from dnadiff.sampling import Denoiser, all_mask, ar_log_likelihood, make_generator


@torch.no_grad()
def per_sequence_nll(ar: torch.nn.Module, seqs: list[str], batch: int = 32) -> np.ndarray:
    """Per-token NLL of each sequence under the AR model (nats/token)."""
    out = []
    for i in range(0, len(seqs), batch):
        ids = TOK.encode_batch(seqs[i : i + batch])
        out.append((-ar_log_likelihood(ar, ids) / ids.shape[1]).numpy())
    return np.concatenate(out)


def scores(seqs: list[str], reference: list[str], ar: torch.nn.Module, boot: int, seed: int) -> dict:
    """Generative perplexity (with interval) and k-mer JS (with bootstrap SE for k = 3, 6)."""
    nll, nll_se = mean_se(per_sequence_nll(ar, seqs))
    js = kmer_js(seqs, reference)
    rng = np.random.default_rng(seed)
    draws = {"3": [], "6": []}
    for _ in range(boot):
        pick = [seqs[j] for j in rng.integers(0, len(seqs), len(seqs))]
        b = kmer_js(pick, reference, ks=(3, 6))
        draws["3"].append(b["3"])
        draws["6"].append(b["6"])
    return {"gen_ppl": math.exp(nll), "gen_ppl_lo": math.exp(nll - Z95 * nll_se),
            "gen_ppl_hi": math.exp(nll + Z95 * nll_se), "nll": nll, "nll_se": nll_se, "kmer_js": js,
            "kmer_js_se": {k: float(np.std(v, ddof=1)) for k, v in draws.items()}}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["nfe"])
        x = [r["nfe"] for r in pts]
        axes[0].errorbar(x, [r["gen_ppl"] for r in pts],
                         yerr=[[r["gen_ppl"] - r["gen_ppl_lo"] for r in pts], [r["gen_ppl_hi"] - r["gen_ppl"] for r in pts]],
                         marker="o", ms=3, capsize=2, label=sampler)
        axes[1].errorbar(x, [r["kmer_js"]["3"] for r in pts], yerr=[1.96 * r["kmer_js_se"]["3"] for r in pts],
                         marker="o", ms=3, capsize=2, label=sampler)
    ref = result["reference"]
    axes[0].axhline(ref["gen_ppl"], color="grey", ls=":", label="held-out windows")
    axes[1].axhline(ref["kmer_js"]["3"], color="grey", ls=":", label="N held-out windows (sampling floor)")
    for ax, label in zip(axes, ("generative perplexity under the AR model", "3-mer JS to held-out (bits)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE per sequence")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"real-genome MDLM, L = {result['config']['length']}, {result['config']['num_samples']} "
                 "sequences per point (95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    from dnadiff.checkpoint import load_model, read_metadata

    parser = argparse.ArgumentParser(prog="python -m dnadiff.experiments.steps_genome",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="MDLM checkpoint (python -m dnadiff.pretrain)")
    parser.add_argument("--ar-ckpt", required=True, help="AR checkpoint (objective=ar model=mamba): the judge")
    parser.add_argument("--length", type=int, default=128, help="generated length (bp)")
    parser.add_argument("--steps", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--samplers", nargs="+", help="sampler names of dnadiff/experiments/steps.yaml (default: all)")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "steps_genome")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    samplers = args.samplers or list(cfg["samplers"])
    for path, name in ((args.ckpt, "mdlm"), (args.ar_ckpt, "ar")):
        got = read_metadata(path)["objective"].get("name")
        if got != name:
            raise SystemExit(f"{path}: expected an {name} checkpoint, got objective {got!r}")
    mdlm, ar = load_model(args.ckpt).eval(), load_model(args.ar_ckpt).eval()
    start = time.perf_counter()
    windows = heldout_windows(args.length, args.num_samples + 512)
    held, reference = windows[: args.num_samples], windows[args.num_samples :]
    ref_scores = scores(held, reference, ar, args.bootstrap, args.seed)
    den = Denoiser(mdlm, TOK.mask_id)
    rows = []
    for name in samplers:
        run = sampler_fn(name, cfg)
        for steps in args.steps:
            t0 = time.perf_counter()
            out = run(den, all_mask(args.num_samples, args.length, TOK.mask_id), steps, make_generator(args.seed, "cpu"))
            seqs = TOK.decode(out.ids)
            row = {"sampler": name, "steps": steps, "nfe": float(out.nfe_per_sequence.float().mean()),
                   **scores(seqs, reference, ar, args.bootstrap, args.seed), "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(f"  {name:<18s} T={steps:<4d} NFE={row['nfe']:6.1f} gen PPL {row['gen_ppl']:.3f} "
                  f"[{row['gen_ppl_lo']:.3f}, {row['gen_ppl_hi']:.3f}]  JS k=3 {row['kmer_js']['3']:.4f}  "
                  f"k=6 {row['kmer_js']['6']:.4f} ({row['seconds']:.0f}s)", flush=True)
    result = {"command": "python -m dnadiff.experiments.steps_genome " + " ".join(argv if argv is not None
                                                                                   else sys.argv[1:]),
              "machine": machine_info("cpu"), "seconds": time.perf_counter() - start,
              "config": {"ckpt": args.ckpt, "ar_ckpt": args.ar_ckpt, "length": args.length, "steps": args.steps,
                         "num_samples": args.num_samples, "samplers": {s: cfg["samplers"][s] for s in samplers},
                         "reference_windows": len(reference), "heldout_scored": len(held)},
              "reference": ref_scores, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(result, args.out / "results")
    plot(result, args.out / "steps_genome.png")
    print(f"{len(held)} held-out windows: gen PPL {ref_scores['gen_ppl']:.3f}, 6-mer JS to the reference "
          f"{ref_scores['kmer_js']['6']:.4f} (the floor of N sequences)")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'steps_genome.png'}")
    return result


if __name__ == "__main__":
    main()
