"""The run lifecycle of ``python -m dnadiff.pretrain`` (issue 18, parts of 13 and 12): divergence,
keep_last, one checkpoint name, refusing to mix runs, orphan temporaries, resume checks, out_dir
checks, loggers. Runs use the embedded real sample (hg38 chr2:1-2 Mb) and a tiny model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from dnadiff.checkpoint import safe_load
from dnadiff.config import ConfigError, to_typed
from dnadiff.train.config import PretrainConfig, tensorboard_available
from dnadiff.train.guards import NonFiniteError
from dnadiff.train.outdir import LOCK, RunDirError
from dnadiff.train.run import pretrain
from dnadiff.train.start import ResumeError
from tests.train.test_pretrain import REPO, make_cfg, run_pretrain, run_pretrain_until

TINY = ["data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8", "data.eval_batch_size=8",
        "model.d_model=16", "model.n_layer=1", "eval.draws=1"]


def cfg_for(out_dir: Path, *overrides: str) -> dict:
    return make_cfg(out_dir, None, *TINY, "trainer.val_check_interval=1000", *overrides)


def cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dnadiff.pretrain", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def cli_args(out_dir: Path, *overrides: str) -> list[str]:
    return [f"out_dir={out_dir}", *TINY, "model.scan_backend=torch", "trainer.enable_progress_bar=false",
            "trainer.val_check_interval=1000", *overrides]


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one-line error of a refused/failed CLI run (and that there is no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("python -m dnadiff.pretrain: error:")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file of a run folder, Hydra's per-start folders aside."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] != "hydra"}


# ------------------------------------------------------------------------------------------------ divergence

def test_divergent_run_exits_nonzero_names_the_step_and_keeps_the_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    good = cli(*cli_args(out, "trainer.max_steps=3", "trainer.checkpoint_every=3"))
    assert good.returncode == 0, good.stderr[-2000:]
    before = snapshot(out)
    earlier = json.loads((out / "metrics.json").read_text())
    # the user's report: lr=1e3 (gradient clipping on, the default) gives NaN from the second step
    res = cli(*cli_args(out, "trainer.max_steps=30", "trainer.checkpoint_every=100", "optim.lr=1e3",
                        f"resume={out / 'last.ckpt'}", "resume_override=true"))
    line = error_line(res)
    found = re.search(r"non-finite (loss|gradient of \S+) at training step (\d+): (nan|inf|-inf) "
                      r"\(trainer.on_nonfinite=stop\); (\S+) \(step 3\) is unchanged$", line)
    assert found and found.group(4) == str(out / "last.ckpt"), line
    step = int(found.group(2))
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before and k != "metrics.json"} == {
        k: v for k, v in before.items() if k != "metrics.json"}, "the failed run changed a file of the good one"
    assert all(k.startswith("logs/version_1/") for k in after.keys() - before.keys())
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed" and record["failure"]["step"] == step > 3
    assert record["failure"]["value"] in ("nan", "inf", "-inf") and record["last_good_step"] == 3
    assert record["previous"] == earlier, "the good run's figures were lost"
    # a fresh diverging run without clipping: only finite checkpoints, none at or after the bad step
    fresh = tmp_path / "fresh"
    line = error_line(cli(*cli_args(fresh, "trainer.max_steps=30", "trainer.checkpoint_every=1", "optim.lr=1e3",
                                    "trainer.gradient_clip_val=null")))
    step = int(re.search(r"at training step (\d+): ", line).group(1))
    written = sorted((fresh / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in written] == [f"step{s:07d}.ckpt" for s in range(max(1, step - 2), step)]
    for ckpt in [fresh / "last.ckpt", *written]:
        state = safe_load(ckpt)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt
    assert safe_load(fresh / "last.ckpt")["global_step"] == step - 1
    assert not list(fresh.rglob("*.tmp"))


class PoisonGradient(L.Callback):
    """Puts one NaN into one gradient at one training step (after backward, before the update), and
    keeps the weights seen around every step."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.weights[trainer.global_step] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step + 1 == self.step:
            next(p for n, p in pl_module.named_parameters() if n == "model.embedding.weight").grad[0, 0] = float("nan")


def test_skip_policy_drops_the_update_and_counts_it(tmp_path: Path) -> None:
    poison = PoisonGradient(step=3)
    cfg = to_typed(cfg_for(tmp_path / "skip", "trainer.max_steps=5", "trainer.on_nonfinite=skip",
                           "trainer.checkpoint_every=5"), PretrainConfig)
    summary = pretrain(cfg, callbacks=[poison])
    assert summary["status"] == "complete" and summary["steps"] == 5
    assert summary["nonfinite_skipped_steps"] == 1 and summary["skipped_steps"] == [3]
    w = poison.weights
    assert all(torch.equal(w[2][k], w[3][k]) for k in w[2]), "the skipped step changed the weights"
    assert any(not torch.equal(w[1][k], w[2][k]) for k in w[1]), "a normal step changed nothing"
    ckpt = safe_load(tmp_path / "skip" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "skip" / "metrics.json").read_text())["skipped_steps"] == [3]
    # the same fault under the default policy: stop, naming the parameter and the step
    cfg = to_typed(cfg_for(tmp_path / "stop", "trainer.max_steps=5", "trainer.checkpoint_every=1"), PretrainConfig)
    with pytest.raises(NonFiniteError, match=r"non-finite gradient of model\.embedding\.weight at training step 3: "
                                             r"nan .*last good checkpoint is .*last\.ckpt \(step 2\)"):
        pretrain(cfg, callbacks=[PoisonGradient(step=3)])
    # and too many skips stop a skip run
    cfg = to_typed(cfg_for(tmp_path / "many", "trainer.max_steps=5", "trainer.on_nonfinite=skip",
                           "trainer.max_skipped_steps=0"), PretrainConfig)
    with pytest.raises(NonFiniteError, match="more than trainer.max_skipped_steps=0"):
        pretrain(cfg, callbacks=[PoisonGradient(step=2)])


# ----------------------------------------------------------------------------- checkpoints: keep_last, one name

def test_keep_last_holds_k_files_and_last_ckpt_is_the_newest(tmp_path: Path) -> None:
    for k in (2, 3):
        out = tmp_path / f"k{k}"
        run_pretrain(cfg_for(out, "trainer.max_steps=5", "trainer.checkpoint_every=1", f"trainer.keep_last={k}"))
        kept = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert kept == [f"step{s:07d}.ckpt" for s in range(6 - k, 6)]
        assert os.path.samefile(out / "last.ckpt", out / "checkpoints" / "step0000005.ckpt")
        assert safe_load(out / "last.ckpt")["global_step"] == 5
        assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "last.ckpt", "logs", "metrics.json"]


def test_one_name_fresh_runs_refuse_an_occupied_folder_and_change_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(*cli_args(out, "trainer.max_steps=2", "trainer.checkpoint_every=2")).returncode == 0
    before = snapshot(out)
    line = error_line(cli(*cli_args(out, "trainer.max_steps=2")))
    assert f"out_dir={out} already holds a run" in line and f"resume={out / 'last.ckpt'}" in line
    assert "overwrite=true" in line
    # a resume that changes the schedule is refused and names the key
    line = error_line(cli(*cli_args(out, "trainer.max_steps=4", f"resume={out / 'last.ckpt'}")))
    assert "trainer.max_steps 2 -> 4" in line and "resume_override=true" in line
    assert snapshot(out) == before, "a refused start changed a file of the earlier run"
    assert not list(out.glob("last-v*.ckpt"))


def test_overwrite_replaces_the_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_pretrain(cfg_for(out, "trainer.max_steps=4", "trainer.checkpoint_every=1"))
    assert len(list((out / "logs").iterdir())) == 1
    summary = run_pretrain(cfg_for(out, "trainer.max_steps=1", "trainer.checkpoint_every=1", "overwrite=true",
                                   "seed=7"))
    assert summary["steps"] == 1 and safe_load(out / "last.ckpt")["global_step"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step0000001.ckpt"]
    assert [p.name for p in (out / "logs").iterdir()] == ["version_1"]
    assert safe_load(out / "last.ckpt")["dnadiff"]["config"]["seed"] == 7


def test_resume_refuses_another_model_or_objective_and_changed_schedule(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["trainer.max_steps=2", "trainer.checkpoint_every=2"]
    run_pretrain(cfg_for(out, *base))
    resume = f"resume={out / 'last.ckpt'}"
    with pytest.raises(ResumeError, match=r"another model or objective \(.*objective.name \"mdlm\" -> \"sedd\".*"
                                          r"use init_from="):
        run_pretrain(cfg_for(out, *base, resume, "objective=sedd"))
    with pytest.raises(ResumeError, match=r"model.d_model 16 -> 32"):
        run_pretrain(cfg_for(out, *base, resume, "model.d_model=32"))
    with pytest.raises(ResumeError, match=r"data.seq_len 64 -> 32; optim.lr 0.003 -> 0.01; optim.warmup_steps 30 -> 5; give"):
        run_pretrain(cfg_for(out, *base, resume, "optim.lr=1e-2", "optim.warmup_steps=5", "data.seq_len=32"))
    with pytest.raises(ResumeError, match=r"data.batch_size x world size .* \"4 x 1\" -> \"2 x 1\""):
        run_pretrain(cfg_for(out, *base, resume, "data.batch_size=2"))
    # resume_override: continues, and the metadata records the change
    run_pretrain(cfg_for(out, "trainer.max_steps=3", "trainer.checkpoint_every=2", resume, "resume_override=true"))
    meta = safe_load(out / "last.ckpt")["dnadiff"]
    assert meta["run"]["started"] == "fresh"
    assert meta["run"]["resumes"] == [{"from": str(out / "last.ckpt"), "step": 2,
                                       "overrides": [{"key": "trainer.max_steps", "was": 2, "now": 3}]}]
    assert json.loads((out / "metrics.json").read_text())["start"] == "resume"


class LearningRates(L.Callback):
    """The learning rate each optimiser step uses (after any warm-up / schedule)."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs[trainer.global_step + 1] = optimizer.param_groups[0]["lr"]


def test_resume_override_applies_the_new_schedule_from_the_first_resumed_step(tmp_path: Path) -> None:
    from dnadiff.train.optim import warmup_cosine

    out = tmp_path / "run"
    run_pretrain_until(cfg_for(out, "trainer.max_steps=10", "trainer.checkpoint_every=5"), 5)
    seen = LearningRates()
    cfg = to_typed(cfg_for(out, "trainer.max_steps=7", "optim.lr=1e-2", "optim.warmup_steps=2",
                           "trainer.checkpoint_every=7", f"resume={out / 'last.ckpt'}", "resume_override=true"),
                   PretrainConfig)
    pretrain(cfg, callbacks=[seen])
    assert seen.lrs == {6: pytest.approx(1e-2 * warmup_cosine(5, 2, 7, 0.1)),
                        7: pytest.approx(1e-2 * warmup_cosine(6, 2, 7, 0.1))}
    sched = safe_load(out / "last.ckpt")["lr_schedulers"][0]
    assert sched["base_lrs"] == [1e-2, 1e-2] and sched["last_epoch"] == 7


def test_forty_steps_equal_twenty_plus_resume_twenty_weights_and_optimiser(tmp_path: Path) -> None:
    common = ["trainer.max_steps=40", "trainer.checkpoint_every=20", "data.num_workers=0"]
    run_pretrain(cfg_for(tmp_path / "straight", *common))
    run_pretrain_until(cfg_for(tmp_path / "split", *common), 20)
    run_pretrain(cfg_for(tmp_path / "split", *common, f"resume={tmp_path / 'split' / 'last.ckpt'}"))
    a, b = (safe_load(tmp_path / name / "last.ckpt") for name in ("straight", "split"))
    assert a["global_step"] == b["global_step"] == 40
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    oa, ob = a["optimizer_states"][0], b["optimizer_states"][0]
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(oa["state"][i][name], ob["state"][i][name]), (i, name)
    assert a["lr_schedulers"] == b["lr_schedulers"]


# ----------------------------------------------------------------------------------- interruption, two processes

def test_killed_write_leaves_a_temporary_that_the_next_start_removes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_pretrain(cfg_for(out, "trainer.max_steps=2", "trainer.checkpoint_every=2"))
    digest = hashlib.sha256((out / "last.ckpt").read_bytes()).hexdigest()
    writer = (  # a checkpoint write through dnadiff.atomic, killed half way
        "import sys, time, torch; from dnadiff.atomic import atomic_write\n"
        "def write(fh):\n"
        "    fh.write(b'x' * 300000); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"atomic_write({str(out / 'last.ckpt')!r}, write)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    orphans = list(out.glob(".last.ckpt.*.tmp"))
    assert len(orphans) == 1 and orphans[0].stat().st_size == 300000
    assert hashlib.sha256((out / "last.ckpt").read_bytes()).hexdigest() == digest
    res = cli(*cli_args(out, "trainer.max_steps=2", "trainer.checkpoint_every=2", f"resume={out / 'last.ckpt'}"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"removed {orphans[0]} (300,000 bytes), the temporary file of a write that was interrupted" in res.stdout
    assert not list(out.rglob("*.tmp"))


def test_second_process_on_one_out_dir_refuses_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "dnadiff.pretrain",
                              *cli_args(out, "trainer.max_steps=100000", "trainer.checkpoint_every=2")],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (out / "checkpoints").is_dir() or not (out / "last.ckpt").is_file():
            assert first.poll() is None and time.time() < deadline, "the first run did not start training"
            time.sleep(0.2)
        assert (out / LOCK).read_text().split()[0] == str(first.pid)
        line = error_line(cli(*cli_args(out, "trainer.max_steps=4", f"resume={out / 'last.ckpt'}")))
        assert f"out_dir={out} is in use by another run (process {first.pid} on" in line
        assert first.poll() is None, "the refused second process disturbed the first"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / LOCK).read_text().split()[0] == str(first.pid), "kill -9 left no stale lock to test"
    step = safe_load(out / "last.ckpt")["global_step"]
    res = cli(*cli_args(out, f"trainer.max_steps={step + 1}", "trainer.checkpoint_every=2",
                        f"resume={out / 'last.ckpt'}", "resume_override=true"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"took over the lock {out / LOCK} of an earlier run" in res.stdout
    assert f"process {first.pid} on" in res.stdout
    assert not (out / LOCK).exists() and safe_load(out / "last.ckpt")["global_step"] == step + 1


def test_lock_is_exclusive_within_one_machine(tmp_path: Path) -> None:
    from dnadiff.train.outdir import RunLock

    a = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(RunDirError, match=rf"in use by another run \(process {os.getpid()} on"):
            RunLock(tmp_path).acquire()
    finally:
        a.release()
    b = RunLock(tmp_path).acquire()
    assert b.taken_over is None
    b.release()


# ------------------------------------------------------------------------------------------ out_dir, loggers

def test_out_dir_that_is_a_file_or_not_writable_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    line = error_line(cli(f"out_dir={a_file}", "trainer.max_steps=1"))
    assert line.endswith(f"out_dir={a_file} is a file, not a folder")
    line = error_line(cli(f"out_dir={a_file}/run", "trainer.max_steps=1"))
    assert f"out_dir={a_file}/run: {a_file} is a file, not a folder" in line
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    with pytest.raises(ConfigError, match="is a file"):
        to_typed(cfg_for(a_file), PretrainConfig)


def test_out_dir_without_write_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder unwritable")
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([*prefix, sys.executable, "-m", "dnadiff.pretrain", f"out_dir={locked}/run",
                          "trainer.max_steps=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    line = error_line(res)
    assert line.endswith(f"out_dir={locked}/run is not writable (permission denied) ({locked} is the nearest existing folder)")
    assert list(locked.iterdir()) == []


def test_out_dir_on_a_read_only_file_system_is_refused(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro,size=64k none {mount}"],
                           capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here (unshare -m): {probe.stderr.strip() if probe else 'no unshare'}")
    script = (f"mount -t tmpfs -o ro,size=64k none {mount} && cd {REPO} && "
              f"OMP_NUM_THREADS=1 {sys.executable} -m dnadiff.pretrain out_dir={mount}/run trainer.max_steps=1")
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert error_line(res).endswith(f"out_dir={mount}/run is on a read-only file system ({mount} is the nearest "
                                    "existing folder)")


def test_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_last_ckpt(tmp_path: Path) -> None:
    """A 256 KiB file system: the first checkpoint (~120 KB) fits, the second does not."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=256k none {mount}"], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (unshare -m)")
    run = mount / "run"
    check = ("import sys; from pathlib import Path; from dnadiff.checkpoint import load_model, safe_load; "
             f"run = Path({str(run)!r}); load_model(run / 'last.ckpt'); "
             "print('STEP', safe_load(run / 'last.ckpt')['global_step']); print('TMP', sorted(run.rglob('*.tmp')))")
    args = " ".join(cli_args(run, "trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.logger=none"))
    script = (f"mount -t tmpfs -o size=256k none {mount} && cd {REPO} && export OMP_NUM_THREADS=1 && "
              f"{sys.executable} -m dnadiff.pretrain {args}; echo EXIT=$?; {sys.executable} -c \"{check}\"")
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "EXIT=2" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    res.returncode = 2  # the shell's own status is the check's
    line = error_line(res)
    assert line.endswith(f"writing checkpoint {run}/checkpoints/step0000002.ckpt failed (No space left on device); "
                         f"{run}/last.ckpt is unchanged")
    assert "STEP 1" in res.stdout and "TMP []" in res.stdout


def test_logger_none_and_tensorboard(tmp_path: Path) -> None:
    run_pretrain(cfg_for(tmp_path / "none", "trainer.max_steps=1", "trainer.logger=none"))
    assert not (tmp_path / "none" / "logs").exists()
    with pytest.raises(ConfigError, match="trainer.logger must be one of csv, tensorboard, none; got 'wandb'"):
        to_typed(cfg_for(tmp_path / "x", "trainer.logger=wandb"), PretrainConfig)
    if tensorboard_available():
        run_pretrain(cfg_for(tmp_path / "tb", "trainer.max_steps=2", "trainer.logger=tensorboard"))
        assert list((tmp_path / "tb" / "logs" / "version_0").glob("events.out.tfevents.*"))
    else:
        line = error_line(cli(f"out_dir={tmp_path}/tb", "trainer.logger=tensorboard"))
        assert "trainer.logger=tensorboard needs the tensorboard package" in line
        assert "pip install 'dnadiff[tensorboard]'" in line
        assert not (tmp_path / "tb").exists()


def test_new_trainer_keys_are_validated_naming_the_key(tmp_path: Path) -> None:
    for override, message in [("trainer.keep_last=0", "trainer.keep_last must be an integer >= 1, got 0"),
                              ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite must be one of stop, skip"),
                              ("trainer.max_skipped_steps=-1", "trainer.max_skipped_steps must be an integer >= 0"),
                              (f"init_from={tmp_path}/missing", f"init_from={tmp_path}/missing not found"),
                              (f"resume={tmp_path}/missing.ckpt", f"resume={tmp_path}/missing.ckpt: checkpoint not found")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            to_typed(cfg_for(tmp_path / "run", override), PretrainConfig)
    assert not (tmp_path / "run").exists()
