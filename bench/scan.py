"""Throughput and memory of one selective scan at Mamba-layer shapes, forward+backward and forward only.

Shapes: d_model 256 -> d_inner 512, d_state 16, delta_softplus, D and z given, fp32, inputs in
mamba-ssm's (batch, d, L) layout. Cases (default): batch 8 x L 1024 and batch 1 x L 131072.

CPU (default): ``cpu_fused`` (dnadiff's fused C++ kernel) vs ``torch`` (the chunked pure-PyTorch
backend, the reference of every ratio) vs mambapy's Blelloch ``pscan`` composed into the same scan
(the ``[bench]`` extra; rows say why when it is missing or its materialised (batch, L, d, n)
tensors would not fit in memory) vs ``ref`` (the sequential loop; L 1024 only). Every row is
measured with 1 and with 2 torch threads (``--threads``). GPU (``--device cuda``): ``cuda``
(mamba-ssm's kernel) vs ``torch``.

Every row runs in a fresh subprocess, so its peak RSS is its own and an out-of-memory ends one row,
not the run. Memory: ``beyond_inputs_gib`` = peak RSS minus the RSS once the inputs exist; for
fwd+bwd it includes what any implementation must hold (the output, the output gradient the
benchmark feeds in, the input gradients: ``required_gib``), and ``workspace_gib`` is the rest.
Ratios are against ``torch`` in the same run and thread count: ``speedup = seconds(torch) /
seconds(method)``. The table ends with the issue's targets (fwd+bwd >= 5x torch, fwd >= 8x,
L 131072 at batch 1 within 1 GiB beyond the inputs), each met or not.

    python bench/scan.py                    # CPU -> bench/results/scan_cpu.json
    python bench/scan.py --threads 1 --cases 8x1024 --methods cpu_fused,torch
    python bench/scan.py --device cuda      # GPU -> bench/results/scan_gpu.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

D_INNER, D_STATE = 512, 16
CASES = [(8, 1024), (1, 131072)]
MODES = ("fwdbwd", "fwd")
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"fwdbwd": 5.0, "fwd": 8.0}
MEMORY_TARGET_GIB = 1.0


def make_inputs(batch: int, length: int, device: str, seed: int = 0) -> list:
    """Mamba-like inputs: A = -(1..n), dt = softplus(delta + bias) in about [1e-3, 0.1]."""
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    d, n = D_INNER, D_STATE

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    dt0 = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    xs = [rnd(batch, d, length), 0.5 * rnd(batch, d, length), A, rnd(batch, n, length),
          rnd(batch, n, length), torch.ones(d), rnd(batch, d, length), bias]
    return [x.to(device).requires_grad_() for x in xs]


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN201
    """The same scan through mambapy's parallel (Blelloch) ``pscan`` on (b, L, d, n) tensors."""
    import torch
    import torch.nn.functional as F
    from mambapy.pscan import pscan

    dt = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # (b, L, d)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (b, L, d, n)
    drive = (dt * u.transpose(1, 2)).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
    hs = pscan(decay, drive)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    return (y + u * D[:, None]) * F.silu(z)


def _rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def run_case(method: str, mode: str, batch: int, length: int, device: str, repeats: int) -> dict:
    """Time one method on one shape in this (fresh) process."""
    import torch

    from dnadiff.models.kernels.scan import selective_scan

    xs = make_inputs(batch, length, device)
    if method == "mambapy":
        fn = lambda: mambapy_scan(*xs)  # noqa: E731
    else:
        fn = lambda: selective_scan(*xs, delta_softplus=True, backend=method)  # noqa: E731
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base_rss = _rss_gib() if device == "cpu" else 0.0
    times = []
    for i in range(repeats + 1):  # the first run warms up and is not counted (unless repeats == 0)
        sync()
        t0 = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                out = fn()
        else:
            out = fn()
            out.backward(torch.ones_like(out))
        sync()
        if i > 0 or repeats == 0:
            times.append(time.perf_counter() - t0)
        del out
        for x in xs:
            x.grad = None
    best = min(times)
    row = {"method": method, "mode": mode, "batch": batch, "length": length, "status": "ok",
           "seconds": best, "seconds_all": times, "tokens_per_s": batch * length / best}
    if device == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        per_tensor = batch * D_INNER * length * 4 / 2**30
        # fwd: the output; fwd+bwd: output, its gradient, and the gradients of u, delta, z, B, C
        required = per_tensor if mode == "fwd" else 5 * per_tensor + 2 * batch * D_STATE * length * 4 / 2**30
        row.update(peak_rss_gib=peak, beyond_inputs_gib=peak - base_rss, required_gib=required,
                   workspace_gib=peak - base_rss - required)
    else:
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def skip_reason(method: str, mode: str, batch: int, length: int, device: str) -> str:
    """Why a (method, shape) row is not run here ("" when it is)."""
    if method == "ref" and length > 1024:
        return "ref is a Python loop over positions: run at L 1024 only (it is slow)"
    if method == "mambapy":
        if importlib.util.find_spec("mambapy") is None:
            return "mambapy not installed (pip install dnadiff[bench])"
        need = (8 if mode == "fwdbwd" else 4) * batch * length * D_INNER * D_STATE * 4 / 2**30
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        if device == "cpu" and need > 0.8 * avail:
            return (f"mambapy keeps several (batch, L, d, n) fp32 tensors: ~{need:.0f} GiB > 80% of the "
                    f"{avail:.0f} GiB available")
    if method in ("cuda", "cpu_fused"):
        from dnadiff.models.kernels.scan import available_backends

        if method not in available_backends():
            return f"backend {method} is unavailable here"
    return ""


def run_row(args: argparse.Namespace, method: str, mode: str, batch: int, length: int, threads: int) -> dict:
    head = {"method": method, "mode": mode, "batch": batch, "length": length, "threads": threads}
    why = skip_reason(method, mode, batch, length, args.device)
    if not why and method == "mambapy" and args.mambapy_max_length and length > args.mambapy_max_length:
        why = f"skipped at L > {args.mambapy_max_length} (--mambapy-max-length)"
    if why:
        return {**head, "status": "skipped", "reason": why}
    repeats = args.repeats if batch * length <= 8 * 1024 or args.device == "cuda" else 1
    if method == "ref":
        repeats = 0  # one timed run, no warm-up: it takes minutes
    cmd = [sys.executable, __file__, "--repeats", str(repeats), "--_case", method, mode, str(batch), str(length),
           args.device]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**head, "status": "failed", "reason": f"timeout after {args.timeout} s"}
    if res.returncode != 0:
        return {**head, "status": "failed", "reason": res.stderr.strip()[-400:]}
    return {**head, **json.loads(res.stdout.strip().splitlines()[-1])}


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, each met or not, from the rows of this run."""
    out = []
    for r in rows:
        if r["method"] != "cpu_fused" or "speedup" not in r:
            continue
        goal = TARGETS[r["mode"]]
        out.append({"target": f"{r['mode']} >= {goal:g}x torch", "batch": r["batch"], "length": r["length"],
                    "threads": r["threads"], "measured": round(r["speedup"], 2), "met": r["speedup"] >= goal})
        if r["length"] >= 131072 and "beyond_inputs_gib" in r:
            out.append({"target": f"{r['mode']} L {r['length']} within {MEMORY_TARGET_GIB:g} GiB beyond the inputs",
                        "batch": r["batch"], "length": r["length"], "threads": r["threads"],
                        "measured": round(r["beyond_inputs_gib"], 3), "required_gib": round(r["required_gib"], 3),
                        "workspace_gib": round(r["workspace_gib"], 3),
                        "met": r["beyond_inputs_gib"] <= MEMORY_TARGET_GIB})
    return out


def main() -> None:
    """Run every row in a subprocess, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row after a warm-up (best is kept)")
    p.add_argument("--cases", default=None, help="e.g. '8x1024,1x131072' (default: those two)")
    p.add_argument("--methods", default=None, help="comma list (default cpu: cpu_fused,torch,mambapy,ref)")
    p.add_argument("--modes", default="fwdbwd,fwd")
    p.add_argument("--threads", default="1,2", help="torch thread counts, each row measured with each")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    p.add_argument("--mambapy-max-length", type=int, default=None,
                   help="skip mambapy rows above this L (they take minutes each on a small CPU)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--_case", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        method, mode, batch, length, device = args._case
        print(json.dumps(run_case(method, mode, int(batch), int(length), device, args.repeats)))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device here")
    from dnadiff.experiments.record import machine_info, write_results

    info = machine_info(args.device)
    info["uptime_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cases = CASES if args.cases is None else [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",")]
    default_methods = "cpu_fused,torch,mambapy,ref" if args.device == "cpu" else "cuda,torch"
    methods = (args.methods or default_methods).split(",")
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [0]
    rows = []
    for n_threads in threads:
        for batch, length in cases:
            for mode in args.modes.split(","):
                for method in methods:
                    rows.append(run_row(args, method, mode, batch, length, n_threads))
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds_all"})[:300],
                          file=sys.stderr, flush=True)
    base = {(r["mode"], r["batch"], r["length"], r["threads"]): r["seconds"]
            for r in rows if r["method"] == "torch" and r["status"] == "ok"}
    for r in rows:
        ref = base.get((r["mode"], r["batch"], r["length"], r["threads"]))
        if r["status"] == "ok" and ref:
            r["speedup"] = ref / r["seconds"]

    head = (f"{'method':9} {'mode':6} {'thr':>3} {'batch':>5} {'L':>7} {'seconds':>9} {'tokens/s':>10} "
            f"{'speedup':>8} {'beyond in':>9} {'workspace':>9}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        lead = f"{r['method']:9} {r['mode']:6} {r['threads']:>3} {r['batch']:>5} {r['length']:>7}"
        if r["status"] != "ok":
            print(f"{lead} {'-':>9} {'-':>10} {'-':>8} {'-':>9} {'-':>9}  {r['status']}: {r['reason'][:80]}")
            continue
        mem = (f"{r['beyond_inputs_gib']:>7.2f}Gi {r['workspace_gib']:>7.2f}Gi" if "beyond_inputs_gib" in r
               else f"{r.get('peak_gpu_gib', 0):>7.2f}Gi {'':>9}")
        print(f"{lead} {r['seconds']:>9.4f} {r['tokens_per_s']:>10.0f} {r.get('speedup', float('nan')):>8.2f} {mem}")
    goals = targets(rows)
    if goals:
        print("\ntargets (issue 15):")
        for t in goals:
            print(f"  {'MET    ' if t['met'] else 'NOT MET'} {t['target']:<48} batch {t['batch']} L {t['length']} "
                  f"threads {t['threads']}: {t['measured']}")
    info["load_avg_end"] = os.getloadavg()
    info["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = args.out or RESULTS / f"scan_{args.device}.json"
    payload = {"benchmark": "selective scan, forward+backward and forward only", "d_inner": D_INNER,
               "d_state": D_STATE, "dtype": "float32", "layout": "(batch, d, L) as mamba-ssm's selective_scan_fn",
               "reference": "torch backend, same run, same thread count",
               "ratio": "speedup = seconds(torch) / seconds(method); best of the timed runs",
               "memory": "beyond_inputs_gib = peak RSS - RSS with the inputs allocated; required_gib = output "
                         "(+ output gradient and input gradients for fwd+bwd); workspace_gib = the rest",
               "command": "python " + " ".join(sys.argv), "machine": info, "rows": rows, "targets": goals}
    print(f"wrote {write_results(payload, out.with_suffix(''))}")


if __name__ == "__main__":
    main()
