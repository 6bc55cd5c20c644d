"""A Caduceus Hugging Face snapshot works wherever a checkpoint does: ``evaluate``, ``generate`` and
``export`` (both formats) take the folder, and give exactly what the same weights give in dnadiff's
own export format (same bound on real hg38 windows, same samples for the same seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dnadiff
from dnadiff.checkpoint import CheckpointError, read_metadata, training_seq_len
from dnadiff.cli import load_config
from dnadiff.data.fasta import read_fasta
from dnadiff.evaluate import evaluate
from dnadiff.export import export
from dnadiff.generate import generate

SNAPSHOT = Path(__file__).resolve().parent.parent / "fixtures" / "caduceus_hf" / "ps_fused"
SEQ_LEN = 96


@pytest.fixture(scope="module")
def dnadiff_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The snapshot converted to dnadiff's export format by ``python -m dnadiff.export``."""
    out = tmp_path_factory.mktemp("converted") / "export"
    export(load_config("export", [f"ckpt={SNAPSHOT}", f"out={out}"]))
    return out


def test_snapshot_metadata_says_it_is_scored_as_mdlm_and_records_no_window_length() -> None:
    meta = read_metadata(SNAPSHOT)
    assert meta["source"] == "hf_snapshot" and meta["objective"]["name"] == "mdlm"
    assert meta["model"]["rcps_swap_halves"] is True  # the fused (published) wiring
    assert training_seq_len(meta) is None


def test_conversion_keeps_the_logits(dnadiff_export: Path, tokenizer) -> None:
    ids = tokenizer.encode_batch(["ACGTNACGGT" * 4, "TTGCA[MASK]" * 6])
    theirs, ours = dnadiff.load_model(SNAPSHOT), dnadiff.load_model(dnadiff_export)
    with torch.no_grad():
        assert torch.equal(theirs(ids), ours(ids))


def _evaluate(ckpt: Path, hg38_fasta: Path, out: Path, *extra: str) -> dict:
    cfg = load_config("evaluate", [f"ckpt={ckpt}", f"data.fasta={hg38_fasta}", f"out={out}", "eval.draws=2",
                                   "data.max_eval_windows=16", "device=cpu", *extra])
    evaluate(cfg)
    return json.loads(out.read_text())


def test_evaluate_scores_the_snapshot_like_its_dnadiff_export(dnadiff_export: Path, hg38_fasta: Path,
                                                              tmp_path: Path) -> None:
    a = _evaluate(SNAPSHOT, hg38_fasta, tmp_path / "snapshot.json", f"data.seq_len={SEQ_LEN}")
    b = _evaluate(dnadiff_export, hg38_fasta, tmp_path / "export.json", f"data.seq_len={SEQ_LEN}")
    assert a["is_bound"] is True and a["n_windows"] == 16
    assert a["nats_per_token"] == pytest.approx(b["nats_per_token"], rel=1e-6)
    assert 0 < a["nats_per_token_stderr"] < a["nats_per_token"]


def test_evaluate_without_a_window_length_says_which_key_to_give(hg38_fasta: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"does not record its training window length: give data.seq_len=N"):
        _evaluate(SNAPSHOT, hg38_fasta, tmp_path / "x.json")


def test_generate_from_the_snapshot_equals_generate_from_its_export(dnadiff_export: Path, tmp_path: Path) -> None:
    outs = []
    for name, ckpt in (("snapshot", SNAPSHOT), ("export", dnadiff_export)):
        out = tmp_path / f"{name}.fa"
        generate(load_config("generate", [f"ckpt={ckpt}", "num_samples=3", "length=40", "steps=10", "seed=7",
                                          f"out={out}", "device=cpu"]))
        outs.append([seq for _, seq in read_fasta(out)])
    assert outs[0] == outs[1] and all(len(s) == 40 for s in outs[0])


def test_hf_export_of_a_snapshot_round_trips_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    export(load_config("export", [f"ckpt={SNAPSHOT}", f"out={out}", "format=hf"]))
    a, b = dnadiff.load_model(SNAPSHOT), dnadiff.load_model(out)
    for (ka, va), (kb, vb) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        assert ka == kb and torch.equal(va, vb)


def test_a_folder_that_is_neither_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises((CheckpointError, ValueError), match="bert"):
        read_metadata(tmp_path)
