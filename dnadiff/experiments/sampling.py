"""Sampling benchmark (issue 8): quality against NFE, and sequences/s of the samplers.

Speed, at equal length L and batch size, every figure also a ratio to the reference measured
in the same run, the plain (uncached) ancestral MDLM sampler with T = L steps:
- uncached ancestral, T = L;
- cached ancestral, T = L and T = 4L (NFE per sequence <= min(T, L));
- AR by recurrence (``model.step``, L steps of O(1) state) and AR by full forwards on the
  growing prefix (the O(L^2) way), when an AR model is there.

Quality (needs trained checkpoints): for T in {8, 16, ..., L}, cached ancestral samples scored by
k-mer Jensen-Shannon divergence (bits, k = 1..6) against held-out (test split) windows of the
hg38 chr2 slice, and by generative perplexity under ``--ar-ckpt`` when given; x-axis: mean NFE
per sequence.

    python -m dnadiff.experiments.sampling                                   # speed only, random tiny models
    python -m dnadiff.experiments.sampling --ckpt runs/pretrain/last.ckpt --ar-ckpt runs/ar/last.ckpt [--length 1024]

Without ``--ckpt`` nothing is trained: randomly initialised tiny models (``caduceus_ps`` for
MDLM, ``mamba`` for AR) give the speed table (NFE of the cached sampler depends on the unmasking
pattern, not on the weights) and the quality columns are left empty. Writes
``bench/results/sampling.json`` and ``bench/results/sampling.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dnadiff import Tokenizer, build_model
from dnadiff.atomic import atomic_write
from dnadiff.metrics.samples import kmer_js
from dnadiff.objectives.schedules import build_schedule
from dnadiff.device import resolve_device
from dnadiff.experiments.record import RESULTS, machine_info, write_results
from dnadiff.sampling import Denoiser, all_mask, ancestral_sample, ar_sample, make_generator

TOK = Tokenizer()


def load_models(
    args: argparse.Namespace, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module | None, dict, int]:
    """(MDLM model, AR model or None, MDLM objective metadata, default length)."""
    meta: dict = {"schedule": "loglinear", "eps": 1e-3}
    length = 128
    if args.ckpt:
        from dnadiff.checkpoint import load_model, read_metadata

        info = read_metadata(args.ckpt)
        if info["objective"].get("name") != "mdlm":
            raise SystemExit(f"--ckpt must be an MDLM checkpoint, got objective {info['objective'].get('name')!r}")
        meta = info["objective"]
        length = int((info.get("config") or {}).get("data", {}).get("seq_len", length))
        mdlm = load_model(args.ckpt)
    else:
        torch.manual_seed(0)
        mdlm = build_model("caduceus_ps").eval()
    ar = None
    if args.ar_ckpt:
        from dnadiff.checkpoint import load_model, read_metadata

        if read_metadata(args.ar_ckpt)["objective"].get("name") != "ar":
            raise SystemExit("--ar-ckpt must be an AR (objective ar) checkpoint")
        ar = load_model(args.ar_ckpt)
    elif not args.ckpt:
        torch.manual_seed(0)
        ar = build_model("mamba").eval()
    return mdlm.to(device), None if ar is None else ar.to(device), meta, length


def timed(fn, device: torch.device) -> tuple[float, object]:
    """Wall time of fn() (synchronising CUDA), and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def speed_table(mdlm, ar, schedule, length: int, batch: int, repeats: int, device: torch.device) -> list[dict]:
    """sequences/s of each sampler at equal length and batch, best of ``repeats``."""
    den = Denoiser(mdlm, TOK.mask_id)
    runs = {
        "ancestral (uncached), T=L": lambda g: ancestral_sample(
            den, all_mask(batch, length, TOK.mask_id, device), length, schedule, TOK.mask_id, generator=g
        ),
        "cached ancestral, T=L": lambda g: ancestral_sample(den, all_mask(batch, length, TOK.mask_id, device), length,
                                                           schedule, TOK.mask_id, cache=True, generator=g),
        "cached ancestral, T=4L": lambda g: ancestral_sample(den, all_mask(batch, length, TOK.mask_id, device),
                                                            4 * length, schedule, TOK.mask_id, cache=True, generator=g),
    }
    if ar is not None:
        runs["AR recurrent (step)"] = lambda g: ar_sample(ar, batch, length, generator=g, recurrent=True)
        runs["AR full forward per token"] = lambda g: ar_sample(ar, batch, length, generator=g, recurrent=False)
    rows = []
    for name, fn in runs.items():
        best, out = float("inf"), None
        for r in range(repeats):
            seconds, out = timed(lambda: fn(make_generator(r, device)), device)
            best = min(best, seconds)
        rows.append({"sampler": name, "seconds": best, "sequences_per_second": batch / best,
                     "mean_nfe_per_sequence": float(out.nfe_per_sequence.float().mean()), "network_calls": out.nfe})
        print(f"  {name:<28s} {batch / best:9.2f} seq/s  NFE/seq {rows[-1]['mean_nfe_per_sequence']:7.1f}", flush=True)
    ref = rows[0]["sequences_per_second"]
    for row in rows:
        row["speedup_vs_uncached"] = row["sequences_per_second"] / ref
    return rows


def heldout_windows(length: int, n: int) -> list[str]:
    """Up to n test-split windows of the hg38 chr2 slice (the default data config's block rule)."""
    from dnadiff.data.sources import GenomeSource
    from dnadiff.resources import shared_data_dir

    shared = shared_data_dir()
    fasta = shared / "genome" / "hg38_chr2_1-2000000.fa" if shared else None
    cfg = {"fasta": str(fasta) if fasta else None, "seq_len": length, "max_eval_windows": n}
    ds = GenomeSource.from_config(cfg).dataset("test")
    return [TOK.decode(ds[i]["input_ids"]) for i in range(len(ds))]


def quality_sweep(mdlm, ar, schedule, length: int, n: int, batch: int, device: torch.device) -> list[dict]:
    """k-mer JS to held-out windows (and generative PPL under ``ar``) against NFE, T = 8, 16, ..., L."""
    from dnadiff.metrics.oracle import generative_perplexity

    reference = heldout_windows(length, 512)
    steps_list = [t for t in (2**k for k in range(3, 20)) if t < length] + [length]
    den = Denoiser(mdlm, TOK.mask_id)
    rows = []
    for steps in steps_list:
        gen = make_generator(0, device)
        seqs, nfes = [], []
        for b0 in range(0, n, batch):
            out = ancestral_sample(den, all_mask(min(batch, n - b0), length, TOK.mask_id, device), steps, schedule,
                                   TOK.mask_id, cache=True, generator=gen)
            seqs += TOK.decode(out.ids)
            nfes += out.nfe_per_sequence.tolist()
        row = {"steps": steps, "mean_nfe_per_sequence": float(np.mean(nfes)), "kmer_js": kmer_js(seqs, reference)}
        row["generative_perplexity"] = generative_perplexity(ar, seqs) if ar is not None else None
        rows.append(row)
        ppl = f"{row['generative_perplexity']:.3f}" if row["generative_perplexity"] else "-"
        print(f"  T={steps:<6d} NFE/seq {row['mean_nfe_per_sequence']:7.1f}  JS k=3 {row['kmer_js']['3']:.4f}  "
              f"k=6 {row['kmer_js']['6']:.4f}  gen PPL {ppl}", flush=True)
    if ar is not None:
        rows.append({"steps": None, "reference": "held-out windows",
                     "generative_perplexity": generative_perplexity(ar, reference[:n])})
    return rows


def plot(result: dict, path: Path) -> None:
    """Speed bars (ratio to uncached) and, with quality rows, k-mer JS against NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    quality = [r for r in result["quality"] or [] if r.get("steps")]
    fig, axes = plt.subplots(1, 2 if quality else 1, figsize=(12 if quality else 7, 4))
    axes = np.atleast_1d(axes)
    names = [r["sampler"] for r in result["speed"]]
    ratios = [r["speedup_vs_uncached"] for r in result["speed"]]
    axes[0].barh(names, ratios)
    for y, v in enumerate(ratios):
        axes[0].text(v, y, f" {v:.2f}x", va="center", fontsize=8)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set_xlabel("sequences/s relative to uncached ancestral (T = L), log scale")
    axes[0].set_title(f"L = {result['config']['length']}, batch {result['config']['batch_size']}")
    if quality:
        nfe = [r["mean_nfe_per_sequence"] for r in quality]
        for k in ("1", "3", "6"):
            axes[1].plot(nfe, [r["kmer_js"][k] for r in quality], marker="o", label=f"k = {k}")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("NFE per sequence (cached sampler)")
        axes[1].set_ylabel("k-mer JS to held-out windows (bits)")
        axes[1].legend()
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="MDLM checkpoint (python -m dnadiff.pretrain); enables the quality sweep")
    parser.add_argument("--ar-ckpt", help="AR checkpoint: recurrent sampling speed and generative perplexity")
    parser.add_argument("--length", type=int, help="sequence length L (default: the checkpoint's seq_len, else 128)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=64, help="samples per T in the quality sweep")
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on shared cores)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    mdlm, ar, objective, default_length = load_models(args, device)
    length = args.length or default_length
    schedule = build_schedule(objective.get("schedule", "loglinear"), float(objective.get("eps", 1e-3)))
    print(f"sampling benchmark: L = {length}, batch {args.batch_size}, device {device}", flush=True)
    with torch.no_grad():
        speed = speed_table(mdlm, ar, schedule, length, args.batch_size, args.repeats, device)
        quality = None
        if args.ckpt:
            quality = quality_sweep(mdlm, ar, schedule, length, args.num_samples, args.batch_size, device)
    result = {
        "machine": machine_info(device),
        "config": {"ckpt": args.ckpt, "ar_ckpt": args.ar_ckpt, "length": length, "batch_size": args.batch_size,
                   "num_samples": args.num_samples, "repeats": args.repeats,
                   "models": "checkpoints" if args.ckpt else "random-init tiny caduceus_ps (MDLM) and mamba (AR)"},
        "reference": "ancestral (uncached), T=L, measured in this run",
        "speed": speed,
        "quality": quality,
        "note": None if args.ckpt else "quality columns need trained checkpoints: rerun with --ckpt (and --ar-ckpt)",
    }
    write_results(result, args.out.with_suffix(""))
    png = args.out.with_suffix(".png")
    plot(result, png)
    print(f"\n{'sampler':<28s} {'seq/s':>9s} {'x uncached':>10s} {'NFE/seq':>8s} {'net calls':>9s}")
    for r in speed:
        print(f"{r['sampler']:<28s} {r['sequences_per_second']:9.2f} {r['speedup_vs_uncached']:10.2f} "
              f"{r['mean_nfe_per_sequence']:8.1f} {r['network_calls']:9d}")
    if result["note"]:
        print(result["note"])
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
