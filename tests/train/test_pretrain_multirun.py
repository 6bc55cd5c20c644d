"""Hydra multirun of ``python -m dnadiff.pretrain``: one run folder per job by default
(``out_dir/<job number>``), never two jobs writing into one ``out_dir``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dnadiff.checkpoint import read_metadata, safe_load

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8", "data.eval_batch_size=8",
        "model.d_model=16", "model.n_layer=1", "model.scan_backend=torch", "trainer.max_steps=2",
        "trainer.enable_progress_bar=false", "eval.draws=1"]


def test_multirun_writes_one_folder_per_job(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dnadiff.pretrain", "-m", "seed=1,2", *TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "runs" / "pretrain"  # the default out_dir is the sweep's root
    assert not (root / "last.ckpt").exists()
    weights = []
    for job, seed in ((0, 1), (1, 2)):
        job_dir = root / str(job)
        meta = read_metadata(job_dir / "last.ckpt")
        assert meta["config"]["seed"] == seed
        assert meta["config"]["out_dir"] == os.path.join("runs", "pretrain", str(job))
        assert json.loads((job_dir / "metrics.json").read_text())["steps"] == 2
        (overrides,) = (job_dir / "hydra").glob("*/overrides.yaml")  # one start: one folder of Hydra files
        assert f"seed={seed}" in overrides.read_text()
        weights.append(safe_load(job_dir / "last.ckpt")["state_dict"])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), "the two seeds trained the same"
    assert f"checkpoint: {os.path.join('runs', 'pretrain', '1', 'last.ckpt')}" in proc.stdout
