"""Pretraining end to end: learning on real windows, exact resume, DDP equivalence, checkpoints, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import dnadiff
from dnadiff.checkpoint import CheckpointError, export_model, load_model, read_metadata, safe_load
from dnadiff.cli import compose_config

CONFIGS = Path(dnadiff.__file__).resolve().parent / "configs"
REPO = Path(dnadiff.__file__).resolve().parents[1]


def make_cfg(out_dir: Path, fasta: Path | None, *overrides: str) -> dict:
    """The resolved pretrain config with test-sized overrides, as pretrain.run receives it."""
    base = [
        f"out_dir={out_dir}", *([f"data.fasta={fasta}"] if fasta else []), "data.seq_len=128", "data.batch_size=8",
        "data.max_eval_windows=24", "data.eval_batch_size=24", "model.d_model=32", "model.n_layer=2",
        "model.scan_backend=torch", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "eval.draws=2",
    ]
    return OmegaConf.to_container(compose_config("pretrain", [*base, *overrides]), resolve=True)


def run_pretrain(cfg: dict) -> dict:
    from dnadiff.pretrain import run

    return run(cfg)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return safe_load(path)["state_dict"]


def losses(out_dir: Path) -> list[float]:
    """Training loss per step, merged over the CSV logs of every (re)start of the run."""
    by_step = {}
    for csv in sorted((out_dir / "logs").glob("version_*/metrics.csv")):
        rows = csv.read_text().splitlines()
        header = rows[0].split(",")
        col, step = header.index("train/loss"), header.index("step")
        for row in rows[1:]:
            cells = row.split(",")
            if cells[col]:
                by_step[int(cells[step])] = float(cells[col])
    return [by_step[k] for k in sorted(by_step)]


def test_learns_below_two_bits_per_base_on_real_windows(tmp_path: Path, hg38_fasta: Path) -> None:
    cfg = make_cfg(tmp_path, hg38_fasta, "trainer.max_steps=300", "trainer.val_check_interval=300",
                   "trainer.checkpoint_every=300", "optim.lr=3e-3", "data.max_eval_windows=64",
                   "data.eval_batch_size=32", "eval.draws=4")
    summary = run_pretrain(cfg)
    print(f"validation bound after 300 steps: {summary['val_bits_per_base']:.4f} bits/base")
    assert summary["is_bound"]
    assert summary["val_bits_per_base"] < 1.97, f"reached {summary['val_bits_per_base']:.4f} bits/base"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val_bits_per_base"] == pytest.approx(summary["val_bits_per_base"])


def test_resume_is_exact(tmp_path: Path, hg38_fasta: Path) -> None:
    common = ["trainer.val_check_interval=100", "trainer.checkpoint_every=5", "data.num_workers=0"]
    full = make_cfg(tmp_path / "full", hg38_fasta, "trainer.max_steps=10", *common)
    run_pretrain(full)
    half = make_cfg(tmp_path / "half", hg38_fasta, "trainer.max_steps=10", *common)
    run_pretrain_until(half, 5)  # same 10-step config and schedule, interrupted after step 5
    resumed = dict(half, resume=str(tmp_path / "half" / "last.ckpt"))
    run_pretrain(resumed)
    a, b = weights(tmp_path / "full" / "last.ckpt"), weights(tmp_path / "half" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"weight {k} differs after resume")
    assert len(losses(tmp_path / "full")) == 10
    assert losses(tmp_path / "full") == losses(tmp_path / "half")


def run_pretrain_until(cfg: dict, stop_step: int) -> None:
    """Train with cfg's schedule but stop after ``stop_step`` steps (as if interrupted)."""
    import lightning as L

    class Stop(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step >= stop_step:
                trainer.should_stop = True

    from dnadiff.config import to_typed
    from dnadiff.train.config import PretrainConfig
    from dnadiff.train.run import pretrain

    pretrain(to_typed(cfg, PretrainConfig), callbacks=[Stop()])


def test_checkpoint_metadata_export_and_load(tmp_path: Path, hg38_fasta: Path) -> None:
    cfg = make_cfg(tmp_path, hg38_fasta, "trainer.max_steps=3", "trainer.val_check_interval=3",
                   "trainer.checkpoint_every=3")
    run_pretrain(cfg)
    ckpt = tmp_path / "last.ckpt"
    meta = read_metadata(ckpt)
    assert meta["vocab"] == list(dnadiff.Tokenizer().vocab) and meta["objective"]["name"] == "mdlm"
    model = load_model(ckpt)
    assert not model.training
    x = dnadiff.Tokenizer().encode_batch(["ACGT" * 32])
    exported = export_model(ckpt, tmp_path / "export")
    assert (exported / "model.safetensors").is_file()
    text = (exported / "config.json").read_text()
    info = json.loads(text)
    assert info["exported_from"] == "last.ckpt"
    # no path of the exporting machine: not the run folder, not the shared FASTA's folder
    assert str(tmp_path) not in text and str(hg38_fasta.parent) not in text
    assert info["config"]["data"]["fasta"] == hg38_fasta.name and info["config"]["out_dir"] == tmp_path.name
    same = dnadiff.load_model(exported)
    torch.testing.assert_close(model(x), same(x))
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_corrupt_and_mismatched_checkpoints_are_refused(tmp_path: Path, hg38_fasta: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.ckpt: not a checkpoint"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "missing.ckpt")
    cfg = make_cfg(tmp_path / "run", hg38_fasta, "trainer.max_steps=1", "trainer.val_check_interval=1",
                   "trainer.checkpoint_every=1")
    run_pretrain(cfg)
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    ckpt["dnadiff"]["vocab"] = list(reversed(ckpt["dnadiff"]["vocab"]))
    torch.save(ckpt, tmp_path / "other_vocab.ckpt")
    with pytest.raises(CheckpointError, match="vocabulary"):
        load_model(tmp_path / "other_vocab.ckpt")
    del ckpt["dnadiff"]
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a dnadiff checkpoint"):
        load_model(tmp_path / "foreign.ckpt")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # this checkout first on the path: the subprocess runs the code under test, not another install
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    res = _cli("dnadiff.pretrain", "data.fasta=/nonexistent/genome.fa", f"out_dir={tmp_path}", cwd=tmp_path)
    assert res.returncode != 0
    assert "/nonexistent/genome.fa" in res.stderr and "Traceback" not in res.stderr
    res = _cli("dnadiff.pretrain", "model=no_such_model", cwd=tmp_path)
    assert res.returncode != 0 and "no_such_model" in res.stderr and "Traceback" not in res.stderr
    res = _cli("dnadiff.pretrain", "trainer.no_such_key=1", cwd=tmp_path)
    assert res.returncode != 0 and "no_such_key" in res.stderr and "Traceback" not in res.stderr
    res = _cli("dnadiff.evaluate", f"ckpt={tmp_path}/missing.ckpt", cwd=tmp_path)
    assert res.returncode == 2 and "checkpoint not found" in res.stderr and "Traceback" not in res.stderr


def test_cli_help_lists_config_groups(tmp_path: Path) -> None:
    res = _cli("dnadiff.pretrain", "--help", cwd=tmp_path)
    assert res.returncode == 0
    for group in ("model:", "objective:", "data:", "trainer:", "experiment:"):
        assert group in res.stdout


def test_cli_pretrain_then_evaluate(tmp_path: Path, hg38_fasta_gz: Path) -> None:
    res = _cli("dnadiff.pretrain", f"out_dir={tmp_path}/run", "trainer.max_steps=4", "trainer.val_check_interval=4",
               "trainer.checkpoint_every=4", "data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8",
               "model.d_model=16", "model.n_layer=1", "model.time_conditioning=true", "trainer.enable_progress_bar=false",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bits/base" in res.stdout and (tmp_path / "run" / "last.ckpt").is_file()
    out = tmp_path / "eval.json"
    res = _cli("dnadiff.evaluate", f"ckpt={tmp_path}/run/last.ckpt", f"data.fasta={hg38_fasta_gz}", "split=test",
               f"out={out}", "data.max_eval_windows=8", "eval.draws=2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    for key in ("nats_per_token", "bits_per_base", "ppl", "n_tokens", "is_bound"):
        assert key in report
    assert report["is_bound"] is True and report["n_tokens"] == 8 * 64
    assert abs(report["bits_per_base"] * 0.6931471805599453 - report["nats_per_token"]) < 1e-9


def _cpu_fused_or_skip() -> str:
    from dnadiff.models.kernels.scan import available_backends

    if "cpu_fused" not in available_backends():
        pytest.skip("the cpu_fused kernels cannot be built here")
    return "cpu_fused"


@pytest.mark.parametrize("backend", ["torch", "cpu_fused"])
def test_two_process_ddp_equals_one_process_with_double_batch(tmp_path: Path, hg38_fasta: Path, backend: str) -> None:
    """Data parallelism changes nothing: rank r takes slots r, r+2, ... of each global batch, noise
    included; on the pure-PyTorch scan and on the fused CPU kernels (each rank loads them)."""
    if backend == "cpu_fused":
        _cpu_fused_or_skip()
    common = [f"data.fasta={hg38_fasta}", "trainer.accelerator=cpu", "trainer.max_steps=6",
              "trainer.val_check_interval=6", "trainer.checkpoint_every=6", "data.seq_len=64",
              "data.max_eval_windows=8", "model.d_model=16", "model.n_layer=1", f"model.scan_backend={backend}",
              "trainer.enable_progress_bar=false"]
    two = _cli("dnadiff.pretrain", f"out_dir={tmp_path}/ddp", "trainer.devices=2", "trainer.strategy=ddp",
               "data.batch_size=2", *common, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _cli("dnadiff.pretrain", f"out_dir={tmp_path}/single", "trainer.devices=1", "data.batch_size=4",
               *common, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = weights(tmp_path / "ddp" / "last.ckpt"), weights(tmp_path / "single" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs between DDP and 1 process")
    init = _cli("dnadiff.pretrain", f"out_dir={tmp_path}/init", "trainer.devices=1", "data.batch_size=4",
                *[c.replace("max_steps=6", "max_steps=1") for c in common], cwd=tmp_path)
    assert init.returncode == 0
    c = weights(tmp_path / "init" / "last.ckpt")
    moved = max(float((b[k] - c[k]).abs().max()) for k in b if k.startswith("model."))
    assert moved > 1e-3, "training moved the weights far more than the DDP tolerance"
    ddp_val = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one_val = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp_val["val_windows"] == one_val["val_windows"]
    assert ddp_val["val_nats_per_token"] == pytest.approx(one_val["val_nats_per_token"], rel=1e-4)


def test_interrupted_checkpoint_write_leaves_previous_file_intact(tmp_path: Path, monkeypatch) -> None:
    from dnadiff import atomic

    path = tmp_path / "last.ckpt"
    atomic.atomic_torch_save({"step": 1}, path)

    def crash(obj, fh) -> None:
        fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
