"""The bad-input corpus: every entry point, fed bad configs, sequence files, checkpoints, output
paths and fine-tuning data, answers with exit status 2 and one line on stderr that names the
culprit (key, file, line, contig, folder), prints no traceback, and leaves the working folder as
it was (no new file, no temporary left, every file of an earlier good run unchanged); the input
folders are left as they were too.

Each case runs the entry point's ``main()`` with its command line in ``sys.argv`` and the case's
folder as the working directory (what ``python -m dnadiff.X ...`` runs); the cases marked
``SUB`` run as a real ``python -m`` subprocess instead, so that the two agree is tested too.
Faults the file system cannot be told to make (a full disk; a read-only folder when the tests
run as root, who may write anywhere) are injected at the operating-system calls the atomic writer
makes (``os.fsync``, ``tempfile.mkstemp``, ``os.access``).

Inputs are built once per session from real sequence (the embedded hg38 chr2 sample) and a real,
tiny pretraining run; the "earlier good runs" are real runs of each entry point.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import dnadiff
from dnadiff.data.genome import Genome
from dnadiff.resources import default_fasta

REPO = Path(dnadiff.__file__).resolve().parents[1]
TASK = "human_enhancers_cohn"
TINY_MODEL = ["model.d_model=8", "model.n_layer=1", "model.scan_backend=torch"]
FT_FAST = ["trainer.max_epochs=1", "cv.folds=2", "baseline=false", "progress=false", "data.max_len=64",
           "trainer.batch_size=8", *TINY_MODEL]
SUB = True  # run this case as a real subprocess
CORPUS_LOG = "DNADIFF_CORPUS_LOG"  # =PATH: append each case's error line to PATH (to review the messages)


# --------------------------------------------------------------------------- inputs, built once
def _fasta_text(records: dict[str, str], width: int = 60) -> str:
    lines = []
    for name, seq in records.items():
        lines.append(f">{name}")
        lines += [seq[i:i + width] for i in range(0, len(seq), width)]
    return "\n".join(lines) + "\n"


def _write_fasta(path: Path, records: dict[str, str], index: bool = True) -> Path:
    path.write_text(_fasta_text(records))
    if index:
        Genome(path)  # builds the .fai
    return path


def _bgzip(src: Path, dst: Path) -> Path:
    from Bio import bgzf

    with bgzf.BgzfWriter(str(dst), "wb") as out:
        out.write(src.read_bytes())
    return dst


class Evil:
    """A pickle that, when unpickled without weights_only, runs code (writes its marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


@dataclass
class Assets:
    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def _genome_records() -> dict[str, str]:
    g = Genome(default_fasta())
    contig = next(iter(g.contigs))
    return {"chrA": g.fetch(contig, 1_000_000, 1_012_000), "chrB": g.fetch(contig, 1_100_000, 1_112_000)}


def _sequence_inputs(d: Path, a: dict[str, Path]) -> None:
    recs = _genome_records()
    a["two_fa"] = _write_fasta(d / "two.fa", recs)
    full_gz = _bgzip(a["two_fa"], d / "two.fa.gz")
    Genome(full_gz)  # .fai + .gzi of the whole file
    data = full_gz.read_bytes()
    a["trunc_gz"] = d / "trunc.fa.gz"
    a["trunc_gz"].write_bytes(data[: len(data) // 2])
    t2 = d / "trunc_indexed"
    t2.mkdir()
    a["trunc_gz_indexed"] = t2 / "two.fa.gz"
    a["trunc_gz_indexed"].write_bytes(data[: len(data) // 2])
    for ext in (".fai", ".gzi"):  # the whole file's index, newer than the truncated copy
        shutil.copy(f"{full_gz}{ext}", f"{a['trunc_gz_indexed']}{ext}")
    plain_gz = d / "plain_trunc.fa.gz"
    import gzip

    plain_gz.write_bytes(gzip.compress(a["two_fa"].read_bytes())[:5000])
    a["plain_trunc_gz"] = plain_gz

    def renamed(name: str, old: str, new: str) -> Path:
        folder = d / name
        folder.mkdir()
        fa = shutil.copy(a["two_fa"], folder / "two.fa")
        shutil.copy(f"{a['two_fa']}.fai", folder / "two.fa.fai")
        Path(fa).write_text(Path(fa).read_text().replace(f">{old}\n", f">{new}\n"))
        later = Path(fa).stat().st_mtime + 1  # an index as new as the edit (sed -i in the same second)
        os.utime(folder / "two.fa.fai", (later, later))
        return Path(fa)

    a["renamed_first"] = renamed("renamed_first", "chrA", "chrZ")
    a["renamed_last"] = renamed("renamed_last", "chrB", "chrY")
    a["renamed_longer"] = renamed("renamed_longer", "chrA", "chrA_v2")
    in_test_block = 9_500  # chrB:9,001-10,000 is a test block of data.split_block=1000
    seq = recs["chrB"]
    a["digits_fa"] = _write_fasta(d / "digits.fa", {"chrA": recs["chrA"], "chrB": seq[:in_test_block] + "12" + seq[in_test_block + 2:]})
    a["star_fa"] = _write_fasta(d / "star.fa", {"chrA": recs["chrA"], "chrB": seq[:in_test_block] + "*" + seq[in_test_block + 1:]})
    a["short_fa"] = _write_fasta(d / "short.fa", {"short1": recs["chrA"][:50], "short2": recs["chrA"][100:140]})
    a["short_bed"] = d / "short.bed"
    a["short_bed"].write_text("short1\t0\t50\ttest\nshort2\t0\t40\ttest\nshort1\t0\t50\ttrain\n")
    a["nrich_fa"] = _write_fasta(d / "nrich.fa", {"chrN": "N" * 3000, "chrA": recs["chrA"][:3000]})
    a["nrich_bed"] = d / "nrich.bed"
    a["nrich_bed"].write_text("chrN\t0\t3000\ttest\nchrA\t0\t3000\ttrain\n")
    a["bad_bed"] = d / "bad.bed"
    a["bad_bed"].write_text("chrA\t0\t1000\ttest\nchrA\tten\t2000\ttest\n")
    a["unknown_contig_bed"] = d / "unknown.bed"
    a["unknown_contig_bed"].write_text("chrA\t0\t1000\ttrain\nchrQ\t0\t1000\ttest\n")
    a["not_fasta"] = d / "notes.txt"
    a["not_fasta"].write_text("these are my notes, not a genome\n")
    a["png"] = d / "picture.png"
    a["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    a["protein_fa"] = d / "protein.fa"
    a["protein_fa"].write_text(">sp|P69905|HBA_HUMAN\nMVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF\nDLSHGSAQVKGHGKKVADALTNAVAHVDDMPNALSALSDLHAHKL*\n")
    a["digits_samples"] = d / "numbered.fa"
    a["digits_samples"].write_text(">s1\n1 acgtacgtac gtacgtacgt\n61 acgtacgtac gtacgt\n")
    a["empty"] = d / "empty.fa"
    a["empty"].write_text("")


def _checkpoint_inputs(d: Path, a: dict[str, Path]) -> None:
    from dnadiff.pretrain import run as pretrain
    from tests.train.test_pretrain import make_cfg

    cfg = make_cfg(d / "run", None, "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.checkpoint_every=2",
                   "data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=4", "eval.draws=1",
                   "model.d_model=16", "model.n_layer=1")
    pretrain(cfg)
    a["ckpt"] = d / "run" / "last.ckpt"
    ckpt = torch.load(a["ckpt"], weights_only=True)
    other = {**ckpt, "dnadiff": {**ckpt["dnadiff"], "model": {**ckpt["dnadiff"]["model"], "d_model": 32}}}
    a["ckpt_other_size"] = d / "other_size.ckpt"
    torch.save(other, a["ckpt_other_size"])
    mlm = {**ckpt, "dnadiff": {**ckpt["dnadiff"], "objective": {**ckpt["dnadiff"]["objective"], "name": "mlm"}}}
    a["ckpt_mlm"] = d / "mlm.ckpt"
    torch.save(mlm, a["ckpt_mlm"])
    raw = a["ckpt"].read_bytes()
    a["ckpt_truncated"] = d / "truncated.ckpt"
    a["ckpt_truncated"].write_bytes(raw[: len(raw) // 2])
    a["ckpt_text"] = d / "notes.ckpt"
    a["ckpt_text"].write_text("not a checkpoint\n")
    a["marker"] = d / "PAYLOAD_RAN"
    a["ckpt_evil"] = d / "evil.ckpt"
    torch.save({"state_dict": {}, "dnadiff": Evil(a["marker"])}, a["ckpt_evil"])
    a["ckpt_evil_pickle"] = d / "evil_pickle.ckpt"
    a["ckpt_evil_pickle"].write_bytes(pickle.dumps({"state_dict": Evil(a["marker"])}, protocol=2))  # torch's legacy format
    from dnadiff.checkpoint import export_model

    a["export"] = export_model(a["ckpt"], d / "export")
    a["export_damaged"] = d / "export_damaged"
    shutil.copytree(a["export"], a["export_damaged"])
    weights = a["export_damaged"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])


def _bench_root(root: Path, layout: dict[str, int], split: str = "train", pos: int = 1_200_000) -> Path:
    """A genomic-benchmarks folder of TASK with ``layout`` {class: number of sequences} of real DNA
    (consecutive 60 bp pieces of hg38 chr2 from ``pos``)."""
    g = Genome(default_fasta())
    contig = next(iter(g.contigs))
    for cls, n in layout.items():
        folder = root / TASK / split / cls
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}.txt").write_text(g.fetch(contig, pos, pos + 60))
            pos += 60
    return root


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    d = tmp_path_factory.mktemp("bad_input_assets")
    a: dict[str, Path] = {}
    _sequence_inputs(d, a)
    _checkpoint_inputs(d, a)
    a["bench"] = _bench_root(d / "bench", {"negative": 8, "positive": 8})
    _good_runs(d / "good", a)
    return Assets(d, a)


def _good_runs(good: Path, a: dict[str, Path]) -> None:
    """An earlier, successful run of each entry point (each into its own folder)."""
    from dnadiff.evaluate import evaluate
    from dnadiff.evaluate_samples import evaluate_samples
    from dnadiff.export import export
    from dnadiff.finetune import finetune
    from dnadiff.generate import generate
    from dnadiff.cli import load_config

    def cfg(name: str, *overrides: str) -> Any:
        return load_config(name, list(overrides))

    generate(cfg("generate", f"ckpt={a['ckpt']}", f"out={good / 'generate' / 'samples.fa'}", "num_samples=8",
                 "length=64", "steps=8"))
    evaluate(cfg("evaluate", f"ckpt={a['ckpt']}", f"out={good / 'evaluate' / 'eval.json'}",
                 "data.max_eval_windows=4", "eval.draws=1"))
    evaluate_samples(cfg("evaluate_samples", f"samples={good / 'generate' / 'samples.fa'}",
                         f"out={good / 'evaluate_samples' / 'report.json'}", f"reference.fasta={a['two_fa']}",
                         "metrics.motifs=false"))
    export(cfg("export", f"ckpt={a['ckpt']}", f"out={good / 'export'}"))
    finetune(cfg("finetune", f"data.root={a['bench']}", f"out_dir={good / 'finetune'}",
                 f"save_classifier={good / 'finetune' / 'classifier'}", *FT_FAST))
    for job in ("generate", "evaluate", "evaluate_samples", "export", "finetune"):
        a[f"good_{job}"] = good / job
    a["samples"] = good / "generate" / "samples.fa"
    a["classifier"] = good / "finetune" / "classifier"


def test_fixtures_are_what_the_cases_say(assets: Assets, tmp_path: Path) -> None:
    """The bad inputs are really bad in the way each case claims (so a passing case means something)."""
    assert (assets["good_finetune"] / TASK / "cv.json").is_file()
    assert sorted(p.name for p in assets["good_evaluate_samples"].iterdir()) == [
        "report.json", "report_gc.png", "report_kmer6.png"]
    # the malicious checkpoint runs its payload under a plain unpickler
    live = tmp_path / "LIVE_MARKER"
    torch.save({"x": Evil(live)}, tmp_path / "live.ckpt")
    torch.load(tmp_path / "live.ckpt", weights_only=False)
    assert live.read_text() == "payload ran"
    live.unlink()
    pickle.loads(pickle.dumps({"state_dict": Evil(live)}, protocol=2))  # how ckpt_evil_pickle is made
    assert live.read_text() == "payload ran"
    # the renamed contigs have the lengths the old index records (only the names differ)
    for name in ("renamed_first", "renamed_last"):
        fai = Path(f"{assets[name]}.fai").read_text().split()
        assert fai[0] == "chrA" and os.path.getmtime(f"{assets[name]}.fai") > os.path.getmtime(assets[name])
    # the other-size checkpoint's weights are the good ones; its config asks for another d_model
    ok, other = (torch.load(assets[k], weights_only=True) for k in ("ckpt", "ckpt_other_size"))
    assert ok["dnadiff"]["model"]["d_model"] == 16 and other["dnadiff"]["model"]["d_model"] == 32


# --------------------------------------------------------------------------- the harness
@dataclass
class Env:
    assets: Assets
    work: Path
    inp: Path
    monkeypatch: pytest.MonkeyPatch
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.work / "out"

    def vars(self) -> dict[str, str]:
        return {**{k: str(v) for k, v in self.assets.paths.items()}, "work": str(self.work), "out": str(self.out),
                "inp": str(self.inp)}


@dataclass(frozen=True)
class Case:
    id: str
    entry: str  # dnadiff.<entry>
    args: tuple[str, ...]  # the command line; {name} = an asset path, {out}, {inp}, {work}
    names: tuple[str, ...]  # what the one error line must contain
    prepare: Callable[[Env], None] | None = None  # builds inputs or injects a fault
    earlier: str | None = None  # copy this earlier good run into {out} first
    sub: bool = False


def snapshot(folder: Path) -> dict[str, Any]:
    """Every path under ``folder``: its kind, and a file's bytes digest and mode."""
    out: dict[str, Any] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", stat.S_IMODE(p.stat().st_mode))
        else:
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
    return out


@contextlib.contextmanager
def cli_warnings() -> Iterator[None]:
    """Warnings as a ``python -m`` run shows them: printed on stderr under Python's default filters
    (pytest would otherwise collect them, and a case could pass with a warning above its one line)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


def run_entry(case: Case, env: Env, capfd: pytest.CaptureFixture) -> tuple[int | None, str]:
    """Run the entry point; returns (exit status, stderr). An exception escaping ``main`` is a
    failure (its traceback is returned as stderr)."""
    args = [a.format(**env.vars()) for a in case.args]
    if case.sub:
        environ = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        environ.pop("DNADIFF_DEBUG", None)
        proc = subprocess.run([sys.executable, "-m", f"dnadiff.{case.entry}", *args], cwd=env.work, env=environ,
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stderr
    from hydra.core.global_hydra import GlobalHydra

    module = importlib.import_module(f"dnadiff.{case.entry}")
    GlobalHydra.instance().clear()
    env.monkeypatch.setattr(sys, "argv", [f"python -m dnadiff.{case.entry}", *args])
    env.monkeypatch.chdir(env.work)
    env.monkeypatch.delenv("DNADIFF_DEBUG", raising=False)
    capfd.readouterr()
    code: int | None
    try:
        with cli_warnings():
            module.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - any escape is what the case must not see
        import traceback

        return None, capfd.readouterr().err + traceback.format_exc()
    finally:
        GlobalHydra.instance().clear()
    return code, capfd.readouterr().err


# --------------------------------------------------------------------------- faults and inputs
def disk_full(after: int = 0) -> Callable[[Env], None]:
    """The disk fills up: the fsync of the (after+1)-th file written fails with ENOSPC."""

    def prepare(env: Env) -> None:
        calls = {"n": 0}
        real = os.fsync

        def fsync(fd: int) -> None:
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        env.monkeypatch.setattr(os, "fsync", fsync)

    return prepare


def deny_writes(rel: str) -> Callable[[Env], None]:
    """Folder ``{work}/rel`` (created) is not writable: chmod 555, and for root, who may write
    anyway, the refusal is injected where the writer asks (os.access, tempfile.mkstemp)."""

    def prepare(env: Env) -> None:
        folder = env.work / rel
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        env.cleanups.append(lambda: folder.chmod(0o755))
        if not os.access(folder, os.W_OK):
            return
        inside = lambda p: Path(os.path.abspath(p)).is_relative_to(folder)  # noqa: E731
        real_access, real_mkstemp = os.access, tempfile.mkstemp

        def access(path: Any, mode: int, *a: Any, **k: Any) -> bool:
            return False if mode & os.W_OK and inside(path) else real_access(path, mode, *a, **k)

        def mkstemp(*a: Any, dir: Any = None, **k: Any) -> Any:
            if dir is not None and inside(dir):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
            return real_mkstemp(*a, dir=dir, **k)

        env.monkeypatch.setattr(os, "access", access)
        env.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return prepare


def read_only_file(rel: str) -> Callable[[Env], None]:
    """``{work}/rel`` (an earlier output) is read-only (chmod 444)."""

    def prepare(env: Env) -> None:
        (env.work / rel).chmod(0o444)

    return prepare


def make_file(rel: str, text: str = "I am a file\n") -> Callable[[Env], None]:
    def prepare(env: Env) -> None:
        (env.work / rel).parent.mkdir(parents=True, exist_ok=True)
        (env.work / rel).write_text(text)

    return prepare


def bench(layout: dict[str, int], split: str = "train", extra: dict[str, int] | None = None,
          same: bool = False) -> Callable[[Env], None]:
    """A genomic-benchmarks root at {inp}/bench with ``layout`` (and ``extra`` classes in the test
    split: other sequences than train's, or with ``same`` the very same ones)."""

    def prepare(env: Env) -> None:
        _bench_root(env.inp / "bench", layout, split)
        if extra:
            _bench_root(env.inp / "bench_extra", extra, "test", pos=1_200_000 if same else 1_300_000)
            shutil.copytree(env.inp / "bench_extra" / TASK / "test", env.inp / "bench" / TASK / "test")

    return prepare


def bench_file(rel: str, text: str) -> Callable[[Env], None]:
    def prepare(env: Env) -> None:
        _bench_root(env.inp / "bench", {"negative": 8, "positive": 8})
        (env.inp / "bench" / TASK / "train" / rel).write_text(text)

    return prepare


def damaged_classifier(env: Env, how: str) -> None:
    """A copy of the good run's saved classifier at {inp}/clf: truncated weights, or a config of another size."""
    import json

    clf = env.inp / "clf"
    shutil.copytree(env.assets["classifier"], clf)
    if how == "weights":
        weights = clf / "classifier.safetensors"
        weights.write_bytes(weights.read_bytes()[:200])
    else:
        cfg = json.loads((clf / "config.json").read_text())
        cfg["model"]["d_model"] = 2 * cfg["model"]["d_model"]
        (clf / "config.json").write_text(json.dumps(cfg))


def cli(*parts: Any) -> tuple[str, ...]:
    """A command line from overrides and tuples of overrides; a later ``key=value`` replaces an earlier one."""
    flat: dict[str, str] = {}
    for part in parts:
        for item in (part if isinstance(part, tuple) else (part,)):
            flat[item.split("=", 1)[0]] = item
    return tuple(flat.values())


GEN = ("ckpt={ckpt}", "num_samples=2", "length=32", "steps=4")
EVAL = ("ckpt={ckpt}", "data.max_eval_windows=8", "eval.draws=1")
EVAL_SEQ = cli(EVAL, "data.max_eval_windows=64", "data.split_block=1000", "out={out}/eval.json")  # every test window
ES = ("samples={samples}", "reference.fasta={two_fa}", "metrics.motifs=false")
FT = ("data.root={bench}", "out_dir={out}", *FT_FAST)
FT_INP = ("data.root={inp}/bench", "out_dir={out}", *FT_FAST)

CASES: list[Case] = [
    # ---- config values: wrong types, typos, out-of-range values, missing keys (every entry point)
    Case("pretrain-type", "pretrain", ("trainer.max_steps=abc", "out_dir={work}/run"), ("trainer.max_steps", "'abc'"), sub=SUB),
    Case("pretrain-steps-0", "pretrain", ("trainer.max_steps=0", "out_dir={work}/run"), ("trainer.max_steps", "got 0")),
    Case("pretrain-steps-negative", "pretrain", ("trainer.max_steps=-5", "out_dir={work}/run"), ("trainer.max_steps", "-5")),
    Case("pretrain-accumulate-0", "pretrain", ("trainer.accumulate_grad_batches=0", "out_dir={work}/run"),
         ("trainer.accumulate_grad_batches",)),
    Case("pretrain-draws-0", "pretrain", ("eval.draws=0", "out_dir={work}/run"), ("eval.draws", "got 0")),
    Case("pretrain-typo-trainer", "pretrain", ("+trainer.max_stepz=3", "out_dir={work}/run"), ("trainer.max_stepz",)),
    Case("pretrain-typo-objective", "pretrain", ("+objective.epsilon=0.1", "out_dir={work}/run"), ("objective.epsilon",)),
    Case("pretrain-typo-optim", "pretrain", ("+optim.learning_rate=1e-3", "out_dir={work}/run"), ("optim.learning_rate",)),
    Case("pretrain-typo-top", "pretrain", ("+max_steps=3", "out_dir={work}/run"), ("max_steps",)),
    Case("pretrain-lr-negative", "pretrain", ("optim.lr=-1", "out_dir={work}/run"), ("optim.lr", "-1")),
    Case("pretrain-objective-name", "pretrain", ("objective.name=diffusion", "out_dir={work}/run"),
         ("objective.name", "diffusion")),
    Case("pretrain-ar-on-bidirectional", "pretrain", ("objective=ar", "out_dir={work}/run"), ("objective=ar", "caduceus_ps")),
    Case("pretrain-model-group", "pretrain", ("model=transformer", "out_dir={work}/run"),
         ("model/transformer", "caduceus_ps")),
    Case("pretrain-model-type", "pretrain", ("model.d_model=wide", "out_dir={work}/run"), ("model.d_model", "'wide'")),
    Case("pretrain-n-frac", "pretrain", ("data.max_n_frac=1.5", "out_dir={work}/run"), ("data.max_n_frac", "1.5")),
    Case("evaluate-no-ckpt", "evaluate", (), ("ckpt is required",), sub=SUB),
    Case("evaluate-draws-0", "evaluate", ("ckpt={ckpt}", "eval.draws=0"), ("eval.draws", "got 0")),
    Case("evaluate-draws-type", "evaluate", ("ckpt={ckpt}", "eval.draws=many"), ("eval.draws", "'many'")),
    Case("evaluate-split", "evaluate", ("ckpt={ckpt}", "split=holdout"), ("split", "holdout")),
    Case("evaluate-typo", "evaluate", ("ckpt={ckpt}", "+eval.drawz=2"), ("eval.drawz",)),
    Case("evaluate-typo-data", "evaluate", ("ckpt={ckpt}", "+data.fastaa=x.fa"), ("data.fastaa",)),
    Case("evaluate-seq-len-0", "evaluate", ("ckpt={ckpt}", "data.seq_len=0"), ("data.seq_len", "got 0")),
    Case("generate-no-out", "generate", ("ckpt={ckpt}",), ("out is required",)),
    Case("generate-steps-type", "generate", cli(GEN, "steps=ten", "out={out}/s.fa"), ("steps", "'ten'")),
    Case("generate-num-samples-0", "generate", cli(GEN, "num_samples=0", "out={out}/s.fa"), ("num_samples", "got 0")),
    Case("generate-sampler", "generate", (*GEN, "sampler=beam", "out={out}/s.fa"), ("sampler", "beam")),
    Case("generate-top-p", "generate", (*GEN, "top_p=2", "out={out}/s.fa"), ("top_p", "2")),
    Case("generate-typo-guidance", "generate", (*GEN, "+guidance.wieght=2", "out={out}/s.fa"), ("guidance.wieght",)),
    Case("generate-typo", "generate", (*GEN, "+semi_ar.block=8", "out={out}/s.fa"), ("semi_ar.block",)),
    Case("generate-guidance-weight", "generate", cli(GEN, "out={out}/s.fa", "guidance.weight=-1"),
         ("guidance.weight", "-1")),
    Case("generate-motif-letters", "generate", cli(GEN, "out={out}/s.fa", "infill.motif=TATAZ", "infill.motif_position=3"),
         ("infill.motif", "'Z'")),
    Case("generate-motif-beyond-length", "generate", cli(GEN, "out={out}/s.fa", "infill.motif=TATA",
                                                         "infill.motif_position=31"), ("infill.motif_position=31", "length=32")),
    Case("generate-region-format", "generate", ("ckpt={ckpt}", "out={out}/s.fa", "infill.fasta={two_fa}",
                                                "infill.region=chrA-1-64", "infill.mask=9-24"), ("chrA-1-64",)),
    Case("generate-mask-outside-region", "generate", ("ckpt={ckpt}", "out={out}/s.fa", "infill.fasta={two_fa}",
                                                      "infill.region=chrA:1-64", "infill.mask=60-90"), ("60-90", "64")),
    Case("generate-no-length", "generate", ("ckpt={ckpt}", "out={out}/s.fa"), ("length=L is required",)),
    Case("finetune-folds-1", "finetune", cli(FT, "cv.folds=1"), ("cv.folds", "got 1")),
    Case("finetune-folds-type", "finetune", cli(FT, "cv.folds=five"), ("cv.folds", "'five'")),
    Case("finetune-epochs-0", "finetune", cli(FT, "trainer.max_epochs=0"), ("trainer.max_epochs", "got 0")),
    Case("finetune-typo", "finetune", (*FT, "+trainer.learning_rate=1"), ("trainer.learning_rate",)),
    Case("finetune-task", "finetune", (*FT, "task=enhancer_cohn"), ("enhancer_cohn",)),
    Case("finetune-typo-model", "finetune", (*FT, "+model.width=4"), ("model.width",)),
    Case("finetune-model-group", "finetune", (*FT, "model=cnn"), ("model/cnn", "caduceus_ph")),
    Case("export-no-ckpt", "export", ("out={out}/x",), ("ckpt is required",)),
    Case("export-format", "export", ("ckpt={ckpt}", "out={out}/x", "format=onnx"), ("format", "onnx")),
    Case("export-type", "export", ("ckpt={ckpt}", "out={out}/x", "use_ema=maybe"), ("use_ema", "'maybe'")),
    Case("export-typo", "export", ("ckpt={ckpt}", "out={out}/x", "+formats=hf"), ("formats",)),
    Case("evaluate-samples-no-samples", "evaluate_samples", ("out={out}/r.json",), ("samples is required",)),
    Case("evaluate-samples-kmer-0", "evaluate_samples", (*ES, "out={out}/r.json", "metrics.kmer_max=0"),
         ("metrics.kmer_max", "0")),
    Case("evaluate-samples-typo", "evaluate_samples", (*ES, "out={out}/r.json", "+metrics.kmers=3"), ("metrics.kmers",)),
    Case("evaluate-samples-typo-reference", "evaluate_samples", (*ES, "out={out}/r.json", "+reference.path=x"),
         ("reference.path",)),
    Case("evaluate-samples-batch-type", "evaluate_samples", (*ES, "out={out}/r.json", "batch_size=big"),
         ("batch_size", "'big'")),
    # ---- sequence files
    Case("genome-missing", "evaluate", (*EVAL_SEQ, "data.fasta={inp}/nowhere.fa"), ("{inp}/nowhere.fa", "not found")),
    Case("genome-folder", "evaluate", (*EVAL_SEQ, "data.fasta={inp}"), ("{inp}", "folder")),
    Case("genome-truncated-bgzip", "evaluate", (*EVAL_SEQ, "data.fasta={trunc_gz}"), ("{trunc_gz}", "truncated"), sub=SUB),
    Case("genome-truncated-bgzip-indexed", "evaluate", (*EVAL_SEQ, "data.fasta={trunc_gz_indexed}"),
         ("{trunc_gz_indexed}", "truncated")),
    Case("genome-renamed-first-contig", "evaluate", (*EVAL_SEQ, "data.fasta={renamed_first}"),
         ("{renamed_first}", "chrA", "chrZ")),
    Case("genome-renamed-last-contig", "evaluate", (*EVAL_SEQ, "data.fasta={renamed_last}"),
         ("{renamed_last}", "chrB", "chrY")),
    Case("genome-renamed-longer-name", "evaluate", (*EVAL_SEQ, "data.fasta={renamed_longer}"),
         ("{renamed_longer}", "chr")),
    Case("genome-digits", "evaluate", (*EVAL_SEQ, "data.fasta={digits_fa}"), ("{digits_fa}", "chrB", "2 character", "'1'")),
    Case("genome-star", "evaluate", (*EVAL_SEQ, "data.fasta={star_fa}"), ("{star_fa}", "chrB", "1 character", "'*'")),
    Case("genome-not-fasta", "evaluate", (*EVAL_SEQ, "data.fasta={not_fasta}"), ("{not_fasta}",)),
    Case("windows-none-fit", "evaluate", (*EVAL, "data.fasta={short_fa}", "data.bed={short_bed}", "out={out}/e.json"),
         ("{short_fa}", "'test'", "short1", "short2", "64 bp")),
    Case("windows-all-n", "evaluate", (*EVAL, "data.fasta={nrich_fa}", "data.bed={nrich_bed}", "out={out}/e.json"),
         ("{nrich_fa}", "'test'", "chrN", "N")),
    Case("bed-bad-line", "evaluate", (*EVAL, "data.fasta={two_fa}", "data.bed={bad_bed}", "out={out}/e.json"),
         ("{bad_bed}", "line 2", "'ten'")),
    Case("bed-unknown-contig", "evaluate", (*EVAL, "data.fasta={two_fa}", "data.bed={unknown_contig_bed}",
                                            "out={out}/e.json"), ("{unknown_contig_bed}", "line 2", "chrQ")),
    Case("infill-truncated-bgzip", "generate", ("ckpt={ckpt}", "out={out}/s.fa", "steps=4", "num_samples=1",
                                                "infill.fasta={trunc_gz}", "infill.region=chrA:1-64", "infill.mask=9-24"),
         ("{trunc_gz}", "truncated")),
    Case("infill-unknown-contig", "generate", ("ckpt={ckpt}", "out={out}/s.fa", "steps=4", "num_samples=1",
                                               "infill.fasta={two_fa}", "infill.region=chrQ:1-64", "infill.mask=9-24"),
         ("{two_fa}", "chrQ")),
    Case("infill-digits", "generate", ("ckpt={ckpt}", "out={out}/s.fa", "steps=4", "num_samples=1",
                                       "infill.fasta={digits_fa}", "infill.region=chrB:9471-9534", "infill.mask=9-24"),
         ("{digits_fa}", "chrB", "'1'")),
    Case("samples-missing", "evaluate_samples", ("samples={inp}/none.fa", "out={out}/r.json"), ("{inp}/none.fa",)),
    Case("samples-binary", "evaluate_samples", ("samples={png}", "out={out}/r.json"), ("{png}", "not FASTA"), sub=SUB),
    Case("samples-text", "evaluate_samples", ("samples={not_fasta}", "out={out}/r.json"), ("{not_fasta}", "line 1")),
    Case("samples-protein", "evaluate_samples", ("samples={protein_fa}", "out={out}/r.json"),
         ("{protein_fa}", "sp|P69905|HBA_HUMAN", "not nucleotide")),
    Case("samples-numbered-lines", "evaluate_samples", ("samples={digits_samples}", "out={out}/r.json"),
         ("{digits_samples}", "line 2", "'s1'", "'1'")),
    Case("samples-empty", "evaluate_samples", ("samples={empty}", "out={out}/r.json"), ("{empty}", "no FASTA records")),
    Case("samples-truncated-gzip", "evaluate_samples", ("samples={plain_trunc_gz}", "out={out}/r.json"),
         ("{plain_trunc_gz}",)),
    Case("samples-folder", "evaluate_samples", ("samples={inp}", "out={out}/r.json"), ("{inp}", "folder")),
    Case("reference-protein", "evaluate_samples", ("samples={samples}", "reference.fasta={protein_fa}",
                                                   "out={out}/r.json"), ("{protein_fa}",)),
    # ---- checkpoints: missing, corrupt, malicious, weights of another size (every reader)
    Case("evaluate-ckpt-missing", "evaluate", ("ckpt={inp}/none.ckpt",), ("{inp}/none.ckpt", "not found")),
    Case("evaluate-ckpt-truncated", "evaluate", ("ckpt={ckpt_truncated}", "out={out}/e.json"), ("{ckpt_truncated}",)),
    Case("evaluate-ckpt-malicious", "evaluate", ("ckpt={ckpt_evil}", "out={out}/e.json"), ("{ckpt_evil}", "exec"),
         sub=SUB),
    Case("evaluate-ckpt-folder", "evaluate", ("ckpt={inp}", "out={out}/e.json"), ("{inp}", "config.json")),
    Case("evaluate-ckpt-other-size", "evaluate", ("ckpt={ckpt_other_size}", "out={out}/e.json", *EVAL[1:]),
         ("{ckpt_other_size}", "shape")),
    Case("generate-ckpt-missing", "generate", ("ckpt={inp}/none.ckpt", "out={out}/s.fa", "length=32"), ("{inp}/none.ckpt",)),
    Case("generate-ckpt-text", "generate", ("ckpt={ckpt_text}", "out={out}/s.fa", "length=32"),
         ("{ckpt_text}", "not a checkpoint")),
    Case("generate-rerun-bad-ckpt", "generate", cli(GEN, "ckpt={ckpt_other_size}", "out={out}/samples.fa"),
         ("{ckpt_other_size}",), earlier="generate"),
    Case("generate-classifier-damaged", "generate", cli(GEN, "out={out}/s.fa", "guidance.class=positive",
                                                        "guidance.classifier={inp}/clf"),
         ("{inp}/clf/classifier.safetensors",), prepare=lambda env: damaged_classifier(env, "weights")),
    Case("samples-classifier-other-size", "evaluate_samples", (*ES, "out={out}/r.json", "classifier_ckpt={inp}/clf"),
         ("{inp}/clf/classifier.safetensors", "shape"), prepare=lambda env: damaged_classifier(env, "size")),
    Case("generate-ckpt-malicious-pickle", "generate", ("ckpt={ckpt_evil_pickle}", "out={out}/s.fa", "length=32"),
         ("{ckpt_evil_pickle}", "exec", "never runs code")),
    Case("generate-ckpt-other-size", "generate", ("ckpt={ckpt_other_size}", "out={out}/s.fa", "length=32", "steps=4"),
         ("{ckpt_other_size}", "shape"), sub=SUB),
    Case("generate-ckpt-mlm", "generate", ("ckpt={ckpt_mlm}", "out={out}/s.fa", "length=32", "steps=4"),
         ("{ckpt_mlm}", "mlm")),
    Case("generate-export-damaged", "generate", ("ckpt={export_damaged}", "out={out}/s.fa", "length=32", "steps=4"),
         ("{export_damaged}/model.safetensors",)),
    Case("export-ckpt-missing", "export", ("ckpt={inp}/none.ckpt", "out={out}/x"), ("{inp}/none.ckpt",)),
    Case("export-ckpt-malicious", "export", ("ckpt={ckpt_evil}", "out={out}/x"), ("{ckpt_evil}",)),
    Case("export-ckpt-other-size", "export", ("ckpt={ckpt_other_size}", "out={out}/x"), ("{ckpt_other_size}", "shape")),
    Case("export-rerun-other-size", "export", ("ckpt={ckpt_other_size}", "out={out}"), ("{ckpt_other_size}",),
         earlier="export"),
    Case("export-from-damaged-export", "export", ("ckpt={export_damaged}", "out={out}/x"),
         ("{export_damaged}/model.safetensors",)),
    Case("export-hf-ckpt-truncated", "export", ("ckpt={ckpt_truncated}", "out={out}/x", "format=hf"), ("{ckpt_truncated}",)),
    Case("finetune-ckpt-missing", "finetune", (*FT, "ckpt={inp}/none.ckpt"), ("{inp}/none.ckpt",), sub=SUB),
    Case("finetune-ckpt-corrupt", "finetune", (*FT, "ckpt={ckpt_truncated}"), ("{ckpt_truncated}",)),
    Case("finetune-ckpt-malicious", "finetune", (*FT, "ckpt={ckpt_evil}"), ("{ckpt_evil}",)),
    Case("finetune-ckpt-malicious-pickle", "finetune", (*FT, "ckpt={ckpt_evil_pickle}"), ("{ckpt_evil_pickle}",)),
    Case("finetune-ckpt-other-size", "finetune", (*FT, "ckpt={ckpt_other_size}"), ("{ckpt_other_size}", "shape")),
    Case("samples-ar-ckpt-malicious", "evaluate_samples", (*ES, "out={out}/r.json", "ar_ckpt={ckpt_evil}"), ("{ckpt_evil}",)),
    Case("samples-classifier-missing", "evaluate_samples", (*ES, "out={out}/r.json", "classifier_ckpt={inp}/clf"),
         ("{inp}/clf",)),
    # ---- outputs: wrong kind, not writable, read-only, full disk; earlier runs untouched
    Case("generate-out-is-folder", "generate", (*GEN, "out={out}"), ("{out}", "folder"), earlier="generate"),
    Case("generate-out-parent-is-file", "generate", (*GEN, "out={out}/samples.fa/new.fa"), ("{out}/samples.fa",),
         earlier="generate"),
    Case("generate-out-not-writable", "generate", (*GEN, "out={work}/locked/s.fa"), ("{work}/locked",),
         prepare=deny_writes("locked")),
    Case("generate-out-read-only", "generate", (*GEN, "out={out}/samples.fa"), ("{out}/samples.fa", "read-only"),
         earlier="generate", prepare=read_only_file("out/samples.fa")),
    Case("generate-disk-full", "generate", (*GEN, "out={out}/samples.fa"), ("{out}/samples.fa", "No space left"),
         earlier="generate", prepare=disk_full()),
    Case("evaluate-out-is-folder", "evaluate", (*EVAL, "out={out}"), ("{out}", "folder"), earlier="evaluate"),
    Case("evaluate-out-not-writable", "evaluate", (*EVAL, "out={work}/locked/e.json"), ("{work}/locked",),
         prepare=deny_writes("locked")),
    Case("evaluate-out-read-only", "evaluate", (*EVAL, "out={out}/eval.json"), ("{out}/eval.json", "read-only"),
         earlier="evaluate", prepare=read_only_file("out/eval.json")),
    Case("evaluate-disk-full", "evaluate", (*EVAL, "out={out}/eval.json"), ("{out}/eval.json", "No space left"),
         earlier="evaluate", prepare=disk_full()),
    Case("samples-out-is-folder", "evaluate_samples", (*ES, "out={out}"), ("{out}", "folder"), earlier="evaluate_samples"),
    Case("samples-out-parent-is-file", "evaluate_samples", (*ES, "out={out}/report.json/r.json"), ("{out}/report.json",),
         earlier="evaluate_samples"),
    Case("samples-out-not-writable", "evaluate_samples", (*ES, "out={work}/locked/r.json"), ("{work}/locked",),
         prepare=deny_writes("locked")),
    Case("samples-plot-read-only", "evaluate_samples", (*ES, "out={out}/report.json"), ("{out}/report_gc.png", "read-only"),
         earlier="evaluate_samples", prepare=read_only_file("out/report_gc.png")),
    Case("samples-disk-full-after-plots", "evaluate_samples", (*ES, "out={out}/report.json"),
         ("{out}/report.json", "No space left"), earlier="evaluate_samples", prepare=disk_full(after=2)),
    Case("export-out-is-file", "export", ("ckpt={ckpt}", "out={out}/model.safetensors"), ("{out}/model.safetensors", "not a folder"),
         earlier="export"),
    Case("export-out-not-writable", "export", ("ckpt={ckpt}", "out={work}/locked/x"), ("{work}/locked",),
         prepare=deny_writes("locked")),
    Case("export-out-read-only", "export", ("ckpt={ckpt}", "out={out}"), ("{out}/config.json", "read-only"),
         earlier="export", prepare=read_only_file("out/config.json")),
    Case("export-disk-full-second-file", "export", ("ckpt={ckpt}", "out={out}"), ("{out}/config.json", "No space left"),
         earlier="export", prepare=disk_full(after=1)),
    Case("export-hf-disk-full", "export", ("ckpt={ckpt}", "out={out}", "format=hf"), ("{out}", "No space left"),
         earlier="export", prepare=disk_full(after=1)),
    Case("finetune-out-is-file", "finetune", ("data.root={bench}", "out_dir={work}/results.txt", *FT_FAST),
         ("{work}/results.txt", "not a folder"), prepare=make_file("results.txt")),
    Case("finetune-task-dir-is-file", "finetune", FT, (f"{{out}}/{TASK}", "not a folder"), prepare=make_file(f"out/{TASK}")),
    Case("finetune-out-not-writable", "finetune", ("data.root={bench}", "out_dir={work}/locked", *FT_FAST),
         ("{work}/locked",), prepare=deny_writes("locked")),
    Case("finetune-classifier-is-file", "finetune", (*FT, "save_classifier={work}/clf.bin"), ("{work}/clf.bin",),
         prepare=make_file("clf.bin")),
    Case("finetune-cv-read-only", "finetune", FT, (f"{{out}}/{TASK}/cv.md", "read-only"), earlier="finetune",
         prepare=read_only_file(f"out/{TASK}/cv.md")),
    Case("finetune-disk-full-after-classifier", "finetune", (*FT, "save_classifier={out}/classifier"),
         (f"{{out}}/{TASK}/cv.json", "No space left"), earlier="finetune", prepare=disk_full(after=2)),
    # ---- fine-tuning data
    Case("finetune-empty-class", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train/positive", "empty"),
         prepare=bench({"negative": 8, "positive": 0}), sub=SUB),
    Case("finetune-class-smaller-than-folds", "finetune", cli(FT_INP, "cv.folds=5"),
         (f"{{inp}}/bench/{TASK}/train/positive", "cv.folds=5", "3 usable"), prepare=bench({"negative": 8, "positive": 3})),
    Case("finetune-class-all-in-test", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train/negative", "0 usable"),
         prepare=bench({"negative": 8, "positive": 8}, extra={"negative": 8, "positive": 8}, same=True)),
    Case("finetune-one-class", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train", "at least 2"),
         prepare=bench({"negative": 8})),
    Case("finetune-class-only-in-test", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train/positive", "0 usable"),
         prepare=bench({"negative": 8}, extra={"negative": 4, "positive": 4})),
    Case("finetune-root-missing", "finetune", ("data.root={inp}/nowhere", "out_dir={out}", *FT_FAST), ("{inp}/nowhere",)),
    Case("finetune-empty-sequence-file", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train/positive/3.txt", "empty"),
         prepare=bench_file("positive/3.txt", "")),
    Case("finetune-digits-in-sequence", "finetune", FT_INP, (f"{{inp}}/bench/{TASK}/train/negative/2.txt", "'7'"),
         prepare=bench_file("negative/2.txt", "ACGTACGT7ACGTTTGACCA")),
]


def test_corpus_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, assets: Assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capfd: pytest.CaptureFixture) -> None:
    env = Env(assets, tmp_path / "work", tmp_path / "in", monkeypatch)
    env.work.mkdir()
    env.inp.mkdir()
    if case.earlier:
        shutil.copytree(assets[f"good_{case.earlier}"], env.out)
    try:
        if case.prepare:
            case.prepare(env)
        folders = (env.work, env.inp, assets.root)  # outputs, and inputs: no index or stray file either
        before = [snapshot(f) for f in folders]
        code, err = run_entry(case, env, capfd)
        after = [snapshot(f) for f in folders]
    finally:
        monkeypatch.undo()
        for undo in env.cleanups:
            undo()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err[-3000:]
    assert code == 2, f"exit status {code}; stderr:\n{err[-3000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[-3000:]}"
    line = lines[0]
    if os.environ.get(CORPUS_LOG):
        with open(os.environ[CORPUS_LOG], "a", encoding="utf-8") as log:
            log.write(f"{case.id}\t{line.replace(str(tmp_path), '<tmp>').replace(str(assets.root), '<assets>')}\n")
    assert line.startswith(f"python -m dnadiff.{case.entry}: error: "), line
    for name in case.names:
        assert name.format(**env.vars()) in line, f"{name.format(**env.vars())!r} not named in: {line}"
    for folder, old, new in zip(folders, before, after):
        assert new == old, f"{folder} changed: {sorted(set(new.items()) ^ set(old.items()))}"
    assert not assets["marker"].exists(), "a checkpoint's pickled payload was executed"
