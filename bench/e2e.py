"""End to end on the default model: ``pretrain`` (defaults), ``evaluate`` (defaults) and uncached
ancestral sampling of 64 x 256 bp, each with the new CPU path against today's, in one run.

- new: the commands as shipped (scan backend ``auto`` = ``cpu_fused`` on CPU);
- today: the same commands with ``DNADIFF_SCAN_BACKEND=torch``, or, with
  ``--baseline-tree PATH``, on another checkout of dnadiff (e.g. the commit before issue 15:
  ``git worktree add /tmp/base <commit>``), which is today's code exactly.

Each command is timed as a whole process (wall clock, what a user waits for, Python start-up
included); ``python -c "import dnadiff.pretrain"``-style start-up is timed too and reported
beside it. pretrain also reports its fit time (metrics.json ``seconds``). evaluate and sampling
read the checkpoint that the new pretrain run wrote (the same one for both sides), and the run
checks that both sides report the same bound (bits/base) and how many sampled bases agree.
Ratios: ``speedup = seconds(today) / seconds(new)``. Targets (issue 15): evaluate >= 5x,
pretrain >= 2x, sampling >= 5x.

    python bench/e2e.py                        # -> bench/results/e2e_cpu.json
    python bench/e2e.py --baseline-tree /tmp/base --only evaluate,sample --ckpt runs/pretrain/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"pretrain": 2.0, "evaluate": 5.0, "sample": 5.0}


def side_env(side: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DNADIFF_SCAN_BACKEND"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if side == "today":
        if args.baseline_tree:
            env["PYTHONPATH"] = os.pathsep.join([args.baseline_tree, env.get("PYTHONPATH", "")])
        else:
            env["DNADIFF_SCAN_BACKEND"] = "torch"
    return env


def timed(cmd: list[str], env: dict, cwd: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()[-800:]}")
    return {"seconds": wall, "command": " ".join(cmd[1:])}


def startup(module: str, env: dict, cwd: Path) -> float:
    """Seconds to start Python and import the entry point (part of every command's wall time)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd=cwd, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def bits_per_base(path: Path) -> float:
    report = json.loads(path.read_text())
    return float(report.get("bits_per_base", report.get("bpb", float("nan"))))


def read_fasta(path: Path) -> list[str]:
    seqs, cur = [], []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        else:
            cur.append(line.strip())
    if cur:
        seqs.append("".join(cur))
    return seqs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-tree", default=None, help="checkout of dnadiff that 'today' runs on")
    p.add_argument("--only", default="pretrain,evaluate,sample", help="comma list of the parts to run")
    p.add_argument("--ckpt", type=Path, default=None, help="checkpoint for evaluate/sample (default: new pretrain's)")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for every command (0: torch's default)")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--workdir", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=RESULTS / "e2e_cpu.json")
    args = p.parse_args()
    parts = args.only.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dnadiff-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    from dnadiff.experiments.record import machine_info, write_results

    info = {**machine_info("cpu"), "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "threads": args.threads or "torch default", "baseline_tree": args.baseline_tree}
    py = sys.executable
    results: dict[str, dict] = {}
    ckpt = args.ckpt

    def both(name: str, make_cmd, module: str) -> None:
        row = {}
        for side in ("new", "today"):
            env = side_env(side, args)
            row[side] = timed(make_cmd(side), env, work, args.timeout)
            row[side]["startup_s"] = startup(module, env, work)
            print(f"{name} {side}: {row[side]['seconds']:.1f} s", file=sys.stderr, flush=True)
        row["speedup"] = row["today"]["seconds"] / row["new"]["seconds"]
        row["speedup_excluding_startup"] = ((row["today"]["seconds"] - row["today"]["startup_s"])
                                            / (row["new"]["seconds"] - row["new"]["startup_s"]))
        results[name] = row

    if "pretrain" in parts:
        both("pretrain", lambda side: [py, "-m", "dnadiff.pretrain", f"out_dir={work / ('pretrain_' + side)}",
                                       "trainer.enable_progress_bar=false"], "dnadiff.pretrain")
        for side in ("new", "today"):
            metrics = json.loads((work / f"pretrain_{side}" / "metrics.json").read_text())
            results["pretrain"][side]["fit_seconds"] = metrics.get("seconds")
            results["pretrain"][side]["train_tokens"] = metrics.get("train_tokens")
            results["pretrain"][side]["val_nats_per_token"] = metrics.get("val_nats_per_token")
        ckpt = ckpt or work / "pretrain_new" / "last.ckpt"
    if ckpt is None and ("evaluate" in parts or "sample" in parts):
        p.error("evaluate/sample need a checkpoint: run pretrain too or pass --ckpt")
    if "evaluate" in parts:
        both("evaluate", lambda side: [py, "-m", "dnadiff.evaluate", f"ckpt={ckpt}",
                                       f"out={work / ('eval_' + side + '.json')}"], "dnadiff.evaluate")
        bpb = {side: bits_per_base(work / f"eval_{side}.json") for side in ("new", "today")}
        results["evaluate"]["bits_per_base"] = bpb
        results["evaluate"]["same_result"] = abs(bpb["new"] - bpb["today"]) <= 1e-4 * abs(bpb["today"])
    if "sample" in parts:
        both("sample", lambda side: [py, "-m", "dnadiff.generate", f"ckpt={ckpt}",
                                     f"out={work / ('samples_' + side + '.fa')}", "num_samples=64", "length=256",
                                     "sampler=ancestral"], "dnadiff.generate")
        a, b = (read_fasta(work / f"samples_{side}.fa") for side in ("new", "today"))
        same = sum(x == y for s, t in zip(a, b) for x, y in zip(s, t))
        results["sample"]["identical_base_fraction"] = same / max(1, sum(len(s) for s in a))
        results["sample"]["sequences"] = [len(a), len(b)]
    goals = [{"target": f"{name} >= {TARGETS[name]:g}x today", "measured": round(r["speedup"], 2),
              "measured_excluding_startup": round(r["speedup_excluding_startup"], 2), "met": r["speedup"] >= TARGETS[name]}
             for name, r in results.items()]
    info["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{'part':<10}{'today s':>10}{'new s':>10}{'speedup':>9}{'(no start-up)':>15}  note")
    for name, r in results.items():
        note = ""
        if name == "evaluate":
            note = f"bits/base new {r['bits_per_base']['new']:.5f} today {r['bits_per_base']['today']:.5f}"
        if name == "sample":
            note = f"identical bases {r['identical_base_fraction']:.3f}"
        if name == "pretrain":
            note = f"fit s new {r['new']['fit_seconds']:.1f} today {r['today']['fit_seconds']:.1f}"
        print(f"{name:<10}{r['today']['seconds']:>10.1f}{r['new']['seconds']:>10.1f}{r['speedup']:>9.2f}"
              f"{r['speedup_excluding_startup']:>15.2f}  {note}")
    for t in goals:
        print(f"{'MET    ' if t['met'] else 'NOT MET'} {t['target']}: {t['measured']}")
    payload = {"benchmark": "end to end, default model, new CPU path vs today",
               "ratio": "speedup = wall seconds(today) / wall seconds(new), whole process",
               "command": "python " + " ".join(sys.argv), "machine": info, "results": results, "targets": goals}
    written = write_results(payload, args.out.with_suffix(""))
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
