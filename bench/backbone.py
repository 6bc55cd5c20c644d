"""Training-step throughput and peak memory of the full Caduceus-PS LM (issue 4).

One training step = forward + cross-entropy + backward of the whole LM (embedding, d_model 256,
n_layer 4 RCPS BiMamba blocks, RC-equivariant head) on real hg38 windows (the embedded
chr2 sample). Every figure is also given as a ratio against a reference measured in the same run:

- ``--device cpu`` (default): ``cpu_fused`` (what ``auto`` picks on CPU: the fused C++ mixer)
  against today's ``torch`` backend (the reference of the ratios; ``--baseline-tree`` runs it on
  a checkout of the code before issue 15, exactly today's); ``--with-ref`` /
  ``--with-mambapy`` add the sequential loop and mambapy's parallel scan (``mambapy.pscan``;
  it materialises (batch, length, d_inner, d_state) tensors, so only up to
  ``--mambapy-max-length``). Every row runs with 1 and 2 threads (``--threads``) in a fresh
  subprocess, so that its peak RSS increase is its own. The ``cpu_fused`` worker also measures
  the roofline, the machine's fp32 matmul GFLOP/s (best of square 2048 and 4096 products) at
  the same thread count right before its steps, counts the model's FLOPs per step
  (torch.utils.flop_counter for every matmul, forward and backward, plus the fused kernels'
  arithmetic: 22 FLOPs per scan state element and direction, 6 per conv tap; exp counted as one)
  and profiles one step per op (torch.profiler, self CPU time). Targets (issue 15): step >= 3x
  today's torch backend and >= 35% of the roofline.
- ``--device cuda``: our model (scan backend ``cuda`` when mamba-ssm imports, else ``torch``;
  with causal-conv1d the mixers run mamba-ssm's fused ``mamba_inner_fn``, and a row
  "unfused" calls the conv and scan kernels one by one instead) against a reference stack of
  mamba-ssm's own ``Mamba`` modules (mamba_ssm.modules.mamba_simple) with the same sizes,
  wrapped BiMamba-style (the reverse Mamba shares in_proj/out_proj) and RCPS-style (x and
  rc(x) streams, same head); the reference is skipped, saying why, when mamba_ssm does not
  import. Peak memory is ``torch.cuda.max_memory_allocated``.

    python bench/backbone.py                          # CPU -> bench/results/backbone_cpu.json
    python bench/backbone.py --threads 1 --lengths 1024 --repeats 2
    python bench/backbone.py --device cuda --out bench/results/backbone_gpu.json
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
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
from dnadiff.experiments.record import machine_info, write_results
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


def roofline_gflops(repeats: int = 3) -> dict:
    """fp32 matmul GFLOP/s of this machine at the current thread count (best over sizes and runs)."""
    best = {}
    for n in (2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        best[n] = 2 * n**3 / min(times) / 1e9
    return {"gflops": max(best.values()), "by_size": best}


def kernel_flops(model: nn.Module, batch: int, length: int) -> int:
    """Arithmetic of the fused kernels per training step (not seen by the FLOP counter): the scan
    22 FLOPs per state element (forward 7: dt*A, exp, a*h, B term, C term; backward 15, the
    states' recomputation not counted) and the conv 6 per tap (2 forward, 4 backward)."""
    from dnadiff.models.mamba import SelectiveSSM

    rows = batch * (2 if getattr(model, "rc_equivariant", False) else 1)
    total = 0
    for m in model.modules():
        if isinstance(m, SelectiveSSM):
            total += rows * length * m.d_inner * (22 * m.d_state + 6 * m.d_conv)
    return total


def step_flops(model: nn.Module, ids: torch.Tensor) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    targets = ids.roll(1, dims=1)
    with FlopCounterMode(display=False) as counter:
        logits = model(ids)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
    model.zero_grad(set_to_none=True)
    matmul = int(counter.get_total_flops())
    kernels = kernel_flops(model, *ids.shape)
    return {"matmul": matmul, "kernels": kernels, "total": matmul + kernels}


def profile_step(model: nn.Module, ids: torch.Tensor, top: int = 25) -> list[dict]:
    """Self CPU time per op of one training step (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile

    targets = ids.roll(1, dims=1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        logits = model(ids)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
    model.zero_grad(set_to_none=True)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 4),
             "share": round(e.self_cpu_time_total / total, 4)} for e in events[:top]]


def cpu_worker(spec: dict) -> dict:
    """Run one CPU configuration in this (fresh) process; returns its measurements."""
    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    backend = spec["backend"]
    if backend == "mambapy":
        mamba_module.selective_scan = mambapy_selective_scan
    model_backend = "torch" if backend == "mambapy" else backend
    model = build_model("caduceus_ps", scan_backend=model_backend, **SIZES)
    ids = genome_batch(spec["batch"], spec["length"])
    extra = {}
    if spec.get("roofline"):
        extra["roofline"] = roofline_gflops()
    base = _rss_mib()
    times = time_steps(model, ids, spec["repeats"], "cpu", spec["warmup"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec.get("roofline"):
        extra["flops_per_step"] = step_flops(model, ids)
        extra["profile"] = profile_step(model, ids)
    try:
        from dnadiff.models.kernels.scan import resolve_backend

        resolved = resolve_backend(model_backend, ids)
    except ImportError:  # a checkout from before the cpu_fused backend (--baseline-tree)
        resolved = model_backend
    return {"times_s": times, "peak_mem_mib": round(peak - base, 1), "resolved_backend": resolved, **extra}


def run_cpu_config(spec: dict, timeout: float) -> dict:
    """Start a subprocess for one configuration (clean peak-RSS accounting, bounded time)."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    if spec.get("tree"):  # run this row on another checkout of dnadiff (e.g. the code before issue 15)
        env["PYTHONPATH"] = os.pathsep.join([spec["tree"], env.get("PYTHONPATH", "")])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
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


def summarise(row: dict, batch: int, length: int) -> dict:
    """Best-of-N step time (robust to other load on shared machines; the median is kept too)."""
    if "times_s" in row:
        best = min(row["times_s"])
        row["step_s"] = round(best, 4)
        row["step_s_median"] = round(statistics.median(row["times_s"]), 4)
        row["tokens_per_s"] = round(batch * length / best, 1)
    return row


def add_ratios(rows: list[dict], reference: str) -> None:
    """tokens/s and memory ratios against the reference row of the same length (and threads)."""
    for row in rows:
        ref = next((r for r in rows if r["length"] == row["length"] and r["impl"] == reference
                    and r.get("threads") == row.get("threads")), None)
        if ref is None or "tokens_per_s" not in ref or "tokens_per_s" not in row:
            continue
        row["speed_vs_ref"] = round(row["tokens_per_s"] / ref["tokens_per_s"], 3)
        row["mem_vs_ref"] = round(row["peak_mem_mib"] / ref["peak_mem_mib"], 3) if ref["peak_mem_mib"] > 0 else None


def print_table(rows: list[dict], reference: str) -> None:
    print(f"{'impl':<22}{'thr':>4}{'batch':>6}{'length':>8}{'step s':>10}{'tok/s':>11}{'peak MiB':>10}"
          f"{'speed/ref':>11}{'mem/ref':>9}{'GFLOP/s':>9}{'roofline':>9}")
    for r in rows:
        lead = f"{r['impl']:<22}{r.get('threads', ''):>4}{r['batch']:>6}{r['length']:>8}"
        if "tokens_per_s" not in r:
            print(f"{lead}  skipped: {r['skipped']}")
            continue
        roof = f"{r['roofline_fraction']:>9.1%}" if "roofline_fraction" in r else f"{'':>9}"
        print(
            f"{lead}{r['step_s']:>10.3f}{r['tokens_per_s']:>11.0f}"
            f"{r['peak_mem_mib']:>10.0f}{r.get('speed_vs_ref', float('nan')):>11.3f}{r.get('mem_vs_ref') or float('nan'):>9.3f}"
            f"{r.get('gflops_achieved', float('nan')):>9.1f}{roof}"
        )
    print(f"(ratios against '{reference}' at the same length and thread count)")
    for r in rows:
        if "roofline" in r:
            f = r["flops_per_step"]
            print(f"roofline, {r['threads']} thread(s): fp32 matmul {r['roofline']['gflops']:.1f} GFLOP/s; model "
                  f"{f['total'] / 1e9:.1f} GFLOP per step ({f['matmul'] / 1e9:.1f} matmul + {f['kernels'] / 1e9:.1f} "
                  f"fused kernels), {f['total'] / (r['batch'] * r['length']) / 1e6:.1f} MFLOP/token")
    for r in rows:
        if "profile" in r:
            print(f"\nper-op profile of one cpu_fused step ({r['threads']} thread(s), L {r['length']}): self CPU time")
            for e in r["profile"][:15]:
                print(f"  {e['op'][:46]:<46}{e['calls']:>6}{e['self_s']:>9.3f} s{e['share']:>8.1%}")


def cpu_targets(rows: list[dict]) -> list[dict]:
    """Issue 15's step targets, each met or not."""
    out = []
    for r in rows:
        if r["impl"] != "cpu_fused" or "speed_vs_ref" not in r:
            continue
        out.append({"target": "step >= 3x today's torch backend", "threads": r["threads"], "length": r["length"],
                    "measured": r["speed_vs_ref"], "met": r["speed_vs_ref"] >= 3.0})
        if "roofline_fraction" in r:
            out.append({"target": "step >= 35% of the fp32 matmul roofline", "threads": r["threads"],
                        "length": r["length"], "measured": r["roofline_fraction"], "met": r["roofline_fraction"] >= 0.35})
    return out


CPU_ROWS = {"cpu_fused": "cpu_fused", "torch (today)": "torch", "ref": "ref", "mambapy": "mambapy"}
CPU_REFERENCE = "torch (today)"


def bench_cpu(args: argparse.Namespace) -> tuple[list[dict], str]:
    names = ["cpu_fused", "torch (today)"]
    names += ["ref"] if args.with_ref else []
    names += ["mambapy"] if args.with_mambapy else []
    rows = []
    for threads in args.threads:
        for length, batch in zip(args.lengths, args.batches):
            for name in names:
                backend = CPU_ROWS[name]
                row = {"impl": name, "backend": backend, "batch": batch, "length": length, "threads": threads}
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
                        backend=backend, batch=batch, length=length, threads=threads,
                        repeats=1 if long_run else args.repeats, warmup=0 if long_run else 1,
                        roofline=backend == "cpu_fused",
                        tree=args.baseline_tree if name == CPU_REFERENCE else None,
                    )
                    row.update(run_cpu_config(spec, args.timeout))
                rows.append(summarise(row, batch, length))
                print(rows[-1].get("tokens_per_s", rows[-1].get("skipped")), name, length, threads, flush=True)
    for row in rows:  # FLOPs and roofline of the cpu_fused row at the same shape and thread count
        src = next((r for r in rows if r["impl"] == "cpu_fused" and r["length"] == row["length"]
                    and r["threads"] == row["threads"] and "flops_per_step" in r), None)
        if src is not None and "step_s" in row:
            row["gflops_achieved"] = round(src["flops_per_step"]["total"] / row["step_s"] / 1e9, 2)
            row["roofline_fraction"] = round(row["gflops_achieved"] / src["roofline"]["gflops"], 4)
    return rows, CPU_REFERENCE


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
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch per length (default 8 each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-step-length", type=int, default=16384,
                        help="CPU: from this length on, time one step without warm-up (a step takes minutes)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU: thread counts to run each row with")
    parser.add_argument("--with-ref", action="store_true", help="CPU: add the sequential ref scan (slow)")
    parser.add_argument("--baseline-tree", default=None,
                        help="CPU: a checkout of dnadiff to run the 'torch (today)' row on (e.g. `git worktree add "
                             "/tmp/base <commit before issue 15>`); default: this tree's torch backend")
    parser.add_argument("--with-mambapy", action="store_true", help="CPU: add mambapy's pscan")
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
    uptime_start = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows, reference = (bench_cuda if args.device == "cuda" else bench_cpu)(args)
    add_ratios(rows, reference)
    if args.device == "cpu":
        for row in rows:
            src = next((r for r in rows if r["impl"] == "cpu_fused" and r["length"] == row["length"]
                        and r.get("threads") == row.get("threads") and "roofline" in r), None)
            if src is not None and "gflops_achieved" in row:
                row["roofline_fraction"] = round(row["gflops_achieved"] / src["roofline"]["gflops"], 4)
    print_table(rows, reference)
    goals = cpu_targets(rows) if args.device == "cpu" else []
    for t in goals:
        print(f"{'MET    ' if t['met'] else 'NOT MET'} {t['target']} (threads {t['threads']}, L {t['length']}): {t['measured']}")
    out = args.out or RESULTS / f"backbone_{args.device}.json"
    result = {
        "benchmark": "backbone training step (forward + cross-entropy + backward), full Caduceus-PS LM",
        "model": {"name": "caduceus_ps", **SIZES, "d_state": 16, "expand": 2, "dtype": "float32"},
        "data": "random real windows of the embedded hg38 chr2:1-2,000,000 sample",
        "reference": reference,
        "repeats": args.repeats,
        "timing": "step_s / tokens_per_s: best of the timed steps (after warm-up); step_s_median beside it",
        "command": "python " + " ".join(sys.argv),
        "baseline_tree": getattr(args, "baseline_tree", None),
        "settings": {
            "lengths": args.lengths, "batches": args.batches, "threads": getattr(args, "threads", None),
            "ref_max_length": args.ref_max_length,
            "mambapy_max_length": args.mambapy_max_length, "single_step_length": args.single_step_length,
        },
        "peak_memory": "RSS increase during the steps (CPU, per subprocess)" if args.device == "cpu"
        else "torch.cuda.max_memory_allocated minus model/data",
        "machine": {**machine_info(args.device), "load_average_1m_at_start": load_at_start,
                    "uptime_start": uptime_start,
                    "uptime_end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()},
        "rows": rows,
        "targets": goals,
    }
    print(f"wrote {write_results(result, out.with_suffix(''))}")


if __name__ == "__main__":
    main()
