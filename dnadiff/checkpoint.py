"""The checkpoint format: safe loads (``weights_only=True``), metadata, and safetensors export.

No Lightning here: inference (``load_model``, generate, evaluate, export) reads checkpoints
without importing the training code. Files are written through :mod:`dnadiff.atomic`.

A training checkpoint is Lightning's dict plus a ``dnadiff`` entry (:func:`metadata`): the model
config, objective config, class names and the tokenizer vocabulary, which every load checks.
An export is a folder with ``model.safetensors`` (EMA weights) and ``config.json`` (the metadata).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
from omegaconf import MISSING

from dnadiff.atomic import atomic_write_files, check_output_dir
from dnadiff.config import ConfigError, without_abs_paths
from dnadiff.errors import first_line
from dnadiff.version import __version__
from dnadiff.tokenizer import Tokenizer, TokenizerError

FORMAT_VERSION = 1
META_KEY = "dnadiff"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"
CLASSIFIER_KIND = "sequence_classifier"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_PROTO = b"\x80"  # a bare pickle (protocol 2+), torch's legacy format
MODEL_PREFIX = "model."
EMA_PREFIX = "ema.module."


EXPORT_FORMATS: tuple[str, ...] = ("dnadiff", "hf")


@dataclass
class ExportConfig:
    """``python -m dnadiff.export``: which checkpoint, where to, which weights, which format."""

    ckpt: str = MISSING  # a training checkpoint, a dnadiff export or a Hugging Face Caduceus snapshot
    out: str = MISSING
    use_ema: bool = True
    format: str = "dnadiff"  # dnadiff | hf (the Caduceus authors' schema; caduceus_ps / caduceus_ph only)
    code_repo: Optional[str] = None  # format=hf: a hub repository the auto_map names; null = code files beside

    def validate(self, prefix: str = "") -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {self.format!r}")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, not dnadiff's, or made for another vocabulary."""


def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """``torch.load(weights_only=True)`` with one-line errors that name the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (and not an export: no {EXPORT_CONFIG})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:4] != ZIP_MAGIC and magic[:1] != PICKLE_PROTO:
        raise CheckpointError(f"{path}: not a checkpoint (neither a torch zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path}: refused: it holds pickled objects that are not tensors or plain data "
                f"({_refused_detail(str(err))}); dnadiff loads checkpoints with weights_only=True and never "
                "runs code from them"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(err)})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint, the file is truncated or damaged "
                              f"({first_line(err)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (found a {type(ckpt).__name__}, expected a dict)")
    return ckpt


def _refused_detail(text: str) -> str:
    """What torch's weights-only unpickler refused, from its many-line message."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"a reference to {found.group(1)}"
    after = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    return after[0].strip() if after and after[0].strip() else "an unsupported pickle"


def metadata(model_config: Mapping, objective: Mapping, classes: list[str] | None = None, **extra: Any) -> dict:
    """The ``dnadiff`` entry of a checkpoint: everything needed to rebuild and use the model."""
    return {
        "format": FORMAT_VERSION,
        "dnadiff_version": _version(),
        "vocab": list(Tokenizer().vocab),
        "model": dict(model_config),
        "objective": dict(objective),
        "classes": list(classes or []),
        **extra,
    }


def check_metadata(meta: Any, source: str) -> dict:
    """Validate a checkpoint's ``dnadiff`` entry: present, a known format, and the same vocabulary."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: not a dnadiff checkpoint (no '{META_KEY}' metadata entry)")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{source}: checkpoint format {meta.get('format')!r}, this dnadiff reads {FORMAT_VERSION}")
    try:
        Tokenizer().check_vocab(meta.get("vocab", []), source=source)
    except TokenizerError as err:
        raise CheckpointError(str(err)) from None
    return meta


def _is_export(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".safetensors"


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a training checkpoint or an export folder, validated."""
    path = Path(path)
    if _is_export(path):
        folder = path if path.is_dir() else path.parent
        cfg = folder / EXPORT_CONFIG
        if not cfg.is_file():
            raise CheckpointError(f"{folder}: no {EXPORT_CONFIG} beside the weights (not a dnadiff export)")
        try:
            meta = json.loads(cfg.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{cfg}: invalid JSON ({err})") from None
        return check_metadata(meta, str(cfg))
    return check_metadata(safe_load(path).get(META_KEY), str(path))


def training_seq_len(meta: dict[str, Any]) -> int | None:
    """The window length a checkpoint was trained on, when its metadata records it."""
    seq_len = ((meta.get("config") or {}).get("data") or {}).get("seq_len")
    return int(seq_len) if seq_len else None


def model_state(ckpt: Mapping[str, Any], use_ema: bool = True, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model's weights from a Lightning checkpoint: the EMA copy when present and asked for."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: no 'state_dict' (not a training checkpoint)")
    prefix = EMA_PREFIX if use_ema and any(k.startswith(EMA_PREFIX) for k in state) else MODEL_PREFIX
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _build(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """The model of ``meta``'s config with ``state`` loaded; weights of another model (names or
    shapes that differ from what the config builds) are one :class:`CheckpointError`."""
    from dnadiff.models.registry import model_from_config

    try:
        model = model_from_config(dict(meta["model"]))
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{source}: invalid model config in the checkpoint ({first_line(err)})") from None
    check_weights(model, state, source)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def check_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights whose names or shapes differ from ``model``'s, in one line naming the first
    difference and how many there are (torch's own error is a line per tensor)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensor(s) of another shape, e.g. {k} is {tuple(state[k].shape)} "
                     f"but the config builds {tuple(expected[k].shape)}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    raise CheckpointError(f"{source}: the weights do not fit the model config stored with them "
                          f"({'; '.join(parts)}); the file mixes two models or is damaged")


def load_model(path: str | os.PathLike, use_ema: bool = True, map_location: Any = "cpu") -> nn.Module:
    """Load a language model from a training checkpoint or an export (folder or .safetensors), in eval mode.

    Weights are read with ``weights_only=True`` (checkpoints) or safetensors (exports); the
    vocabulary stored with them must equal dnadiff's. A Hugging Face Caduceus snapshot folder
    (config.json with a model_type) loads through ``dnadiff.models.hf_caduceus``.
    """
    path = Path(path)
    from dnadiff.models.hf_caduceus import is_hf_snapshot, load_hf_snapshot

    if is_hf_snapshot(path):
        return load_hf_snapshot(path, map_location)
    if _is_export(path):
        meta = read_metadata(path)
        weights = path / EXPORT_WEIGHTS if path.is_dir() else path
        if not weights.is_file():
            raise CheckpointError(f"{weights}: weights file not found")
        return _build(meta, read_safetensors(weights, map_location), str(weights))
    ckpt = safe_load(path, map_location)
    meta = check_metadata(ckpt.get(META_KEY), str(path))
    return _build(meta, model_state(ckpt, use_ema, str(path)), str(path))


def read_safetensors(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, with a one-line error naming it when it is damaged."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(err)})") from None


def export_model(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike, use_ema: bool = True) -> Path:
    """Write ``model.safetensors`` + ``config.json`` from a training checkpoint; returns the folder.

    Both files are written together (:func:`dnadiff.atomic.atomic_write_files`): a failure leaves
    an earlier export in ``out_dir`` as it was."""
    from safetensors.torch import save

    from dnadiff.models.hf_caduceus import is_hf_snapshot

    out = check_output_dir(out_dir, (EXPORT_WEIGHTS, EXPORT_CONFIG))
    src = Path(ckpt_path)
    if is_hf_snapshot(src):
        raise CheckpointError(f"{src}: a Hugging Face Caduceus snapshot; export it with format=hf "
                              "(format=dnadiff needs a dnadiff checkpoint or export)")
    if _is_export(src):  # an export again: same weights, same metadata
        meta = read_metadata(src)
        weights = src / EXPORT_WEIGHTS if src.is_dir() else src
        state = read_safetensors(weights)
        use_ema = bool(meta.get("ema", use_ema))
    else:
        ckpt = safe_load(src)
        meta = check_metadata(ckpt.get(META_KEY), str(src))
        state = {k: v.contiguous() for k, v in model_state(ckpt, use_ema, str(src)).items()}
    _build(meta, state, str(src))
    info = {**without_abs_paths(meta), "exported_from": src.name, "ema": use_ema}
    atomic_write_files({out / EXPORT_WEIGHTS: save(state, metadata={"format": "pt"}),
                        out / EXPORT_CONFIG: json.dumps(info, indent=1).encode()})
    return out


def save_classifier(classifier: nn.Module, out_dir: str | os.PathLike, **extra: Any) -> Path:
    """Write a fine-tuned :class:`~dnadiff.models.heads.SequenceClassifier` (backbone + head) as
    ``classifier.safetensors`` + ``config.json``; :func:`load_classifier` reads it back."""
    out = check_output_dir(out_dir, (CLASSIFIER_WEIGHTS, EXPORT_CONFIG))
    atomic_write_files(classifier_files(classifier, out, **extra))
    return out


def classifier_files(classifier: nn.Module, out_dir: str | os.PathLike, **extra: Any) -> dict[Path, bytes]:
    """The files :func:`save_classifier` writes, as {path: bytes} (to write with other outputs at once)."""
    from safetensors.torch import save

    out = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in classifier.state_dict().items()}
    meta = {
        "format": FORMAT_VERSION, "kind": CLASSIFIER_KIND, "dnadiff_version": _version(),
        "vocab": list(Tokenizer().vocab), "model": classifier.backbone.config, "head": dict(classifier.settings),
        "classes": list(classifier.classes), **extra,
    }
    return {out / CLASSIFIER_WEIGHTS: save(state, metadata={"format": "pt"}),
            out / EXPORT_CONFIG: json.dumps(meta, indent=1).encode()}


def load_classifier(path: str | os.PathLike, map_location: Any = "cpu") -> nn.Module:
    """A classifier saved by :func:`save_classifier` (a folder), in eval mode, with ``.classes``."""
    from dnadiff.models.heads import SequenceClassifier
    from dnadiff.models.registry import model_from_config

    folder = Path(path)
    cfg_path, weights = folder / EXPORT_CONFIG, folder / CLASSIFIER_WEIGHTS
    if not folder.is_dir() or not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"{folder}: not a saved classifier (expected a folder with {EXPORT_CONFIG} and {CLASSIFIER_WEIGHTS}, "
            "as written by `python -m dnadiff.finetune save_classifier=DIR`)"
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({err})") from None
    check_metadata(meta, str(cfg_path))
    if meta.get("kind") != CLASSIFIER_KIND:
        raise CheckpointError(f"{cfg_path}: kind {meta.get('kind')!r} is not a {CLASSIFIER_KIND}")
    try:
        head = dict(meta["head"])
        classifier = SequenceClassifier(model_from_config(dict(meta["model"])), head.pop("num_classes"), **head)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{cfg_path}: invalid classifier config ({first_line(err)})") from None
    state = read_safetensors(weights, map_location)
    check_weights(classifier, state, str(weights))
    classifier.load_state_dict(state)
    classifier.classes = list(meta.get("classes") or [])
    return classifier.eval()


def _version() -> str:
    return __version__


def export_hf_checkpoint(
    ckpt: str | os.PathLike, out_dir: str | os.PathLike, use_ema: bool = True, code_repo: str | None = None
) -> Path:
    """``python -m dnadiff.export ... format=hf``: any loadable model (checkpoint, export, snapshot) -> a
    snapshot in the Caduceus authors' schema (:func:`dnadiff.models.hf_caduceus.export_hf`)."""
    from dnadiff.models.hf_caduceus import CONFIG_FILE, SAFETENSORS_FILE, export_hf

    check_output_dir(out_dir, (SAFETENSORS_FILE, CONFIG_FILE))
    return export_hf(load_model(ckpt, use_ema=use_ema), out_dir, code_repo=code_repo)
