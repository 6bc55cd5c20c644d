"""``init_from=PATH`` (issue 12): generative fine-tuning from any loadable model (a Caduceus Hugging
Face snapshot, a dnadiff checkpoint or export) keeps its architecture and trains with the chosen
objective; ``init_from`` (weights only) and ``resume`` (exact continuation) are told apart in the
metadata; ``experiment=hg38_finetune`` states the paper's setting."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from dnadiff.checkpoint import export_model, load_model, read_metadata, safe_load
from dnadiff.cli import load_config
from dnadiff.config import ConfigError, to_typed
from dnadiff.data.sources import data_source
from dnadiff.data.stream import EvalNoiseDataset
from dnadiff.data.windows import collate_windows
from dnadiff.metrics.evaluation import heldout_nll
from dnadiff.models.hf_caduceus import hf_to_dnadiff_config, read_hf_config
from dnadiff.models.model_config import validate_config
from dnadiff.objectives import build_objective
from dnadiff.tokenizer import Tokenizer
from dnadiff.train.config import PretrainConfig
from dnadiff.train.run import pretrain
from dnadiff.train.start import ResumeError
from tests.train.test_lifecycle import cli, error_line
from tests.train.test_pretrain import REPO, make_cfg, run_pretrain_until

SNAPSHOT = REPO / "tests" / "fixtures" / "caduceus_hf" / "ps_fused"
EVAL = ["split=test", "data.max_eval_windows=32", "data.eval_batch_size=32", "eval.draws=4", "device=cpu"]


def snapshot_config() -> dict:
    return hf_to_dnadiff_config(read_hf_config(SNAPSHOT))


def tiny(out_dir: Path, *overrides: str) -> PretrainConfig:
    cfg = make_cfg(out_dir, None, "data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8", "eval.draws=1",
                   "trainer.val_check_interval=1000", *overrides)
    return to_typed(cfg, PretrainConfig)


def bound_before(fasta: Path, objective: dict, seq_len: int) -> tuple[float, float]:
    """nats/token and its window-clustered SE of the snapshot, on the windows and noise the
    evaluate job uses for the same overrides."""
    cfg = load_config("evaluate", ["ckpt=unused", f"data.fasta={fasta}", f"data.seq_len={seq_len}", *EVAL])
    source = data_source(cfg.data)
    loader = DataLoader(EvalNoiseDataset(source.dataset("test"), cfg.eval.seed, cfg.eval.draws),
                        batch_size=source.eval_batch_size, collate_fn=collate_windows)
    model = load_model(SNAPSHOT)
    model.scan_backend = "torch"
    totals = heldout_nll(model, build_objective(objective, Tokenizer()), loader, torch.device("cpu"))
    nll, tokens = (float(v) for v in totals.sums())
    return nll / tokens, totals.standard_error()


def test_finetuning_a_caduceus_snapshot_lowers_the_mdlm_bound_on_hg38(tmp_path: Path, hg38_fasta: Path) -> None:
    run = tmp_path / "ft"
    res = cli(f"init_from={SNAPSHOT}", "objective=mdlm", f"out_dir={run}", f"data.fasta={hg38_fasta}",
              "data.seq_len=128", "data.batch_size=8", "trainer.max_steps=60", "trainer.val_check_interval=60",
              "trainer.checkpoint_every=60", "data.max_eval_windows=16", "model.scan_backend=torch",
              "trainer.enable_progress_bar=false")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"init_from={SNAPSHOT} (hf_snapshot): its model config replaces the model group" in res.stdout
    ckpt = safe_load(run / "last.ckpt")
    meta = ckpt["dnadiff"]
    theirs = validate_config(snapshot_config())
    assert {k: v for k, v in meta["model"].items() if k != "scan_backend"} == {
        k: v for k, v in theirs.items() if k != "scan_backend"}, "the snapshot's architecture was not kept"
    assert meta["objective"]["name"] == "mdlm" and ckpt["global_step"] == 60
    assert meta["run"]["started"] == "init_from" and meta["run"]["init_from"]["kind"] == "hf_snapshot"
    assert meta["run"]["resumes"] == []
    steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert steps == {60.0}, "the optimiser did not start afresh"
    before, se_before = bound_before(hg38_fasta, meta["objective"], 128)
    out = tmp_path / "after.json"
    res = subprocess.run([sys.executable, "-m", "dnadiff.evaluate", f"ckpt={run / 'last.ckpt'}",
                          f"data.fasta={hg38_fasta}", f"out={out}", *EVAL], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    after = json.loads(out.read_text())
    assert after["n_windows"] == 32 and after["seq_len"] == 128 and after["is_bound"]
    se = math.hypot(se_before, after["nats_per_token_stderr"])
    print(f"MDLM bound on hg38 test windows: before {before:.4f} +- {se_before:.4f}, after 60 steps "
          f"{after['nats_per_token']:.4f} +- {after['nats_per_token_stderr']:.4f} nats/token")
    assert before - after["nats_per_token"] > 3 * se, (before, after["nats_per_token"], se)


def test_init_from_takes_the_weights_and_architecture_only(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "a", f"init_from={SNAPSHOT}", "trainer.max_steps=1", "trainer.checkpoint_every=1",
               "optim.lr=1e-9")
    summary = pretrain(cfg, model_overrides=[])
    assert summary["start"] == "init_from" and summary["init_from"] == str(SNAPSHOT) and summary["params"] == 11264
    ckpt = safe_load(tmp_path / "a" / "last.ckpt")
    theirs = load_model(SNAPSHOT).state_dict()
    for prefix in ("model.", "ema.module."):
        for name, tensor in theirs.items():  # one step at lr ~3e-11: the snapshot's weights, not a random init
            torch.testing.assert_close(ckpt["state_dict"][prefix + name], tensor, rtol=0, atol=1e-6)
    assert ckpt["global_step"] == 1
    # a dnadiff checkpoint and an export are sources too, with another objective
    export_model(tmp_path / "a" / "last.ckpt", tmp_path / "export")
    for source, kind in ((tmp_path / "a" / "last.ckpt", "checkpoint"), (tmp_path / "export", "export")):
        out = tmp_path / kind
        summary = pretrain(tiny(out, f"init_from={source}", "objective=mlm", "trainer.max_steps=1"), model_overrides=[])
        meta = read_metadata(out / "last.ckpt")
        assert meta["run"]["init_from"]["kind"] == kind and meta["objective"]["name"] == "mlm"
        assert meta["model"]["d_model"] == 16 and meta["model"]["n_layer"] == 3 and meta["model"]["rcps_swap_halves"]
        assert summary["likelihood"] is False


def test_init_from_and_resume_are_different_things(tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = [f"init_from={SNAPSHOT}", "trainer.max_steps=4", "trainer.checkpoint_every=2"]
    run_pretrain_until(make_cfg(out, None, "data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8",
                                "eval.draws=1", "trainer.val_check_interval=1000", *common), 2)
    resume = f"resume={out / 'last.ckpt'}"
    with pytest.raises(ResumeError, match=r"model.d_model 16 -> 32.*use init_from="):  # the same command without init_from
        pretrain(tiny(out, "trainer.max_steps=4", "trainer.checkpoint_every=2", resume), model_overrides=[])
    summary = pretrain(tiny(out, *common, resume), model_overrides=[])  # the same command plus resume=
    assert summary["start"] == "resume" and summary["started"] == "init_from" and summary["steps"] == 4
    meta = read_metadata(out / "last.ckpt")
    assert meta["run"]["init_from"]["path"] == str(SNAPSHOT)
    assert meta["run"]["resumes"] == [{"from": str(out / "last.ckpt"), "step": 2, "overrides": []}]


def test_conflicting_model_override_is_refused_in_one_line(tmp_path: Path) -> None:
    line = error_line(cli(f"init_from={SNAPSHOT}", f"out_dir={tmp_path}/run", "model.d_model=32"))
    assert (f"init_from={SNAPSHOT} keeps its model's architecture (caduceus_ps: arch caduceus_ps, d_model 16, "
            "n_layer 3); drop the conflicting override model.d_model=32 (the model has d_model=16)") in line
    line = error_line(cli(f"init_from={SNAPSHOT}", f"out_dir={tmp_path}/run", "model=caduceus_ph", "model.n_layer=3"))
    assert "drop the conflicting override model=caduceus_ph (arch caduceus_ph)" in line
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_experiment_hg38_finetune_states_the_setting() -> None:
    cfg = load_config("pretrain", ["experiment=hg38_finetune", f"init_from={SNAPSHOT}"])
    assert cfg.init_from == str(SNAPSHOT) and cfg.objective.name == "mdlm" and cfg.data.seq_len == 1024
    assert cfg.data.bed.endswith("human-sequences.bed") and cfg.out_dir == "runs/hg38_finetune"
    with pytest.raises(ConfigError, match=r"^init_from is required by this config: give init_from=\.\.\.$"):
        load_config("pretrain", ["experiment=hg38_finetune"])
