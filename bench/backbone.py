"""Training-step throughput and peak memory of the full Caduceus-PS LM (issue 4).

One training step = forward + cross-entropy + backward of the whole LM (embedding, d_model 256,
n_layer 4 RCPS BiMamba blocks, RC-equivariant head) on real hg38 windows (the embedded
chr2 sample). Every figure is also given as a ratio against a reference measured in the same run:

- ``--device cpu`` (default): scan backends ``torch`` (the reference), ``ref`` (sequential loop;
  only at lengths where it finishes in reasonable time, see ``--ref-max-length``) and a copy of
  the model whose scan is mambapy's parallel scan (``mambapy.pscan``; it materialises
  (batch, length, d_inner, d_state) tensors, so only up to ``--mambapy-max-length``). Each
  configuration runs in a fresh subprocess so that the peak RSS increase is its own.
- ``--device cuda``: our model (scan backend ``cuda`` when mamba-ssm imports, else ``torch``;
  with causal-conv1d the mixers run mamba-ssm's fused ``mamba_inner_fn``, and a row
  "unfused" calls the conv and scan kernels one by one instead) against a reference stack of
  mamba-ssm's own ``Mamba`` modules (mamba_ssm.modules.mamba_simple) with the same sizes,
  wrapped BiMamba-style (the reverse Mamba shares in_proj/out_proj) and RCPS-style (x and
  rc(x) streams, same head); the reference is skipped, saying why, when mamba_ssm does not
  import. Peak memory is ``torch.cuda.max_memory_allocated``.

    python bench/backbone.py                          # CPU -> bench/results/backbone_cpu.json
    python bench/backbone.py --device cuda --out bench/results/backbone_gpu.json
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dnadiff.models.mamba as mamba_module
from dnadiff import Tokenizer
from dnadiff.models import build_model
from dnadiff.resources import default_fasta

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = dict(d_model=256, n_layer=4)


@functools.lru_cache(maxsize=1)
def _genome_sequence() -> str:
    """The embedded hg38 chr2 sample as one string (bgzip is plain gzip to a sequential reader)."""
    with gzip.open(default_fasta(), "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def genome_batch(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """(batch, length) ids of random real windows from the embedded hg38 chr2 sample (past the N telomere)."""
    seq = _genome_sequence()
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(20_000, len(seq) - length, (batch,), generator=g).tolist()
    return Tokenizer().encode_batch([seq[s : s + length] for s in starts])


def mambapy_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """selective_scan_fn semantics on top of mambapy's parallel scan (pscan over (b, l, d, n))."""
    from mambapy.pscan import pscan

    dtype = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dl = delta.transpose(1, 2)  # (b, l, d)
    decay = torch.exp(dl.unsqueeze(-1) * A.float())  # (b, l, d, n)
    drive = (dl * u.transpose(1, 2)).unsqueeze(-1) * B.float().transpose(1, 2).unsqueeze(2)
    hs = pscan(decay, drive)  # (b, l, d, n)
    y = (hs @ C.float().transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (b, d, l)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_steps(model: nn.Module, ids: torch.Tensor, repeats: int, device: str, warmup: int = 1) -> list[float]:
    """Seconds per training step (forward + cross-entropy + backward), after ``warmup`` untimed steps."""
    targets = ids.roll(1, dims=1)

    def one() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = model(ids)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(warmup):
        one()
    return [one() for _ in range(repeats)]


def cpu_worker(spec: dict) -> dict:
    """Run one CPU configuration in this (fresh) process; returns its measurements."""
    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    backend = spec["backend"]
    if backend == "mambapy":
        mamba_module.selective_scan = mambapy_selective_scan
    model = build_model("caduceus_ps", scan_backend="torch" if backend == "mambapy" else backend, **SIZES)
    ids = genome_batch(spec["batch"], spec["length"])
    base = _rss_mib()
    times = time_steps(model, ids, spec["repeats"], "cpu", spec["warmup"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"times_s": times, "peak_mem_mib": round(peak - base, 1)}


def run_cpu_config(spec: dict, timeout: float) -> dict:
    """Start a subprocess for one configuration (clean peak-RSS accounting, bounded time)."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"did not finish within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


class _RefBiMamba(nn.Module):
    """mamba-ssm Mamba modules wrapped BiMamba-style: the reverse one shares in_proj/out_proj."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        from mamba_ssm.modules.mamba_simple import Mamba

        self.fwd = Mamba(d_model, d_state=16, d_conv=4, expand=2)
        self.rev = Mamba(d_model, d_state=16, d_conv=4, expand=2)
        self.rev.in_proj = self.fwd.in_proj
        self.rev.out_proj = self.fwd.out_proj

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fwd(h) + self.rev(h.flip(1)).flip(1)


class _RefCaduceusPS(nn.Module):
    """Reference RCPS LM on mamba-ssm modules: streams x and rc(x) through shared pre-norm blocks."""

    def __init__(self, d_model: int, n_layer: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(16, d_model)
        self.norms = nn.ModuleList(nn.RMSNorm(d_model, eps=1e-5) for _ in range(n_layer))
        self.mixers = nn.ModuleList(_RefBiMamba(d_model) for _ in range(n_layer))
        self.norm_f = nn.RMSNorm(d_model, eps=1e-5)
        comp = torch.arange(16)
        comp[:12] = Tokenizer().complement_map
        self.register_buffer("comp", comp)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b = ids.shape[0]
        h = self.embedding(torch.cat([ids, self.comp[ids.flip(1)]], dim=0))
        for norm, mixer in zip(self.norms, self.mixers):
            h = h + mixer(norm(h))
        h = self.norm_f(h)
        w = self.embedding.weight
        logits = F.linear(h[:b], w) + F.linear(h[b:].flip(1), w[self.comp])
        return logits[..., :12]


def run_cuda_config(name: str, make, ids: torch.Tensor, repeats: int) -> dict:
    """One GPU configuration in-process: step times and peak allocated memory."""
    try:
        model = make().cuda()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        times = time_steps(model, ids, repeats, "cuda")
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    except Exception as exc:  # OOM or a missing kernel: record it, keep benchmarking
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    finally:
        torch.cuda.empty_cache()
    return {"times_s": times, "peak_mem_mib": round(peak, 1), "n_params": sum(p.numel() for p in model.parameters())}


def machine_info(device: str) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), platform.processor()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summarise(row: dict, batch: int, length: int) -> dict:
    """Best-of-N step time (robust to other load on shared machines; the median is kept too)."""
    if "times_s" in row:
        best = min(row["times_s"])
        row["step_s"] = round(best, 4)
        row["step_s_median"] = round(statistics.median(row["times_s"]), 4)
        row["tokens_per_s"] = round(batch * length / best, 1)
    return row


def add_ratios(rows: list[dict], reference: str) -> None:
    """tokens/s and memory ratios against the reference row of the same length."""
    for row in rows:
        ref = next((r for r in rows if r["length"] == row["length"] and r["impl"] == reference), None)
        if ref is None or "tokens_per_s" not in ref or "tokens_per_s" not in row:
            continue
        row["speed_vs_ref"] = round(row["tokens_per_s"] / ref["tokens_per_s"], 3)
        row["mem_vs_ref"] = round(row["peak_mem_mib"] / ref["peak_mem_mib"], 3) if ref["peak_mem_mib"] > 0 else None


def print_table(rows: list[dict], reference: str) -> None:
    print(f"{'impl':<22}{'batch':>6}{'length':>8}{'step s':>10}{'tok/s':>11}{'peak MiB':>10}{'speed/ref':>11}{'mem/ref':>9}")
    for r in rows:
        if "tokens_per_s" not in r:
            print(f"{r['impl']:<22}{r['batch']:>6}{r['length']:>8}  skipped: {r['skipped']}")
            continue
        print(
            f"{r['impl']:<22}{r['batch']:>6}{r['length']:>8}{r['step_s']:>10.3f}{r['tokens_per_s']:>11.0f}"
            f"{r['peak_mem_mib']:>10.0f}{r.get('speed_vs_ref', float('nan')):>11.3f}{r.get('mem_vs_ref') or float('nan'):>9.3f}"
        )
    print(f"(ratios against '{reference}' at the same length)")


def bench_cpu(args: argparse.Namespace) -> tuple[list[dict], str]:
    rows = []
    for length, batch in zip(args.lengths, args.batches):
        for backend in ("torch", "ref", "mambapy"):
            row = {"impl": f"dnadiff scan={backend}", "backend": backend, "batch": batch, "length": length}
            if backend == "ref" and length > args.ref_max_length:
                row["skipped"] = f"ref scan is a Python loop over positions; not run above length {args.ref_max_length}"
            elif backend == "mambapy" and length > args.mambapy_max_length:
                row["skipped"] = (
                    f"mambapy materialises (batch, length, d_inner, d_state) fp32 tensors; not run above length "
                    f"{args.mambapy_max_length} on this machine's memory"
                )
            elif backend == "mambapy" and not _has("mambapy"):
                row["skipped"] = "mambapy is not installed (pip install dnadiff[bench])"
            else:
                long_run = length >= args.single_step_length
                spec = dict(
                    backend=backend, batch=batch, length=length, threads=args.threads,
                    repeats=1 if long_run else args.repeats, warmup=0 if long_run else 1,
                )
                row.update(run_cpu_config(spec, args.timeout))
            rows.append(summarise(row, batch, length))
            print(rows[-1].get("tokens_per_s", rows[-1].get("skipped")), row["impl"], length, flush=True)
    return rows, "dnadiff scan=torch"


def bench_cuda(args: argparse.Namespace) -> tuple[list[dict], str]:
    from dnadiff.models.kernels.scan import available_backends, fused_mixer

    ours = "cuda" if "cuda" in available_backends() else "torch"
    fused = fused_mixer(torch.zeros(1, device="cuda"), "cuda") is not None
    ref_ok, why = _has("mamba_ssm"), "mamba_ssm does not import here (pip install dnadiff[cuda])"
    rows = []
    for length, batch in zip(args.lengths, args.batches):
        ids = genome_batch(batch, length).cuda()
        torch.manual_seed(0)
        configs = [("mamba_ssm Mamba reference", lambda: _RefCaduceusPS(**SIZES))] if ref_ok else []
        configs.append((f"dnadiff scan={ours}", lambda: build_model("caduceus_ps", scan_backend=ours, **SIZES)))
        if ours == "cuda" and fused:
            configs.append(("dnadiff scan=cuda unfused", lambda: build_model("caduceus_ps", scan_backend="cuda", **SIZES)))
        if ours == "cuda":
            configs.append(("dnadiff scan=torch", lambda: build_model("caduceus_ps", scan_backend="torch", **SIZES)))
        if not ref_ok:
            rows.append({"impl": "mamba_ssm Mamba reference", "batch": batch, "length": length, "skipped": why})
        for name, make in configs:
            row = {"impl": name, "batch": batch, "length": length}
            # "unfused": conv and scan kernels called one by one instead of mamba_inner_fn
            mamba_module.fused_mixer = (lambda x, backend: None) if name.endswith("unfused") else fused_mixer
            row.update(run_cuda_config(name, make, ids, args.repeats))
            rows.append(summarise(row, batch, length))
            print(rows[-1].get("tokens_per_s", rows[-1].get("skipped")), name, length, flush=True)
    return rows, "mamba_ssm Mamba reference" if ref_ok else f"dnadiff scan={ours}"


def _has(module: str) -> bool:
    try:
        __import__(module)
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/backbone_<device>.json)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 16384])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch per length (default 8 each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-step-length", type=int, default=16384,
                        help="CPU: from this length on, time one step without warm-up (a step takes minutes)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ref-max-length", type=int, default=1024)
    parser.add_argument("--mambapy-max-length", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per CPU configuration")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(cpu_worker(json.loads(args.worker))))
        return
    args.batches = args.batches or [8] * len(args.lengths)
    if len(args.batches) != len(args.lengths):
        parser.error(f"--batches needs one value per length ({len(args.lengths)}), got {args.batches}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    load_at_start = os.getloadavg()[0]
    rows, reference = (bench_cuda if args.device == "cuda" else bench_cpu)(args)
    add_ratios(rows, reference)
    print_table(rows, reference)
    out = args.out or RESULTS / f"backbone_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "backbone training step (forward + cross-entropy + backward), full Caduceus-PS LM",
        "model": {"name": "caduceus_ps", **SIZES, "d_state": 16, "expand": 2, "dtype": "float32"},
        "data": "random real windows of the embedded hg38 chr2:1-2,000,000 sample",
        "reference": reference,
        "repeats": args.repeats,
        "timing": "step_s / tokens_per_s: best of the timed steps (after warm-up); step_s_median beside it",
        "command": "python " + " ".join(sys.argv),
        "settings": {
            "lengths": args.lengths, "batches": args.batches, "ref_max_length": args.ref_max_length,
            "mambapy_max_length": args.mambapy_max_length, "single_step_length": args.single_step_length,
        },
        "peak_memory": "RSS increase during the steps (CPU, per subprocess)" if args.device == "cpu"
        else "torch.cuda.max_memory_allocated minus model/data",
        "machine": {**machine_info(args.device), "load_average_1m_at_start": load_at_start},
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
