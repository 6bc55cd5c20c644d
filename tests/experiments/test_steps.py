"""The steps experiment (issue 16): its intervals, its T grid, and a tiny end-to-end run on the exact oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dnadiff.experiments.stats import interpolate_log, mean_se, wilson


def test_wilson_and_standard_errors() -> None:
    lo, hi = wilson(0, 100)
    assert lo == 0.0 and abs(hi - 0.03699) < 1e-4
    lo, hi = wilson(50, 100)
    assert abs(lo - 0.4038) < 1e-4 and abs(hi - 0.5962) < 1e-4
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        k = int(rng.binomial(200, 0.03))
        lo, hi = wilson(k, 200)
        covered += lo <= 0.03 <= hi
    assert abs(covered / 2000 - 0.95) < 0.03
    values = rng.normal(size=400)
    m, se = mean_se(values)
    assert abs(se - stats.sem(values)) < 1e-12 and abs(m - values.mean()) < 1e-12
    assert interpolate_log(4.0, [2.0, 8.0], [1.0, 3.0]) == pytest.approx(2.0)
    assert interpolate_log(100.0, [2.0, 8.0], [1.0, 3.0]) == 3.0


def test_step_grid() -> None:
    from omegaconf import OmegaConf

    from dnadiff.experiments.steps import CONFIG, steps_for

    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    assert steps_for(64, "ancestral", cfg, "hairpin") == [1, 2, 4, 8, 16, 32, 64, 128, 256, 2048]
    assert steps_for(64, "ancestral", cfg, "markov") == [1, 2, 4, 8, 16, 32, 64, 128]
    assert steps_for(64, "confidence", cfg) == [1, 2, 4, 8, 16, 32, 64]
    assert steps_for(48, "remask", cfg) == [1, 2, 4, 8, 16, 32, 48]
    assert steps_for(512, "ancestral", cfg, "hairpin", max_steps=64) == [1, 2, 4, 8, 16, 32, 64]


def test_tiny_run_oracle_and_trained_model(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from dnadiff.experiments.steps import CONFIG, main

    cfg = OmegaConf.load(CONFIG)
    cfg.oracle.num_samples = 64
    cfg.oracle.batch_size = 64
    cfg.metrics.entropy_samples = 256
    cfg.steps.ancestral_extra = {"orf": [4]}
    cfg.network.num_samples = cfg.network.batch_size = 32
    cfg.network.train.steps = 4
    cfg.network.model = {"d_model": 16, "n_layer": 1}
    small = tmp_path / "steps.yaml"
    OmegaConf.save(cfg, small)
    result = main(["--lengths", "12", "--languages", "orf", "markov", "--archs", "bimamba", "--net-languages", "orf",
                   "--net-lengths", "12", "--samplers", "ancestral", "confidence_spaced", "--config", str(small),
                   "--out", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert (tmp_path / "out" / "ser_oracle.png").stat().st_size > 0
    (model,) = saved["models"]
    assert model["arch"] == "bimamba" and model["train_steps"] == 4 and model["length"] == 12
    assert model["batch_size"] == cfg.network.train.batch_tokens // 12
    assert math.isfinite(model["heldout_nelbo"]) and model["heldout_nelbo"] > 0 and model["heldout_nelbo_se"] > 0
    net = [r for r in saved["rows"] if r["source"] == "bimamba"]
    assert {r["sampler"] for r in net} == {"ancestral", "confidence_spaced"} and all(r["n"] == 32 for r in net)
    assert all(r["language"] == "orf" and r["ser_lo"] <= r["ser"] <= r["ser_hi"] for r in net)
    assert next(r for r in net if r["sampler"] == "ancestral" and r["steps"] == 1)["nfe"] == 1.0
    rows = [r for r in saved["rows"] if r["source"] == "oracle"]
    assert {r["language"] for r in rows} == {"orf", "markov"} and all(r["n"] == 64 for r in rows)
    for r in rows:
        assert r["ser_lo"] <= r["ser"] <= r["ser_hi"]
        if r["language"] == "markov":
            assert r["ser"] == 0 and r["ter"] is not None
    one = next(r for r in rows if r["language"] == "orf" and r["sampler"] == "ancestral" and r["steps"] == 1)
    assert one["ser"] > 0  # one step draws the codon positions independently
    exact = next(r for r in rows if r["language"] == "orf" and r["sampler"] == "confidence_spaced" and r["steps"] == 12)
    assert exact["ser"] == 0 and math.isfinite(exact["ter"])
    orf = next(e for e in saved["targets"]["ser"] if e["language"] == "orf" and e["source"] == "oracle")
    assert set(orf["min_nfe_ser_le_target"]) == {"ancestral", "confidence_spaced"}
    assert saved["targets"]["ter"] and all("relative_change" in e["worst"] for e in saved["targets"]["ter"])


def test_help(capsys: pytest.CaptureFixture) -> None:
    import os
    import subprocess
    import sys

    from dnadiff.experiments import steps_genome

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "dnadiff.experiments.steps", "--help"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0 and "--full" in run.stdout, run.stderr[-500:]
    with pytest.raises(SystemExit) as exit_info:
        steps_genome.main(["--help"])
    assert exit_info.value.code == 0 and "--ar-ckpt" in capsys.readouterr().out


def test_partial_results_survive_a_crash_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from dnadiff.experiments import steps

    cfg = OmegaConf.load(steps.CONFIG)
    cfg.oracle.num_samples = cfg.oracle.batch_size = 16
    cfg.metrics.entropy_samples = 64
    cfg.network.num_samples = cfg.network.batch_size = 16
    cfg.network.train.steps = 2
    cfg.network.model = {"d_model": 16, "n_layer": 1}
    small = tmp_path / "steps.yaml"
    OmegaConf.save(cfg, small)
    out = tmp_path / "out"
    argv = ["--lengths", "12", "--languages", "orf", "markov", "--archs", "bimamba", "--net-languages", "orf",
            "--net-lengths", "12", "--samplers", "ancestral", "--config", str(small), "--out", str(out)]
    real_sweep, calls = steps.sweep, []

    def crash_on_third(*a, **k):
        calls.append(a[0])
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real_sweep(*a, **k)

    monkeypatch.setattr(steps, "sweep", crash_on_third)
    with pytest.raises(RuntimeError, match="killed"):
        steps.main(argv)
    partial = json.loads((out / "results.partial.json").read_text())
    assert partial["complete"] is False and not (out / "results.json").exists()
    assert {(r["source"], r["language"]) for r in partial["rows"]} == {("oracle", "orf"), ("oracle", "markov")}
    monkeypatch.setattr(steps, "sweep", real_sweep)
    with pytest.raises(SystemExit, match="another plan"):
        steps.main([*argv[:-2], "--net-lengths", "12", "24", "--out", str(out), "--resume"])
    result = steps.main([*argv, "--resume"])
    assert result["complete"] and not (out / "results.partial.json").exists()
    assert result["rows"][: len(partial["rows"])] == partial["rows"]  # kept, not re-measured
    assert {r["source"] for r in result["rows"]} == {"oracle", "bimamba"} and len(result["models"]) == 1
    net_only = steps.main(["--lengths", "--archs", "bimamba", "--net-languages", "orf", "--net-lengths", "12",
                           "--samplers", "ancestral", "--config", str(small), "--out", str(tmp_path / "net")])
    assert {r["source"] for r in net_only["rows"]} == {"bimamba"} and "orf" in net_only["languages"]
