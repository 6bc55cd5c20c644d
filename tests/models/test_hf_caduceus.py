"""Caduceus Hugging Face snapshots (the authors' schema) <-> dnadiff, against the authors' own logits.

The fixture (tests/fixtures/caduceus_hf, README there) holds four tiny random-weight snapshots
written by the authors' code (PS / PH x fused_add_norm true / false) and their
CaduceusForMaskedLM logits on three real hg38 windows (one with [MASK] tokens, one with N).
Relative error = max |ours - theirs| / max |theirs| over the 12 real vocabulary columns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pyfaidx import Fasta
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import dnadiff
from dnadiff.models import build_model, rc_hidden
from dnadiff.models.hf_caduceus import (
    HFSnapshotError,
    dnadiff_to_hf_config,
    export_hf,
    is_hf_snapshot,
    load_hf_snapshot,
    tensor_names,
)
from dnadiff.models.lm import DNALM
from dnadiff.models.model_config import validate_config

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "caduceus_hf"
NAMES = ("ps_fused", "ps_unfused", "ph_fused", "ph_unfused")
REPO = Path(__file__).resolve().parents[2]
TOL = 1e-5


@pytest.fixture(scope="module")
def window_ids(hg38_fasta: Path, tokenizer) -> torch.Tensor:
    """The fixture's three windows read from the shared hg38 FASTA by dnadiff's tokenizer, masks applied."""
    spec = json.loads((FIXTURE / "windows.json").read_text())
    fasta = Fasta(str(hg38_fasta))
    ids = torch.stack([tokenizer.encode(str(fasta[spec["contig"]][s:e])) for s, e in spec["windows"]])
    ids[spec["masked_window"], spec["masked_positions"]] = tokenizer.mask_id
    return ids


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "reference.safetensors"))


def _rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    theirs = theirs[..., : ours.shape[-1]]
    return float((ours - theirs).abs().max() / theirs.abs().max())


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURE / name, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


# ---------------------------------------------------------------- logits against the authors' code
def test_fixture_windows_are_real_and_cover_mask_and_n(window_ids, tokenizer):
    assert window_ids.shape == (3, 96)
    assert (window_ids[1] == tokenizer.mask_id).sum() == 21
    assert (window_ids[2] == tokenizer.n_id).sum() == 48 and (window_ids[2, 48:] != tokenizer.n_id).all()
    assert set(window_ids[0].tolist()) <= set(tokenizer.nucleotide_ids)


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_the_authors_caduceus_for_masked_lm(name, window_ids, reference):
    model = dnadiff.load_model(FIXTURE / name)
    assert isinstance(model, DNALM) and not model.training
    assert model.arch == ("caduceus_ps" if name.startswith("ps") else "caduceus_ph")
    assert model.config["rcps_swap_halves"] is (name == "ps_fused")
    with torch.no_grad():
        logits = model(window_ids)
    theirs = reference[f"logits_{name}"]
    assert theirs.shape == (3, 96, 16) and logits.shape == (3, 96, 12)
    for row in range(3):  # clean window, window with [MASK], window with N
        assert _rel_err(logits[row], theirs[row]) <= TOL, (name, row)


@pytest.mark.parametrize("name", ["ps_fused", "ps_unfused"])
def test_the_other_rcps_wiring_is_wrong_by_order_one(name, window_ids, reference):
    """Negative control: the fused/unfused difference is real (a name-for-name load would miss it)."""
    model = dnadiff.load_model(FIXTURE / name)
    cfg = {**model.config, "rcps_swap_halves": not model.config["rcps_swap_halves"]}
    other = DNALM(cfg).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert _rel_err(other(window_ids), reference[f"logits_{name}"]) > 0.1


@pytest.mark.parametrize("name", ["ps_fused", "ps_unfused"])
def test_loaded_ps_is_exactly_rc_equivariant(name, window_ids, tokenizer):
    model = dnadiff.load_model(FIXTURE / name)
    x = window_ids
    with torch.no_grad():
        logits, logits_rc = model(x), model(tokenizer.reverse_complement(x))
        hid, hid_rc = model.hidden_states(x), model.hidden_states(tokenizer.reverse_complement(x))
    comp = model.complement_map[: model.vocab_size]
    torch.testing.assert_close(logits_rc, logits.flip(1)[..., comp], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hid_rc, rc_hidden(hid), rtol=1e-5, atol=1e-5)
    assert (logits_rc - logits).abs().max() > 1e-2  # the logits do depend on the strand


def test_n_row_and_padding_rows_are_kept_bit_for_bit():
    """dnadiff keeps N (id 11) as a token and the published N embedding row unchanged (module doc)."""
    model = dnadiff.load_model(FIXTURE / "ps_fused")
    theirs = load_file(str(FIXTURE / "ps_fused" / "model.safetensors"))
    emb = theirs["caduceus.backbone.embeddings.word_embeddings.embedding.weight"]
    assert emb.shape == (16, 16) and torch.equal(model.embedding.weight, emb)
    assert model.padded_vocab_size == 16


# ---------------------------------------------------------------- weight files
def test_pytorch_model_bin_loads_like_safetensors(tmp_path, window_ids):
    """pytorch_model.bin as their save_pretrained(safe_serialization=False) writes it: every name,
    the tied aliases (lm_head, mamba_rev in/out_proj) included; read with weights_only=True."""
    for name in ("ps_fused", "ph_unfused"):
        folder = _copy(name, tmp_path)
        state = load_file(str(folder / "model.safetensors"))
        model = load_hf_snapshot(folder)
        for _, hf_names in tensor_names(model.config):
            for alias in hf_names[1:]:
                state[alias] = state[hf_names[0]]
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
        from_bin = dnadiff.load_model(folder)
        with torch.no_grad():
            assert torch.equal(from_bin(window_ids), model(window_ids))


class _Payload:
    """Stands for pickled code: weights_only=True must refuse to rebuild it."""


def test_pytorch_model_bin_with_code_is_refused(tmp_path):
    folder = _copy("ph_fused", tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"x": _Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(HFSnapshotError, match=r"pytorch_model.bin: not loadable with weights_only=True") as err:
        dnadiff.load_model(folder)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- refusals (one line naming the value)
@pytest.mark.parametrize(
    "changes,message",
    [
        ({"model_type": "mamba"}, "model_type 'mamba' is not supported"),
        ({"bidirectional_strategy": "ew_multiply"}, "bidirectional_strategy='ew_multiply' is not supported"),
        ({"bidirectional": False}, "bidirectional=False is not supported"),
        ({"rms_norm": False}, r"rms_norm=False \(LayerNorm\) is not supported"),
        ({"complement_map": {str(i): i for i in range(16)}}, r"complement_map\[7\]=7 \(A\) differs"),
        ({"ssm_cfg": {"d_state": 8, "headdim": 32}}, r"ssm_cfg key\(s\) \['headdim'\]"),
        ({"vocab_size": 8}, "vocab_size=8 is smaller than"),
        ({"d_model": 32}, r"embedding.weight' has shape \(16, 16\), the config implies \(16, 32\)"),
    ],
)
def test_unmappable_configs_are_refused_in_one_line(tmp_path, changes, message):
    folder = _copy("ps_fused", tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(HFSnapshotError, match=message) as err:
        dnadiff.load_model(folder)
    assert "\n" not in str(err.value)


def test_tied_tensors_that_differ_are_refused(tmp_path):
    folder = _copy("ps_fused", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    fwd = "caduceus.backbone.layers.1.mixer.submodule.mamba_fwd.in_proj.weight"
    state[fwd.replace("mamba_fwd", "mamba_rev")] = state[fwd] + 1.0
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tied = r"mamba_rev.in_proj.weight' differs .* \(bidirectional_weight_tie=true\)"
    with pytest.raises(HFSnapshotError, match=tied):
        dnadiff.load_model(folder)


def test_missing_unexpected_and_sharded_weights_are_refused(tmp_path):
    folder = _copy("ph_fused", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    save_file({**state, "score.weight": torch.zeros(2, 16)}, str(folder / "model.safetensors"))
    with pytest.raises(HFSnapshotError, match=r"unexpected tensor\(s\) \['score.weight'\]"):
        dnadiff.load_model(folder)
    del state["caduceus.backbone.norm_f.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(HFSnapshotError, match="tensor 'caduceus.backbone.norm_f.weight' is missing"):
        dnadiff.load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(HFSnapshotError, match="no model.safetensors or pytorch_model.bin"):
        dnadiff.load_model(folder)
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(HFSnapshotError, match="sharded weights are not supported"):
        dnadiff.load_model(folder)


def test_base_caduceus_weights_load_through_the_tied_head(tmp_path, window_ids, reference):
    """A snapshot of their base ``Caduceus`` (names without ``caduceus.``, no lm_head) loads: the head is tied."""
    folder = _copy("ps_unfused", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    base = {k.removeprefix("caduceus."): v for k, v in state.items() if k.startswith("caduceus.")}
    assert len(base) == len(state) - 1  # only lm_head.complement_map dropped
    save_file(base, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with torch.no_grad():
        logits = dnadiff.load_model(folder)(window_ids)
    assert _rel_err(logits, reference["logits_ps_unfused"]) <= TOL


def test_snapshot_detection_leaves_dnadiff_exports_alone(tmp_path):
    assert all(is_hf_snapshot(FIXTURE / n) for n in NAMES)
    assert not is_hf_snapshot(FIXTURE) and not is_hf_snapshot(FIXTURE / "ps_fused" / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"format": 1, "dnadiff_version": "0.1.0"}))
    assert not is_hf_snapshot(tmp_path)


# ---------------------------------------------------------------- export and round trips
@pytest.mark.parametrize("name", NAMES)
def test_fixture_to_dnadiff_to_hf_is_identical(name, tmp_path):
    """Bit-identical tensors under the authors' names, and the same config values."""
    out = export_hf(dnadiff.load_model(FIXTURE / name), tmp_path / "hf")
    theirs, ours = load_file(str(FIXTURE / name / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        assert fh.metadata() == {"format": "pt"}  # transformers refuses safetensors without it
    src = json.loads((FIXTURE / name / "config.json").read_text())
    assert json.loads((out / "config.json").read_text()) == src


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize(
    "arch,options",
    [
        ("caduceus_ps", {}),
        ("caduceus_ps", {"rcps_swap_halves": True, "bias": True, "d_state": 4}),
        ("caduceus_ph", {"weight_tie": False, "conv_bias": False}),
        ("caduceus_ph", {"tie_embeddings": False, "dt_rank": 3, "pad_vocab_multiple": 16}),
    ],
)
def test_dnadiff_to_hf_to_dnadiff_gives_identical_logits(arch, options, tmp_path, tokenizer):
    model = build_model(arch, d_model=16, n_layer=3, **options).eval()
    _randomize(model, seed=7)
    out = export_hf(model, tmp_path / "hf")
    hf_cfg = json.loads((out / "config.json").read_text())
    assert hf_cfg["model_type"] == "caduceus" and hf_cfg["rcps"] is (arch == "caduceus_ps")
    assert hf_cfg["auto_map"]["AutoModelForMaskedLM"] == "modeling_caduceus.CaduceusForMaskedLM"
    back = dnadiff.load_model(out)
    x = tokenizer.encode_batch(["ACGTTGCAAN" * 6, "GGGCCCATAT" * 6])
    x[0, 5:9] = tokenizer.mask_id
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    strip = lambda c: {k: v for k, v in c.items() if k != "hf_extra"}  # noqa: E731
    assert strip(back.config) == strip(model.config)
    again = export_hf(back, tmp_path / "hf2")
    assert json.loads((again / "config.json").read_text()) == hf_cfg


@pytest.mark.parametrize(
    "arch,options,message",
    [
        ("mamba", {}, "arch='mamba' has no Caduceus Hugging Face counterpart"),
        ("bimamba", {}, "arch='bimamba' has no Caduceus Hugging Face counterpart"),
        ("caduceus_ps", {"n_classes": 3}, "n_classes=3: CaduceusForMaskedLM has no class conditioning"),
        ("caduceus_ph", {"time_conditioning": True}, "time_conditioning=True"),
        ("caduceus_ph", {"conjoin": True}, "conjoin=True"),
        ("caduceus_ps", {"tie_embeddings": False}, "tie_embeddings=False: the authors' RCPS LM head is always tied"),
    ],
)
def test_export_refuses_what_caduceus_cannot_represent(arch, options, message, tmp_path):
    model = build_model(arch, d_model=16, n_layer=1, **options)
    with pytest.raises(HFSnapshotError, match=message) as err:
        export_hf(model, tmp_path / "hf")
    assert "\n" not in str(err.value) and not (tmp_path / "hf").exists()


def test_hf_export_writes_no_absolute_path(tmp_path):
    model = dnadiff.load_model(FIXTURE / "ps_fused")
    cfg = {**model.config, "hf_extra": {**model.config["hf_extra"], "_name_or_path": "/home/someone/caduceus-ps"}}
    moved = DNALM(cfg)
    moved.load_state_dict(model.state_dict())
    out = export_hf(moved, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["_name_or_path"] == "caduceus-ps"


def test_code_repo_writes_hub_auto_map():
    cfg = dnadiff_to_hf_config(build_model("caduceus_ps", d_model=16, n_layer=1).config, code_repo="org/repo")
    assert cfg["auto_map"]["AutoModelForMaskedLM"] == "org/repo--modeling_caduceus.CaduceusForMaskedLM"


def test_new_model_config_keys_default_to_todays_behaviour():
    cfg = validate_config({"arch": "caduceus_ps"})
    assert cfg["rcps_swap_halves"] is False and cfg["hf_extra"] is None
    with pytest.raises(ValueError, match="rcps_swap_halves=True is for RCPS models"):
        validate_config({"arch": "caduceus_ph", "rcps_swap_halves": True})
    with pytest.raises(ValueError, match="hf_extra must be null or a mapping"):
        validate_config({"arch": "caduceus_ps", "hf_extra": [1]})


def test_export_cli_format_hf(tmp_path):
    """``python -m dnadiff.export ckpt=SNAPSHOT out=DIR format=hf`` reproduces the fixture snapshot."""
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", "dnadiff.export", f"ckpt={FIXTURE / 'ph_unfused'}", f"out={out}", "format=hf"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # nothing else (no export.log) in the cwd
    theirs = load_file(str(FIXTURE / "ph_unfused" / "model.safetensors"))
    ours = load_file(str(out / "model.safetensors"))
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    bad = subprocess.run(
        [sys.executable, "-m", "dnadiff.export", f"ckpt={FIXTURE / 'ph_unfused'}", f"out={out}", "format=onnx"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "python -m dnadiff.export: error: format must be one of dnadiff, hf; got 'onnx'"
    ]
