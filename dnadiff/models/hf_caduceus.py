"""Caduceus checkpoints in the authors' Hugging Face schema <-> dnadiff language models.

A *snapshot* is a folder with ``config.json`` (``model_type: "caduceus"``, the schema of the
authors' ``CaduceusConfig``, github kuleshov-group/caduceus, folder ``caduceus/``) and
``model.safetensors`` or ``pytorch_model.bin`` holding a ``CaduceusForMaskedLM`` state dict, as
published on the Hugging Face hub (``kuleshov-group/caduceus-{ps,ph}_seqlen-131k_d_model-256_n_layer-16``).
:func:`load_hf_snapshot` (behind ``dnadiff.load_model(DIR)``) gives a :class:`DNALM` whose
logits equal theirs (fp32); :func:`export_hf` writes a dnadiff model back in their schema.

The mapping follows the mathematics of their code (``modeling_caduceus.py``, ``modeling_rcps.py``,
mamba-ssm's ``Mamba`` / ``Block``), written on the residual stream s = hidden + residual:

- Every tensor maps to one dnadiff tensor of the same shape, unchanged (table in
  :func:`tensor_names`): ``mamba_fwd``/``mamba_rev`` -> BiMamba's ``ssm_fwd``/``ssm_rev`` with the
  shared ``in_proj``/``out_proj`` (``bidirectional_weight_tie``; untied -> ``in_proj_rev`` /
  ``out_proj_rev``), ``layers.i.norm`` -> ``blocks.i.norm``, ``norm_f`` -> ``norm_f``, the word
  embedding -> ``embedding`` (their LM head is tied to it, RCPS head included, as dnadiff's).
- Caduceus-PH (``rcps: false``): mamba-ssm's Block computes s <- s + mixer(norm(s)) whether
  ``fused_add_norm`` is true or false; dnadiff's Block is the same.
- Caduceus-PS (``rcps: true``), width-2D stream s = [s1, s2], f(h) = h + mixer(norm(h)):
  unfused (``RCPSAddNormWrapper``): s <- [f(s1), flipSC(f(flipSC(s2)))], dnadiff's RCPSWrapper.
  fused (``RCPSMambaBlock`` with ``fused_add_norm: true``, the published checkpoints): the add-norm
  runs on the *second* half for the forward strand and on the flipped *first* half for the
  reverse strand, and the residual is returned in that order, so
  s <- [f(s2), flipSC(f(flipSC(s1)))]: the same block after swapping the halves. dnadiff's
  ``rcps_swap_halves`` option is that swap. Their final ``norm_f`` does not swap in either path.
  (The swap cannot be folded into the weights alone: pushing it through the layers conjugates
  every other block, and for an odd n_layer one swap is left over between the tied embedding and
  LM head.) A name-for-name load without the swap gives logits wrong by O(1).
- RMSNorm: x * rsqrt(mean(x^2) + norm_epsilon) * weight, no bias; ``rms_norm: false``
  (LayerNorm) is refused. ``residual_in_fp32`` only changes the residual's dtype; dnadiff keeps
  the residual in fp32, which is the same number for fp32 weights.
- Vocabulary: the Caduceus character tokenizer's ids (= dnadiff's 12 tokens), embedding padded to
  ``vocab_size`` rounded up to ``pad_vocab_size_multiple`` (16 for the published models); the
  padded rows are kept bit for bit; dnadiff's logits are the first 12 columns of theirs. The
  ``complement_map`` must be dnadiff's (A<->T, C<->G, identity elsewhere and on padding rows).
- Refused, with one line naming the value: ``model_type`` other than caduceus, ``bidirectional:
  false``, ``bidirectional_strategy`` other than "add", ``rms_norm: false``, a complement map or
  vocabulary that is not dnadiff's, unknown ``ssm_cfg`` keys, tied tensors that differ, sharded
  weights.
- Init-only and bookkeeping values (``dt_init``, ``dt_scale``, ``use_fast_path``,
  ``residual_in_fp32``, ``transformers_version``, ...) go to the model config key ``hf_extra``
  and come back unchanged in :func:`export_hf`.

**N.** The Caduceus pretraining data replaced N by [PAD] (their ``hg38_dataset.py``), so their N
row was never a target and was seen as input only as MLM random-replacement noise. dnadiff keeps
N as its own token (id 11) everywhere (tokenizer, windows, the MDLM loss), and the loader keeps
the published weights bit for bit, N row included: dnadiff's logits equal theirs for every input,
N included. Consequences: before fine-tuning, the model gives N (and [PAD]) almost no probability,
so bounds measured on windows that contain N are poor at those positions; evaluate raw published
weights on N-free windows (``max_n_frac=0``), or fine-tune first (the N row then learns N runs).
To feed the model exactly what it was pretrained on, map N to [PAD] in the input yourself.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dnadiff.models.lm import DNALM
from dnadiff.models.model_config import validate_config
from dnadiff.tokenizer import VOCAB, Tokenizer

MODEL_TYPE = "caduceus"
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
BIN_FILE = "pytorch_model.bin"
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
AUTO_MAP = {
    "AutoConfig": "configuration_caduceus.CaduceusConfig",
    "AutoModel": "modeling_caduceus.Caduceus",
    "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_caduceus.CaduceusForSequenceClassification",
}
TRANSFORMERS_VERSION = "4.38.1"  # the version the authors' code pins (their caduceus_env.yml)

# CaduceusConfig.__init__ defaults (used for keys a config.json leaves out)
CADUCEUS_DEFAULTS: dict[str, Any] = {
    "d_model": 2560, "n_layer": 64, "vocab_size": 50277, "ssm_cfg": None, "rms_norm": True,
    "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8, "norm_epsilon": 1e-5,
    "initializer_cfg": None, "bidirectional": True, "bidirectional_strategy": "add",
    "bidirectional_weight_tie": True, "rcps": False, "complement_map": None,
}
# mamba_ssm.modules.mamba_simple.Mamba defaults (the ssm_cfg keys)
MAMBA_DEFAULTS: dict[str, Any] = {
    "d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "dt_min": 0.001, "dt_max": 0.1,
    "dt_init": "random", "dt_scale": 1.0, "dt_init_floor": 1e-4, "conv_bias": True, "bias": False,
    "use_fast_path": True,
}
# ssm_cfg key -> dnadiff model config key (the rest of ssm_cfg is init-only / runtime: hf_extra)
_SSM_TO_DNADIFF = {
    "d_state": "d_state", "d_conv": "d_conv", "expand": "expand", "dt_rank": "dt_rank",
    "dt_min": "dt_min", "dt_max": "dt_max", "dt_init_floor": "dt_init_floor",
    "conv_bias": "conv_bias", "bias": "bias",
}
_SSM_EXTRA = {"dt_init", "dt_scale", "use_fast_path"}
# top-level keys that the mapping derives from the dnadiff config (everything else is hf_extra)
_DERIVED = {
    "model_type", "d_model", "n_layer", "vocab_size", "ssm_cfg", "rms_norm", "norm_epsilon",
    "initializer_cfg", "bidirectional", "bidirectional_strategy", "bidirectional_weight_tie", "rcps",
    "torch_dtype",
}
_ARCHS = ("caduceus_ps", "caduceus_ph")
# what an export writes for the non-derived keys when hf_extra does not say otherwise (and what a
# load therefore leaves out of hf_extra): CaduceusConfig's / their _init_weights' defaults
_EXTRA_DEFAULTS: dict[str, Any] = {
    "architectures": ["CaduceusForMaskedLM"],
    "auto_map": AUTO_MAP,
    "fused_add_norm": True,
    "residual_in_fp32": True,
    "transformers_version": TRANSFORMERS_VERSION,
}
_INIT_DEFAULTS: dict[str, Any] = {"n_residuals_per_layer": 1, "rescale_prenorm_residual": True}


class HFSnapshotError(ValueError):
    """A Hugging Face Caduceus snapshot that cannot be read or mapped, or a model that cannot be exported."""


# ---------------------------------------------------------------------- detection
def is_hf_snapshot(path: str | os.PathLike) -> bool:
    """A folder whose config.json has a ``model_type`` (a Hugging Face config; dnadiff exports have none)."""
    cfg = Path(path) / CONFIG_FILE
    if not (Path(path).is_dir() and cfg.is_file()):
        return False
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data


# ---------------------------------------------------------------------- config mapping
def _padded(vocab_size: int, multiple: int) -> int:
    return math.ceil(vocab_size / multiple) * multiple


def _expected_complement(padded_vocab: int) -> list[int]:
    comp = list(range(padded_vocab))
    comp[: len(VOCAB)] = Tokenizer().complement_map.tolist()
    return comp


def _check_complement_map(raw: Any, padded_vocab: int, source: str) -> None:
    """The authors' complement_map ({id: complement id}, JSON keys as strings) must be dnadiff's."""
    if not isinstance(raw, Mapping):
        raise HFSnapshotError(f"{source}: complement_map must be a mapping of token ids, got {type(raw).__name__}")
    expected = _expected_complement(padded_vocab)
    try:
        items = sorted((int(k), int(v)) for k, v in raw.items())
    except (TypeError, ValueError):
        raise HFSnapshotError(f"{source}: complement_map has non-integer entries") from None
    if [k for k, _ in items] != list(range(len(items))) or len(items) > padded_vocab:
        raise HFSnapshotError(f"{source}: complement_map keys must be 0..n-1 with n <= vocab size {padded_vocab}")
    for k, v in items:
        if v != expected[k]:
            name = VOCAB[k] if k < len(VOCAB) else f"padding id {k}"
            raise HFSnapshotError(
                f"{source}: complement_map[{k}]={v} ({name}) differs from dnadiff's tokenizer ({expected[k]}); "
                "not the Caduceus character vocabulary"
            )


def hf_to_dnadiff_config(hf: Mapping[str, Any], source: str = CONFIG_FILE) -> dict:
    """The dnadiff model config (validated) for an authors'-schema config dict."""
    if not isinstance(hf, Mapping):
        raise HFSnapshotError(f"{source}: expected a JSON object")
    model_type = hf.get("model_type")
    if model_type != MODEL_TYPE:
        raise HFSnapshotError(f"{source}: model_type {model_type!r} is not supported (only {MODEL_TYPE!r})")

    def get(key: str) -> Any:
        return hf.get(key, CADUCEUS_DEFAULTS[key])

    if get("bidirectional") is not True:
        raise HFSnapshotError(
            f"{source}: bidirectional={get('bidirectional')!r} is not supported (dnadiff maps the bidirectional "
            "Caduceus-PS / -PH only)"
        )
    strategy = get("bidirectional_strategy")
    if strategy is None:
        strategy = "add"  # BiMambaWrapper's own default
    if strategy != "add":
        raise HFSnapshotError(f"{source}: bidirectional_strategy={strategy!r} is not supported (only 'add')")
    if get("rms_norm") is not True:
        raise HFSnapshotError(
            f"{source}: rms_norm={get('rms_norm')!r} (LayerNorm) is not supported: dnadiff's blocks use RMSNorm"
        )
    rcps = get("rcps")
    if not isinstance(rcps, bool):
        raise HFSnapshotError(f"{source}: rcps must be true or false, got {rcps!r}")
    fused = get("fused_add_norm")
    if not isinstance(fused, bool):
        raise HFSnapshotError(f"{source}: fused_add_norm must be true or false, got {fused!r}")

    ssm_raw = get("ssm_cfg") or {}
    if not isinstance(ssm_raw, Mapping):
        raise HFSnapshotError(f"{source}: ssm_cfg must be a mapping, got {type(ssm_raw).__name__}")
    bad = sorted(set(ssm_raw) - set(MAMBA_DEFAULTS))
    if bad:
        raise HFSnapshotError(f"{source}: ssm_cfg key(s) {bad} are not arguments of mamba-ssm's Mamba (v1)")
    ssm = {**MAMBA_DEFAULTS, **ssm_raw}

    vocab, multiple = get("vocab_size"), get("pad_vocab_size_multiple")
    for key, value in (("vocab_size", vocab), ("pad_vocab_size_multiple", multiple)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HFSnapshotError(f"{source}: {key} must be a positive int, got {value!r}")
    padded = _padded(vocab, multiple)
    if padded < len(VOCAB):
        raise HFSnapshotError(
            f"{source}: vocab_size={vocab} is smaller than the Caduceus character vocabulary ({len(VOCAB)} tokens)"
        )
    dn_multiple = multiple if _padded(len(VOCAB), multiple) == padded else padded
    comp = get("complement_map")
    if rcps and comp is None:
        raise HFSnapshotError(f"{source}: rcps=true needs a complement_map")
    if comp is not None:
        _check_complement_map(comp, padded, source)

    init = get("initializer_cfg")
    if init is not None and not isinstance(init, Mapping):
        raise HFSnapshotError(f"{source}: initializer_cfg must be a mapping or null")
    tie = True if rcps else hf.get("tie_word_embeddings", True)  # RCPS ties always (their tie_weights)
    if not isinstance(tie, bool):
        raise HFSnapshotError(f"{source}: tie_word_embeddings must be true or false, got {tie!r}")

    extra: dict[str, Any] = {
        k: v for k, v in hf.items() if k not in _DERIVED and not (k in _EXTRA_DEFAULTS and v == _EXTRA_DEFAULTS[k])
    }
    if not rcps and comp is not None and len(comp) == padded:
        extra.pop("complement_map", None)  # checked above: the full map, which an export writes anyway
    if rcps:  # both derived for PS; for PH they change nothing and are kept as they were
        extra.pop("complement_map", None)
        extra.pop("fused_add_norm", None)
    if dn_multiple == multiple:
        extra.pop("pad_vocab_size_multiple", None)
    else:
        extra["pad_vocab_size_multiple"] = multiple
    ssm_extra = {k: v for k, v in ssm_raw.items() if k in _SSM_EXTRA and v != MAMBA_DEFAULTS[k]}
    if ssm_extra:
        extra["ssm_cfg"] = ssm_extra
    if init is None:
        if "initializer_cfg" in hf:
            extra["initializer_cfg"] = None
    else:
        init_extra = {
            k: v for k, v in init.items()
            if k != "initializer_range" and not (k in _INIT_DEFAULTS and v == _INIT_DEFAULTS[k])
        }
        if init_extra:
            extra["initializer_cfg"] = init_extra

    cfg = {
        "arch": "caduceus_ps" if rcps else "caduceus_ph",
        "d_model": get("d_model"),
        "n_layer": get("n_layer"),
        **{dn: ssm[key] for key, dn in _SSM_TO_DNADIFF.items()},
        "norm_eps": get("norm_epsilon"),
        "pad_vocab_multiple": dn_multiple,
        "tie_embeddings": tie,
        "weight_tie": get("bidirectional_weight_tie"),
        "rcps_swap_halves": rcps and fused,
        "hf_extra": extra or None,
    }
    if init is not None and "initializer_range" in init:
        cfg["initializer_range"] = init["initializer_range"]
    try:
        return validate_config(cfg)
    except ValueError as err:
        raise HFSnapshotError(f"{source}: {err} (mapped from the Caduceus config)") from None


def dnadiff_to_hf_config(cfg: Mapping[str, Any], torch_dtype: str = "float32", code_repo: str | None = None) -> dict:
    """The authors'-schema config.json dict for a dnadiff model config (refuses what has no counterpart).

    ``code_repo`` (e.g. ``kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16``) writes
    the auto_map in the ``repo--module.Class`` form, so that transformers fetches the authors' code
    from that hub repository; without it the three code files must sit beside config.json.
    """
    cfg = validate_config(cfg)
    _check_exportable(cfg)
    rcps = cfg["rcps"]
    extra = dict(cfg["hf_extra"] or {})
    padded = _padded(cfg["vocab_size"], cfg["pad_vocab_multiple"])
    auto_map = {k: f"{code_repo}--{v}" for k, v in AUTO_MAP.items()} if code_repo else dict(AUTO_MAP)
    out: dict[str, Any] = {
        **json.loads(json.dumps(_EXTRA_DEFAULTS)),  # residual_in_fp32 true: dnadiff keeps the residual in fp32
        "auto_map": auto_map,
        "complement_map": {str(i): c for i, c in enumerate(_expected_complement(padded))},
        "pad_vocab_size_multiple": cfg["pad_vocab_multiple"],
    }
    ssm_extra = extra.pop("ssm_cfg", None) or {}
    init_extra = extra.pop("initializer_cfg", {})
    init_extra = None if init_extra is None else {**_INIT_DEFAULTS, **init_extra}
    out.update(extra)
    if code_repo:  # asked for explicitly: wins over a stored auto_map
        out["auto_map"] = auto_map
    ssm = {k: MAMBA_DEFAULTS[k] for k in sorted(_SSM_EXTRA)}
    ssm.update(ssm_extra)
    ssm.update({key: cfg[dn] for key, dn in _SSM_TO_DNADIFF.items()})
    out.update({
        "model_type": MODEL_TYPE,
        "d_model": cfg["d_model"],
        "n_layer": cfg["n_layer"],
        "vocab_size": padded,
        "ssm_cfg": dict(sorted(ssm.items())),
        "rms_norm": True,
        "norm_epsilon": cfg["norm_eps"],
        "initializer_cfg": None if init_extra is None else dict(
            sorted({**init_extra, "initializer_range": cfg["initializer_range"]}.items())
        ),
        "bidirectional": True,
        "bidirectional_strategy": "add",
        "bidirectional_weight_tie": cfg["weight_tie"],
        "rcps": rcps,
        "torch_dtype": torch_dtype,
    })
    if rcps:
        out["fused_add_norm"] = cfg["rcps_swap_halves"]
        out["complement_map"] = {str(i): c for i, c in enumerate(_expected_complement(padded))}
    elif not cfg["tie_embeddings"]:
        out["tie_word_embeddings"] = False
    elif "tie_word_embeddings" in out:
        out["tie_word_embeddings"] = True
    if _padded(cfg["vocab_size"], out["pad_vocab_size_multiple"]) != padded:
        out["pad_vocab_size_multiple"] = cfg["pad_vocab_multiple"]
    return dict(sorted(out.items()))


def _check_exportable(cfg: Mapping[str, Any]) -> None:
    """One-line refusals for dnadiff models that CaduceusForMaskedLM cannot represent."""
    if cfg["arch"] not in _ARCHS:
        raise HFSnapshotError(f"arch={cfg['arch']!r} has no Caduceus Hugging Face counterpart (only {list(_ARCHS)})")
    for key, value, why in (
        ("n_classes", cfg["n_classes"] > 0, "class conditioning"),
        ("time_conditioning", cfg["time_conditioning"], "time conditioning"),
        ("conjoin", cfg["conjoin"], "post-hoc conjoining in the LM"),
    ):
        if value:
            raise HFSnapshotError(f"{key}={cfg[key]!r}: CaduceusForMaskedLM has no {why}; cannot export to format=hf")
    if cfg["rcps"] and not cfg["tie_embeddings"]:
        raise HFSnapshotError("tie_embeddings=False: the authors' RCPS LM head is always tied to the embedding")


# ---------------------------------------------------------------------- state-dict mapping
def tensor_names(cfg: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """(dnadiff name, authors' names) for every dnadiff tensor; the first authors' name is the one
    their ``save_pretrained`` keeps in model.safetensors, the others are tied aliases of it.

    PS (``rcps``) layer i: ``caduceus.backbone.layers.i.mixer.submodule.mamba_{fwd,rev}.*`` ->
    ``blocks.i.module.mixer.{ssm_fwd,ssm_rev}.*`` (in/out_proj -> ``mixer.in_proj`` / ``out_proj``);
    ``layers.i.norm.weight`` (fused) or ``layers.i.norm.submodule.weight`` (unfused) ->
    ``blocks.i.module.norm.weight``. PH drops ``submodule.`` / ``module.``.
    """
    rcps = cfg["rcps"]
    fused = cfg["rcps_swap_halves"]
    names: list[tuple[str, tuple[str, ...]]] = []
    emb = "caduceus.backbone.embeddings.word_embeddings." + ("embedding.weight" if rcps else "weight")
    head = "lm_head.lm_head.weight" if rcps else "lm_head.weight"
    if cfg["tie_embeddings"]:
        names.append(("embedding.weight", (emb, head)))
    else:
        names += [("embedding.weight", (emb,)), ("lm_head.weight", (head,))]
    proj = ["in_proj.weight", "out_proj.weight"] + (["in_proj.bias", "out_proj.bias"] if cfg["bias"] else [])
    ssm = ["A_log", "D", "conv1d.weight", "dt_proj.bias", "dt_proj.weight", "x_proj.weight"]
    ssm += ["conv1d.bias"] if cfg["conv_bias"] else []
    for i in range(cfg["n_layer"]):
        hf = f"caduceus.backbone.layers.{i}."
        dn = f"blocks.{i}." + ("module." if rcps else "")
        mixer_hf = hf + "mixer." + ("submodule." if rcps else "")
        norm_hf = hf + ("norm.submodule.weight" if rcps and not fused else "norm.weight")
        names.append((dn + "norm.weight", (norm_hf,)))
        for p in proj:
            fwd, rev = mixer_hf + "mamba_fwd." + p, mixer_hf + "mamba_rev." + p
            if cfg["weight_tie"]:
                names.append((dn + "mixer." + p, (fwd, rev)))
            else:
                rev_name = p.replace("in_proj", "in_proj_rev").replace("out_proj", "out_proj_rev")
                names += [(dn + "mixer." + p, (fwd,)), (dn + "mixer." + rev_name, (rev,))]
        for direction in ("fwd", "rev"):
            for p in ssm:
                names.append((f"{dn}mixer.ssm_{direction}.{p}", (f"{mixer_hf}mamba_{direction}.{p}",)))
    norm_f = "caduceus.backbone.norm_f." + ("submodule.weight" if rcps and not fused else "weight")
    names.append(("norm_f.module.weight" if rcps else "norm_f.weight", (norm_f,)))
    return names


def buffer_names(cfg: Mapping[str, Any]) -> list[str]:
    """The authors' persistent buffers (the RCPS embedding's and head's complement_map)."""
    if not cfg["rcps"]:
        return []
    return ["caduceus.backbone.embeddings.word_embeddings.complement_map", "lm_head.complement_map"]


def hf_to_dnadiff_state(
    state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], source: str = "weights"
) -> dict[str, torch.Tensor]:
    """dnadiff state dict from the authors' (tied aliases optional, must agree where present)."""
    state = dict(state)
    if state and not any(k.startswith("caduceus.") for k in state) and any(k.startswith("backbone.") for k in state):
        state = {"caduceus." + k: v for k, v in state.items()}  # a base ``Caduceus`` model: no head (tied)
    padded = _padded(cfg["vocab_size"], cfg["pad_vocab_multiple"])
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for dn, hf_names in tensor_names(cfg):
        present = [n for n in hf_names if n in state]
        used.update(present)
        if not present:
            raise HFSnapshotError(f"{source}: tensor {hf_names[0]!r} is missing")
        first = state[present[0]]
        for other in present[1:]:
            t = state[other]
            if t.shape != first.shape or not torch.equal(t, first):
                key = "bidirectional_weight_tie" if "mamba_rev" in other else "tie_word_embeddings"
                raise HFSnapshotError(
                    f"{source}: {other!r} differs from {present[0]!r}, but the config ties them ({key}=true)"
                )
        out[dn] = first
    comp = torch.tensor(_expected_complement(padded), dtype=torch.long)
    for name in buffer_names(cfg):
        if name in state:
            used.add(name)
            if not torch.equal(state[name].to(torch.long).flatten(), comp):
                raise HFSnapshotError(f"{source}: buffer {name!r} is not dnadiff's complement map {comp.tolist()}")
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise HFSnapshotError(
            f"{source}: unexpected tensor(s) {unexpected[:3]} for this config (not a CaduceusForMaskedLM of it)"
        )
    return out


def dnadiff_to_hf_state(state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The authors' state dict as their ``save_pretrained`` writes it (tied aliases left out)."""
    out = {hf_names[0]: state[dn].detach().contiguous() for dn, hf_names in tensor_names(cfg)}
    padded = _padded(cfg["vocab_size"], cfg["pad_vocab_multiple"])
    for name in buffer_names(cfg):
        out[name] = torch.tensor(_expected_complement(padded), dtype=torch.long)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------- load / export
def read_hf_weights(folder: str | os.PathLike, map_location: Any = "cpu") -> tuple[dict[str, torch.Tensor], Path]:
    """The snapshot's state dict (model.safetensors, else pytorch_model.bin through weights_only) and its file."""
    folder = Path(folder)
    for index in SHARD_INDEXES:
        if (folder / index).is_file() and not (folder / SAFETENSORS_FILE).is_file():
            raise HFSnapshotError(
                f"{folder / index}: sharded weights are not supported; merge them into {SAFETENSORS_FILE}"
            )
    st, binary = folder / SAFETENSORS_FILE, folder / BIN_FILE
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st), device=str(map_location)), st
        except (SafetensorError, OSError, ValueError) as err:
            raise HFSnapshotError(f"{st}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if binary.is_file():
        try:
            state = torch.load(binary, map_location=map_location, weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HFSnapshotError(f"{binary}: not loadable with weights_only=True ({first})") from None
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise HFSnapshotError(f"{binary}: expected a state dict of tensors, got {type(state).__name__}")
        return dict(state), binary
    raise HFSnapshotError(f"{folder}: no {SAFETENSORS_FILE} or {BIN_FILE} beside {CONFIG_FILE}")


def read_hf_config(folder: str | os.PathLike) -> dict:
    """config.json of a snapshot as a dict (one-line errors)."""
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise HFSnapshotError(f"{path}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise HFSnapshotError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise HFSnapshotError(f"{path}: expected a JSON object")
    return data


def load_hf_snapshot(path: str | os.PathLike, map_location: Any = "cpu") -> DNALM:
    """A dnadiff LM (eval mode) with the snapshot's weights, bit for bit (see the module doc)."""
    folder = Path(path)
    cfg = hf_to_dnadiff_config(read_hf_config(folder), str(folder / CONFIG_FILE))
    state, weights = read_hf_weights(folder, map_location)
    model = DNALM(cfg)
    mapped = hf_to_dnadiff_state(state, cfg, str(weights))
    expected = model.state_dict()
    for name, tensor in mapped.items():
        if tensor.shape != expected[name].shape:
            hf_name = dict(tensor_names(cfg))[name][0]
            raise HFSnapshotError(
                f"{weights}: {hf_name!r} has shape {tuple(tensor.shape)}, "
                f"the config implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(mapped, strict=True)
    return model.to(map_location).eval()


def export_hf(model: DNALM, out_dir: str | os.PathLike, code_repo: str | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` in the authors' schema; returns the folder.

    ``AutoModelForMaskedLM.from_pretrained(out_dir, trust_remote_code=True)`` loads it with the
    authors' code: put their ``configuration_caduceus.py``, ``modeling_caduceus.py`` and
    ``modeling_rcps.py`` (from their hub repository or github kuleshov-group/caduceus, folder
    ``caduceus/``) beside config.json, or pass ``code_repo`` (see :func:`dnadiff_to_hf_config`).
    """
    from safetensors.torch import save

    from dnadiff.atomic import atomic_write_files, check_output_dir
    from dnadiff.config import without_abs_paths

    if not isinstance(model, DNALM):
        raise HFSnapshotError(f"expected a dnadiff DNALM, got {type(model).__name__}")
    cfg = model.config
    state = model.state_dict()
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) != 1:
        raise HFSnapshotError(f"the model's weights mix dtypes {sorted(map(str, dtypes))}; cast it to one first")
    dtype = str(dtypes.pop()).removeprefix("torch.")
    hf_cfg = without_abs_paths(dnadiff_to_hf_config(cfg, torch_dtype=dtype, code_repo=code_repo))
    tensors = {k: v.cpu() for k, v in dnadiff_to_hf_state(state, cfg).items()}
    out = check_output_dir(out_dir, (SAFETENSORS_FILE, CONFIG_FILE))
    atomic_write_files({out / SAFETENSORS_FILE: save(tensors, metadata={"format": "pt"}),
                        out / CONFIG_FILE: (json.dumps(hf_cfg, indent=2) + "\n").encode()})
    return out
