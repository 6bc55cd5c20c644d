"""Training throughput and peak memory of pretraining (issue 5), MDLM against AR on equal backbone size.

Each row is one configuration measured in its own subprocess (clean peak RSS / CUDA peak): a raw
training step (objective forward + backward + AdamW) on real windows of the hg38 chr2 sample,
after warm-up steps. Rows:

- MDLM on Caduceus-PS (tiny: the default ``caduceus_ps``; hg38 size: ``caduceus_ps_hg38``),
- AR on the causal Mamba of the same width and depth (``mamba`` / ``mamba_hg38``), the reference
  for the MDLM/AR ratio, when the AR objective exists,
- the whole ``python -m dnadiff.pretrain`` pipeline (Lightning, stream loader, EMA, checkpoint)
  for the tiny config, as a ratio to the raw step (the framework's overhead).

    python bench/train.py [--device cpu|cuda] [--steps 5] [--out bench/results/train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# name -> (model config, objective, seq_len, batch)
CASES = {
    "tiny_mdlm": ("caduceus_ps", "mdlm", 512, 16),
    "tiny_ar": ("mamba", "ar", 512, 16),
    "hg38_mdlm": ("caduceus_ps_hg38", "mdlm", 1024, 8),
    "hg38_ar": ("mamba_hg38", "ar", 1024, 8),
}


def measure(model_name: str, objective_name: str, seq_len: int, batch: int, steps: int, device: str) -> dict:
    """Tokens/s of raw training steps and peak memory, in this process."""
    import dataclasses

    import torch

    import dnadiff
    from dnadiff.cli import load_config
    from dnadiff.data.sources import GenomeSource
    from dnadiff.data.stream import StreamDataset
    from dnadiff.data.windows import collate_windows
    from dnadiff.objectives import build_objective
    from dnadiff.train.optim import build_optimizer

    cfg = load_config("pretrain", [f"model={model_name}", f"objective={objective_name}"])
    torch.manual_seed(0)
    model = dnadiff.build_model(model_name).to(device)
    objective = build_objective(cfg.objective, dnadiff.Tokenizer())
    optimizer, _ = build_optimizer(model, cfg.optim, 1000)
    windows = GenomeSource(dataclasses.replace(cfg.data, seq_len=seq_len, batch_size=batch))
    stream = StreamDataset(windows.dataset("train"), 0, batch, cfg.objective.antithetic)
    batches = [collate_windows([stream[b * batch + i] for i in range(batch)]) for b in range(steps + 2)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def step(b: dict) -> None:
        b = {k: v.to(device) for k, v in b.items()}
        with autocast:
            loss = objective.batch_loss(model, b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for b in batches[:2]:
        step(b)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for b in batches[2:]:
        step(b)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "model": model_name, "objective": objective_name, "seq_len": seq_len, "batch": batch, "steps": steps,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": elapsed / steps, "tokens_per_s": steps * batch * seq_len / elapsed,
        "peak_mem_bytes": int(peak), "peak_mem_kind": "cuda max_memory_allocated" if device == "cuda" else "process max RSS",
    }


def pipeline(steps: int) -> dict:
    """Tokens/s of the full default ``python -m dnadiff.pretrain`` (tiny config), excluding start-up."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "dnadiff.pretrain", f"out_dir={out}", f"trainer.max_steps={steps}",
               f"trainer.val_check_interval={steps}", f"trainer.checkpoint_every={steps}",
               "trainer.enable_progress_bar=false", "data.max_eval_windows=16"]
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
        wall = time.perf_counter() - start
        if res.returncode:
            return {"error": res.stderr.strip().splitlines()[-1]}
        summary = json.loads((Path(out) / "metrics.json").read_text())
    return {"steps": steps, "train_tokens": summary["train_tokens"], "fit_seconds": summary["seconds"],
            "wall_seconds": wall, "tokens_per_s": summary["train_tokens"] / summary["seconds"]}


def machine() -> dict:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (after 2 warm-up steps)")
    parser.add_argument("--pipeline-steps", type=int, default=40)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*CASES[args.worker], args.steps, args.device)))
        return
    rows = {}
    for name in args.cases:
        res = subprocess.run([sys.executable, __file__, "--worker", name, "--steps", str(args.steps),
                              "--device", args.device], capture_output=True, text=True)
        rows[name] = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {
            "error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
        print(name, rows[name], flush=True)
    ratios = {}
    for size in ("tiny", "hg38"):
        m, a = rows.get(f"{size}_mdlm", {}), rows.get(f"{size}_ar", {})
        if "tokens_per_s" in m and "tokens_per_s" in a:
            ratios[f"{size}_mdlm_over_ar_tokens_per_s"] = m["tokens_per_s"] / a["tokens_per_s"]
            ratios[f"{size}_mdlm_over_ar_peak_mem"] = m["peak_mem_bytes"] / a["peak_mem_bytes"]
    if args.device == "cpu":
        rows["tiny_pipeline"] = pipeline(args.pipeline_steps)
        if "tokens_per_s" in rows["tiny_pipeline"] and "tokens_per_s" in rows.get("tiny_mdlm", {}):
            ratios["pipeline_over_raw_step_tokens_per_s"] = rows["tiny_pipeline"]["tokens_per_s"] / rows["tiny_mdlm"]["tokens_per_s"]
    print(f"\n{'case':<14} {'model':<18} {'obj':<5} {'params':>10} {'L':>6} {'B':>3} {'tok/s':>10} {'peak MiB':>9}")
    for name, r in rows.items():
        if "params" in r:
            print(f"{name:<14} {r['model']:<18} {r['objective']:<5} {r['params']:>10,} {r['seq_len']:>6} {r['batch']:>3} "
                  f"{r['tokens_per_s']:>10.0f} {r['peak_mem_bytes'] / 2**20:>9.0f}")
        elif "tokens_per_s" in r:
            print(f"{name:<14} full `python -m dnadiff.pretrain` (tiny): {r['tokens_per_s']:.0f} tok/s")
        else:
            print(f"{name:<14} not measured: {r.get('error')}")
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    out = args.out or RESULTS / f"train_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "device": args.device, "rows": rows, "ratios": ratios,
                               "command": " ".join(["python", "bench/train.py", *sys.argv[1:]])}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
