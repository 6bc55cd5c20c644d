"""``python -m dnadiff.evaluate split=all``: every window of every contig of a FASTA, no BED needed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dnadiff import build_model
from dnadiff.checkpoint import metadata
from dnadiff.cli import load_config
from dnadiff.config import ConfigError
from dnadiff.data.fasta import write_fasta
from dnadiff.data.genome import Genome
from dnadiff.evaluate import evaluate
from dnadiff.objectives.config import ObjectiveConfig
from dnadiff.resources import default_fasta

SEQ_LEN = 64
OBJECTIVE = dataclasses.asdict(ObjectiveConfig(name="mdlm"))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A tiny MDLM Caduceus-PS export (random weights: the windows and the arithmetic are under test)."""
    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="torch")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    meta = metadata(model.config, OBJECTIVE, config={"data": {"seq_len": SEQ_LEN}})
    (out / "config.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def genome_fasta(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Three contigs of real hg38 sequence (the embedded chr2 sample past its N run), one too short."""
    sample = Genome(default_fasta())
    contigs = {"chrA": (20_000, 20_000 + 1_000), "chrB": (300_000, 300_000 + 650), "chrC": (500_000, 500_000 + 50)}
    path = tmp_path_factory.mktemp("genome") / "other_genome.fa"
    write_fasta([(name, sample.fetch("chr2", a, b)) for name, (a, b) in contigs.items()], path, width=60)
    return path, {name: b - a for name, (a, b) in contigs.items()}


def run(export: Path, fasta: Path, out: Path, *overrides: str) -> dict:
    cfg = load_config("evaluate", [f"ckpt={export}", f"data.fasta={fasta}", f"out={out}", "eval.draws=2",
                                   "data.eval_batch_size=8", "device=cpu", *overrides])
    evaluate(cfg)
    return json.loads(out.read_text())


def test_split_all_takes_every_window_of_every_contig(export: Path, genome_fasta, tmp_path: Path) -> None:
    fasta, lengths = genome_fasta
    report = run(export, fasta, tmp_path / "all.json", "split=all", "data.max_eval_windows=null")
    expect = sum(n // SEQ_LEN for n in lengths.values())  # 15 + 10 + 0 (chrC is shorter than a window)
    assert report["split"] == "all" and report["n_windows"] == expect == 25
    assert report["n_windows_available"] == expect and report["n_tokens"] == expect * SEQ_LEN
    assert report["bed"] is None and "every contig" in report["windows_from"]
    # the same windows as a BED that lists every contig, whole, as the test split: the same figures
    bed = tmp_path / "whole.bed"
    bed.write_text("".join(f"{name}\t0\t{n}\ttest\n" for name, n in lengths.items()))
    by_bed = run(export, fasta, tmp_path / "bed.json", "split=test", f"data.bed={bed}", "data.max_eval_windows=null")
    assert by_bed["n_windows"] == expect
    assert report["nats_per_token"] == pytest.approx(by_bed["nats_per_token"], rel=1e-12)
    assert report["nats_per_token_stderr"] == pytest.approx(by_bed["nats_per_token_stderr"], rel=1e-12)
    # without a BED, split=test is the block rule's test share only
    block = run(export, fasta, tmp_path / "block.json", "split=test", "data.split_block=100",
                "data.max_eval_windows=null")
    assert 0 < block["n_windows"] < expect


def test_split_all_respects_the_window_cap_and_says_so(export: Path, genome_fasta, tmp_path: Path) -> None:
    fasta, _ = genome_fasta
    report = run(export, fasta, tmp_path / "capped.json", "split=all", "data.max_eval_windows=10")
    assert report["n_windows"] == 10 and report["n_windows_available"] == 25 and report["max_eval_windows"] == 10


def test_split_all_refuses_a_labelled_source(export: Path) -> None:
    with pytest.raises(ConfigError, match="split=all evaluates every window of a genome FASTA"):
        load_config("evaluate", [f"ckpt={export}", "split=all", "data.source=benchmark"])
    with pytest.raises(ConfigError, match="split"):
        load_config("evaluate", [f"ckpt={export}", "split=everything"])
