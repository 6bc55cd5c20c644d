"""Forward+backward throughput of one selective scan at Mamba-layer shapes.

Shapes: d_model 256 -> d_inner 512, d_state 16, delta_softplus, D and z given, fp32.
Cases: batch 8 x L 1024, batch 8 x L 16384, batch 1 x L 131072.

CPU (default): ``torch`` backend vs ``ref`` (the sequential reference; L 1024 only, it is
slow) vs mambapy's Blelloch ``pscan`` composed into the same scan (the ``[bench]`` extra;
rows say so when it is missing, or when its materialised (batch, L, d, n) tensors would not
fit in memory). GPU (``--device cuda``): ``cuda`` (mamba-ssm's kernel) vs ``torch``.

Every case runs in a fresh subprocess, so its peak RSS (CPU) or peak allocated GPU memory is
its own and an out-of-memory ends one row, not the run. Ratios are against ``torch`` measured
in the same run: ``x_torch = time(method) / time(torch)`` (> 1 means torch is faster).

    python bench/scan.py --threads 1      # CPU -> bench/results/scan_cpu.json
    python bench/scan.py --device cuda    # GPU -> bench/results/scan_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

D_INNER, D_STATE = 512, 16
CASES = [(8, 1024), (8, 16384), (1, 131072)]
RESULTS = Path(__file__).resolve().parent / "results"


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


def run_case(method: str, batch: int, length: int, device: str, repeats: int) -> dict:
    """Time forward+backward of one method on one shape (called in a subprocess)."""
    import torch

    from dnadiff.models.kernels.scan import selective_scan

    xs = make_inputs(batch, length, device)
    if method == "mambapy":
        fn = lambda: mambapy_scan(*xs)  # noqa: E731
    else:
        fn = lambda: selective_scan(*xs, delta_softplus=True, backend=method)  # noqa: E731
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for i in range(repeats + 1):  # the first run warms up and is not counted
        sync()
        t0 = time.perf_counter()
        out = fn()
        out.backward(torch.ones_like(out))
        sync()
        if i > 0 or repeats == 0:
            times.append(time.perf_counter() - t0)
        for x in xs:
            x.grad = None
    best = min(times)
    row = {"method": method, "batch": batch, "length": length, "status": "ok",
           "seconds": best, "seconds_all": times, "tokens_per_s": batch * length / best,
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device == "cuda":
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def skip_reason(method: str, batch: int, length: int, device: str) -> str:
    """Why a (method, shape) row is not run here ("" when it is)."""
    if method == "ref" and length > 1024:
        return "ref is a Python loop over positions: run at L 1024 only (it is slow)"
    if method == "mambapy":
        try:
            import mambapy.pscan  # noqa: F401
        except ImportError:
            return "mambapy not installed (pip install dnadiff[bench])"
        need = 8 * batch * length * D_INNER * D_STATE * 4 / 2**30
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        if device == "cpu" and need > 0.8 * avail:
            return (f"mambapy keeps ~8 (batch, L, d, n) fp32 tensors for backward: "
                    f"~{need:.0f} GiB > 80% of the {avail:.0f} GiB available")
    if method == "cuda":
        from dnadiff.models.kernels.scan import available_backends

        if "cuda" not in available_backends():
            return "mamba-ssm not importable here (pip install dnadiff[cuda])"
    return ""


def machine_info(device: str, load_start: tuple[float, float, float]) -> dict:
    """What the numbers were measured on (CPU timings here are noisy: shared cores)."""
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_avg_start": load_start}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        try:
            import mamba_ssm

            info["mamba_ssm"] = mamba_ssm.__version__
        except Exception as exc:  # noqa: BLE001 (report whatever broke the import)
            info["mamba_ssm"] = f"unavailable: {exc}"
    return info


def main() -> None:
    """Run every row in a subprocess, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row (best is kept)")
    p.add_argument("--cases", default=None, help="e.g. '8x1024,1x131072' (default: all)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per row")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in every row (0: torch's default); 1 is steadier on shared cores")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--_case", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        method, batch, length, device = args._case
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_case(method, int(batch), int(length), device, args.repeats)))
        return

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device here")
    load_start = os.getloadavg()
    cases = CASES if args.cases is None else [
        tuple(int(v) for v in c.split("x")) for c in args.cases.split(",")]
    methods = ["torch", "ref", "mambapy"] if args.device == "cpu" else ["torch", "cuda"]
    rows = []
    for batch, length in cases:
        for method in methods:
            if length == 131072 and method not in ("torch", "cuda"):
                continue
            why = skip_reason(method, batch, length, args.device)
            if why:
                rows.append({"method": method, "batch": batch, "length": length,
                             "status": "skipped", "reason": why})
                continue
            repeats = args.repeats if batch * length <= 8 * 1024 or args.device == "cuda" else 1
            if method == "ref":
                repeats = 0  # one timed run, no warm-up: it takes minutes
            cmd = [sys.executable, __file__, "--repeats", str(repeats), "--threads", str(args.threads),
                   "--_case", method, str(batch), str(length), args.device]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                if res.returncode == 0:
                    rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                else:
                    rows.append({"method": method, "batch": batch, "length": length,
                                 "status": "failed", "reason": res.stderr.strip()[-400:]})
            except subprocess.TimeoutExpired:
                rows.append({"method": method, "batch": batch, "length": length,
                             "status": "failed", "reason": f"timeout after {args.timeout} s"})
            print(json.dumps(rows[-1])[:300], file=sys.stderr, flush=True)

    ref_time = {(r["batch"], r["length"]): r["seconds"]
                for r in rows if r["method"] == "torch" and r["status"] == "ok"}
    for r in rows:
        base = ref_time.get((r["batch"], r["length"]))
        if r["status"] == "ok" and base:
            r["x_torch"] = r["seconds"] / base

    head = f"{'method':8} {'batch':>5} {'L':>7} {'fwd+bwd s':>10} {'tokens/s':>10} {'x_torch':>8} {'peak':>10}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['method']:8} {r['batch']:>5} {r['length']:>7} {'-':>10} {'-':>10} {'-':>8} {'-':>10}  "
                  f"{r['status']}: {r['reason'][:90]}")
            continue
        peak = r.get("peak_gpu_gib", r["peak_rss_gib"])
        unit = "GiB gpu" if "peak_gpu_gib" in r else "GiB rss"
        print(f"{r['method']:8} {r['batch']:>5} {r['length']:>7} {r['seconds']:>10.3f} "
              f"{r['tokens_per_s']:>10.0f} {r.get('x_torch', float('nan')):>8.2f} {peak:>6.2f} {unit}")

    info = machine_info(args.device, load_start)
    if args.threads > 0:
        info["torch_threads"] = args.threads
    info["load_avg_end"] = os.getloadavg()
    out = args.out or RESULTS / f"scan_{'cpu' if args.device == 'cpu' else 'gpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "selective scan forward+backward", "d_inner": D_INNER,
               "d_state": D_STATE, "dtype": "float32", "reference": "torch backend, same run",
               "ratio": "x_torch = seconds(method) / seconds(torch)", "machine": info, "rows": rows}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
