"""Fault test: ``kill -9`` of ``python -m dnadiff.pretrain`` at random moments during checkpoint writes
(issues 13 and 18).

    python bench/faults.py [--trials 20] [--seed 0] [--out bench/results/faults.json]

One uninterrupted reference run, then the same run killed with SIGKILL ``--trials`` times and
resumed (``resume=out_dir/last.ckpt``) after every kill, then run to its end. Each kill lands
inside a checkpoint write: once the temporary file (``checkpoints/.stepNNNNNNN.ckpt.*.tmp``) of
the k-th write of that start appears (k uniform in 1..3 so that the run moves on; 2..4 for the
first, fresh start, so that a checkpoint exists), the script waits a time uniform in [0, d],
d = the median write time measured in the reference run, then kills. After each kill it checks
that ``last.ckpt`` loads (``safe_load`` + ``load_model``) and records its step, the steps lost,
the temporary files and the lock file left behind; at the next start it checks that those
temporaries are removed and the lock is taken over (the log says so). At the end the
killed-and-resumed run must equal the reference bit for bit: weights, EMA, optimiser state,
schedule, step, and the training loss of every try of every step (a step redone after a kill is
logged once per try; the CSV log is written at every logging step, so killed starts keep theirs).

Figures: trials; kills that landed mid-write (a temporary file was left); checkpoint losses
(last.ckpt missing or unreadable after a kill: must be 0); steps lost per kill; leftovers
(temporaries left by kills, removed at the next start, left at the end: must be 0); final
equality. The test suite runs a 2-trial version (tests/train/test_faults.py).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
STEP_TMP = re.compile(r"^\.step(\d{7})\.ckpt\..*\.tmp$")
RUN_OVERRIDES = [  # a CPU-small run whose checkpoint writes take a few milliseconds each
    "data.seq_len=128", "data.batch_size=8", "data.max_eval_windows=8", "model.d_model=96", "model.n_layer=2",
    "model.scan_backend=torch", "trainer.checkpoint_every=1", "trainer.keep_last=2",
    "trainer.val_check_interval=100000", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "eval.draws=1", "data.num_workers=0",
]


OVERRIDES = list(RUN_OVERRIDES)  # kill_loop(..., overrides=) replaces keys of these


def command(out_dir: Path, max_steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dnadiff.pretrain", f"out_dir={out_dir}", f"trainer.max_steps={max_steps}",
            *OVERRIDES, *extra]


def set_overrides(changes: list[str]) -> None:
    """Replace (or add) ``key=value`` entries of the run's overrides."""
    table = dict(o.split("=", 1) for o in RUN_OVERRIDES)
    table.update(o.split("=", 1) for o in changes)
    OVERRIDES[:] = [f"{k}={v}" for k, v in table.items()]


def temporaries(out_dir: Path) -> dict[str, int]:
    """Temporary files of atomic writes in the run folder and checkpoints/, with their sizes."""
    found = {}
    for folder in (out_dir, out_dir / "checkpoints"):
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    try:
                        found[str(Path(folder.name if folder != out_dir else "") / entry.name)] = entry.stat().st_size
                    except FileNotFoundError:
                        pass
    return found


def step_writes(out_dir: Path) -> set[str]:
    folder = out_dir / "checkpoints"
    try:
        return {e.name for e in os.scandir(folder) if STEP_TMP.match(e.name)}
    except FileNotFoundError:
        return set()


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def check_checkpoint(path: Path) -> dict[str, Any]:
    """Does last.ckpt load as a training checkpoint and as a model? Its step."""
    from dnadiff.checkpoint import check_metadata, load_model, safe_load

    try:
        ckpt = safe_load(path)
        check_metadata(ckpt.get("dnadiff"), str(path))
        load_model(path)
        return {"loads": True, "step": int(ckpt["global_step"])}
    except Exception as err:  # noqa: BLE001 - any failure to load is the finding
        return {"loads": False, "error": f"{type(err).__name__}: {err}"}


def measure_write_times(out_dir: Path, max_steps: int, log: Path) -> tuple[float, int]:
    """The reference run, polled: (median checkpoint write time in s, exit status)."""
    proc = subprocess.Popen(command(out_dir, max_steps), cwd=REPO, env=env(), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    seen: dict[str, float] = {}
    durations = []
    while proc.poll() is None:
        now = time.perf_counter()
        current = step_writes(out_dir)
        for name in current - seen.keys():
            seen[name] = now
        for name in [n for n in seen if n not in current]:
            durations.append(now - seen.pop(name))
        time.sleep(0.0002)
    return (statistics.median(durations) if durations else 0.01), proc.returncode


@dataclass
class Trial:
    """One start of the killed run, and what its kill left."""

    index: int
    killed_during: Optional[str] = None
    write_step: Optional[int] = None
    delay_s: float = 0.0
    left_temporaries: dict[str, int] = field(default_factory=dict)
    left_lock: bool = False
    checkpoint: dict[str, Any] = field(default_factory=dict)
    steps_lost: Optional[int] = None
    previous_temporaries_removed: Optional[bool] = None
    lock_taken_over: Optional[bool] = None
    exit_status: Optional[int] = None


def kill_during_write(out_dir: Path, max_steps: int, rng: random.Random, write_s: float, index: int,
                      resume: bool, previous: dict[str, int], log: Path) -> Trial:
    """Start (or resume) the run, kill it inside its k-th checkpoint write, and inspect what is left."""
    trial = Trial(index)
    extra = [f"resume={out_dir / 'last.ckpt'}"] if resume else []
    proc = subprocess.Popen(command(out_dir, max_steps, *extra), cwd=REPO, env=env(), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    k = rng.randint(1, 3) + (0 if resume else 1)  # a fresh start is killed only once it has a checkpoint
    stale = {n for n in previous if STEP_TMP.match(Path(n).name)}
    seen: set[str] = set()
    while proc.poll() is None:
        current = step_writes(out_dir)
        fresh = current - seen - {Path(n).name for n in stale}
        if fresh:
            seen |= fresh
            if len(seen) >= k:
                name = sorted(fresh)[-1]
                trial.write_step = int(STEP_TMP.match(name).group(1))
                trial.delay_s = rng.uniform(0.0, write_s)
                time.sleep(trial.delay_s)
                trial.killed_during = name
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.0002)
    trial.exit_status = proc.wait()
    trial.left_temporaries = temporaries(out_dir)
    trial.left_lock = (out_dir / ".pretrain.lock").is_file()
    trial.checkpoint = check_checkpoint(out_dir / "last.ckpt")
    if trial.write_step is not None and trial.checkpoint.get("loads"):
        trial.steps_lost = trial.write_step - trial.checkpoint["step"]
    text = log.read_text()
    if previous:  # the previous kill's temporaries: gone, and the log says they were removed
        trial.previous_temporaries_removed = all(n not in trial.left_temporaries for n in previous) and (
            "temporary file of a write that was interrupted" in text)
    trial.lock_taken_over = "took over the lock" in text if resume else None
    return trial


def losses_by_try(out_dir: Path) -> dict[int, list[float]]:
    """Every logged training loss per step, over all (re)starts of the run."""
    by_step: dict[int, list[float]] = {}
    for csv in sorted((out_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        rows = csv.read_text().splitlines()
        if not rows:
            continue
        header = rows[0].split(",")
        if "train/loss" not in header:
            continue
        col, step = header.index("train/loss"), header.index("step")
        for row in rows[1:]:
            cells = row.split(",")
            if cells[col]:
                by_step.setdefault(int(cells[step]), []).append(float(cells[col]))
    return by_step


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    """Bit-for-bit comparison of two final checkpoints and their per-step training losses."""
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a / "last.ckpt", b / "last.ckpt"))

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)):
            return isinstance(y, (list, tuple)) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    ref, killed = losses_by_try(a), losses_by_try(b)
    diffs = [abs(v - ref[s][0]) for s, vs in killed.items() for v in vs if s in ref]
    return {
        "step": [ca["global_step"], cb["global_step"]],
        "weights_and_ema_equal": same(ca["state_dict"], cb["state_dict"]),
        "optimizer_state_equal": same(ca["optimizer_states"], cb["optimizer_states"]),
        "lr_schedule_equal": same(ca["lr_schedulers"], cb["lr_schedulers"]),
        "loss_steps": len(ref),
        "loss_steps_compared": len(set(killed) & set(ref)),  # a row logged just before a kill can be lost with it
        "loss_tries_compared": len(diffs),
        "max_abs_loss_difference": max(diffs) if diffs else None,
    }


def kill_loop(work: Path, trials: int, seed: int = 0, max_steps: Optional[int] = None,
              overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole experiment in ``work`` (see the module doc; ``overrides`` change the run's
    settings, e.g. a smaller model); returns the results."""
    set_overrides(list(overrides))
    rng = random.Random(seed)
    max_steps = max_steps or 2 * trials + 8
    work.mkdir(parents=True, exist_ok=True)
    ref, killed = work / "reference", work / "killed"
    write_s, ref_status = measure_write_times(ref, max_steps, work / "reference.log")
    if ref_status != 0:
        raise RuntimeError(f"the reference run failed (exit {ref_status}): {(work / 'reference.log').read_text()[-800:]}")
    per_trial: list[Trial] = []
    previous: dict[str, int] = {}
    for i in range(trials):
        trial = kill_during_write(killed, max_steps, rng, write_s, i, resume=i > 0 and (killed / "last.ckpt").is_file(),
                                  previous=previous, log=work / f"trial{i:02d}.log")
        per_trial.append(trial)
        previous = trial.left_temporaries
    final = subprocess.run(command(killed, max_steps, f"resume={killed / 'last.ckpt'}"), cwd=REPO, env=env(),
                           capture_output=True, text=True)
    (work / "final.log").write_text(final.stdout + final.stderr)
    final_text = final.stdout + final.stderr
    left_at_end = temporaries(killed)
    mid_write = [t for t in per_trial if any(STEP_TMP.match(Path(n).name) for n in t.left_temporaries)]
    with_leftovers = [t for t in per_trial[:-1] if t.left_temporaries]
    removed = [t for t in per_trial[1:] if t.previous_temporaries_removed]
    if per_trial and per_trial[-1].left_temporaries:
        with_leftovers.append(per_trial[-1])
        if ("temporary file of a write that was interrupted" in final_text
                and all(n not in left_at_end for n in per_trial[-1].left_temporaries)):
            removed.append(per_trial[-1])
    lost = [t.steps_lost for t in per_trial if t.steps_lost is not None]
    return {
        "trials": trials,
        "max_steps": max_steps,
        "write_time_median_s": write_s,
        "kills_mid_write": len(mid_write),
        "checkpoint_losses": sum(not t.checkpoint.get("loads") for t in per_trial),
        "last_ckpt_loaded": sum(bool(t.checkpoint.get("loads")) for t in per_trial),
        "steps_lost_per_kill": {"mean": statistics.mean(lost) if lost else None, "max": max(lost) if lost else None},
        "leftovers": {
            "temporaries_left_by_kills": sum(len(t.left_temporaries) for t in per_trial),
            "temporary_bytes_left_by_kills": sum(sum(t.left_temporaries.values()) for t in per_trial),
            "starts_that_found_leftovers": len(with_leftovers),
            "removed_at_next_start": len(removed),
            "left_at_end": len(left_at_end),
            "stale_locks_left_by_kills": sum(t.left_lock for t in per_trial),
            "stale_locks_taken_over": sum(bool(t.lock_taken_over) for t in per_trial[1:])
            + ("took over the lock" in final_text),
            "lock_left_at_end": (killed / ".pretrain.lock").is_file(),
        },
        "final_exit_status": final.returncode,
        "final_equals_reference": compare_runs(ref, killed),
        "per_trial": [t.__dict__ for t in per_trial],
    }


def table(result: dict[str, Any]) -> str:
    left = result["leftovers"]
    eq = result["final_equals_reference"]
    rows = [
        ("trials (kill -9 inside a checkpoint write)", result["trials"]),
        ("kills that left a half-written checkpoint temp file", result["kills_mid_write"]),
        ("last.ckpt loaded after the kill", f"{result['last_ckpt_loaded']} / {result['trials']}"),
        ("checkpoint losses (last.ckpt missing or unreadable)", result["checkpoint_losses"]),
        ("steps lost per kill (mean, max)",
         f"{result['steps_lost_per_kill']['mean']}, {result['steps_lost_per_kill']['max']}"),
        ("temp files left by kills (bytes)",
         f"{left['temporaries_left_by_kills']} ({left['temporary_bytes_left_by_kills']:,})"),
        ("... removed at the next start / left at the end",
         f"{left['removed_at_next_start']} of {left['starts_that_found_leftovers']} / {left['left_at_end']}"),
        ("stale locks left / taken over / left at the end",
         f"{left['stale_locks_left_by_kills']} / {left['stale_locks_taken_over']} / {int(left['lock_left_at_end'])}"),
        ("final run exit status", result["final_exit_status"]),
        ("final weights+EMA / optimiser / schedule equal to uninterrupted",
         f"{eq['weights_and_ema_equal']} / {eq['optimizer_state_equal']} / {eq['lr_schedule_equal']}"),
        ("training losses: steps compared, tries compared, max |difference|",
         f"{eq['loss_steps_compared']} of {eq['loss_steps']}, {eq['loss_tries_compared']}, "
         f"{eq['max_abs_loss_difference']}"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default=None, help="default: a temporary folder")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "faults.json"))
    args = ap.parse_args()
    import tempfile

    from dnadiff.experiments.record import machine_info, write_results

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        began = time.time()
        result = kill_loop(work, args.trials, args.seed)
        result["seconds"] = round(time.time() - began, 1)
    result["command"] = f"python bench/faults.py --trials {args.trials} --seed {args.seed}"
    result["run_overrides"] = list(OVERRIDES)
    result["machine"] = machine_info()
    print(table(result))
    path = write_results(result, Path(args.out).with_suffix(""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
