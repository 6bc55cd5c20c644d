"""How a run starts: fresh, from another model's weights (``init_from``), or as the exact
continuation of one of its checkpoints (``resume``); and the checks that keep a resume exact.

- ``init_from=PATH``: any model :func:`dnadiff.load_model` reads (a Hugging Face Caduceus snapshot
  folder, a dnadiff training checkpoint (its EMA weights) or an export). Its model config replaces
  the ``model`` group, and the log says so; a command-line model override that contradicts it is
  refused (only ``model.scan_backend``, a choice of kernel, is taken from the command line).
  Weights only: optimiser, schedule, EMA and step start afresh, with the chosen objective.
- ``resume=CKPT``: weights, EMA, optimiser, schedule, step and data position come from CKPT.
  Another model or objective is refused (that is ``init_from=CKPT``, a new run from its weights);
  other settings that shape the continuation (:data:`SCHEDULE_KEYS`: steps, optimiser, batch,
  data stream, seed) are refused naming each changed key, unless ``resume_override=true``, which
  records the changes in the checkpoint metadata. Giving ``init_from`` too (the same command plus
  ``resume=``) only sets the model config; the weights are the checkpoint's.

Every checkpoint's metadata carries ``run``: its id, how it started (``fresh`` / ``init_from``,
with the source), and every resume (from where, at which step, which settings were overridden).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from dnadiff.checkpoint import META_KEY, check_metadata, read_metadata, safe_load
from dnadiff.config import ConfigError, as_dict
from dnadiff.models.model_config import ModelConfig, validate_config
from dnadiff.train.config import PretrainConfig

log = logging.getLogger("dnadiff.pretrain")

RUNTIME_MODEL_KEYS = frozenset({"scan_backend"})  # how the model is computed, not what it is
SCHEDULE_KEYS: tuple[str, ...] = (
    "seed", "trainer.max_steps", "trainer.accumulate_grad_batches", "trainer.gradient_clip_val", "optim.", "data.",
)
DATA_RUNTIME_KEYS = frozenset({"data.eval_batch_size", "data.num_workers", "data.pin_memory", "data.max_eval_windows",
                               "data.batch_size"})  # data.batch_size is compared as the global batch
PATH_KEYS = frozenset({"data.fasta", "data.bed", "data.root"})  # compared by file name: data may move


class ResumeError(RuntimeError):
    """A resume that would not continue the run exactly; names the checkpoint and each changed key."""


@dataclass
class Change:
    """A setting that differs between a run's checkpoint and this start."""

    key: str
    was: Any
    now: Any

    def __str__(self) -> str:
        return f"{self.key} {json.dumps(self.was)} -> {json.dumps(self.now)}"

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "was": self.was, "now": self.now}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as {"key": value} and {"group.key": value}; values that are mappings themselves
    (e.g. data.chromosomes) stay whole."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and not prefix:
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _same(key: str, a: Any, b: Any) -> bool:
    if key in PATH_KEYS and isinstance(a, str) and isinstance(b, str):
        return Path(a).name == Path(b).name
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def architecture_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Differences in the model (resolved, runtime keys aside) and the objective."""
    changes = []
    models = [validate_config({k: v for k, v in dict(cfg).items() if k in ModelConfig.__dataclass_fields__})
              for cfg in (old.get("model", {}), new.get("model", {}))]
    for name in sorted(set(models[0]) | set(models[1])):
        if name not in RUNTIME_MODEL_KEYS and not _same(name, models[0].get(name), models[1].get(name)):
            changes.append(Change(f"model.{name}", models[0].get(name), models[1].get(name)))
    a, b = flatten(old.get("objective", {}), "objective."), flatten(new.get("objective", {}), "objective.")
    changes += [Change(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if not _same(k, a.get(k), b.get(k))]
    return changes


def schedule_changes(old: Mapping[str, Any], new: Mapping[str, Any], old_world: Optional[int],
                     new_world: int) -> list[Change]:
    """Differences in what shapes the continuation (:data:`SCHEDULE_KEYS`); keys that the old
    config lacks (made by an older dnadiff) are not compared. The batch is compared as the global
    batch of one forward pass (data.batch_size x world size): data parallelism changes nothing."""
    a, b = flatten(old), flatten(new)
    keys = [k for k in b if k in a and k.startswith(SCHEDULE_KEYS) and k not in DATA_RUNTIME_KEYS]
    changes = [Change(k, a[k], b[k]) for k in keys if not _same(k, a[k], b[k])]
    old_batch, new_batch = a.get("data.batch_size"), b.get("data.batch_size")
    if old_batch is not None:
        if old_world is None and old_batch != new_batch:
            changes.append(Change("data.batch_size", old_batch, new_batch))
        elif old_world is not None and old_batch * old_world != new_batch * new_world:
            changes.append(Change("data.batch_size x world size (trainer.devices x trainer.num_nodes)",
                                  f"{old_batch} x {old_world}", f"{new_batch} x {new_world}"))
    return changes


def command_line_model_overrides() -> list[str]:
    """The ``model=...`` / ``model.KEY=...`` overrides of the running Hydra job (none outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        task = list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError, AttributeError):
        return []
    return [o for o in task if o.lstrip("+~").startswith(("model.", "model="))]


def init_kind(path: Path) -> str:
    """hf_snapshot | export | checkpoint."""
    from dnadiff.models.hf_caduceus import is_hf_snapshot

    if is_hf_snapshot(path):
        return "hf_snapshot"
    return "export" if path.is_dir() or path.suffix == ".safetensors" else "checkpoint"


@dataclass
class InitSource:
    """The model ``init_from`` names: where, what kind, and its (validated) model config."""

    path: str
    kind: str
    config: dict

    @classmethod
    def read(cls, path: str) -> "InitSource":
        """Read the model config only (the weights are read by :meth:`weights`)."""
        p = Path(path)
        kind = init_kind(p)
        if kind == "hf_snapshot":
            from dnadiff.models.hf_caduceus import CONFIG_FILE, hf_to_dnadiff_config, read_hf_config

            config = hf_to_dnadiff_config(read_hf_config(p), str(p / CONFIG_FILE))
        else:
            config = dict(read_metadata(p)["model"])
        return cls(path, kind, validate_config(config))

    def weights(self) -> dict[str, torch.Tensor]:
        """The model's weights (EMA ones for a training checkpoint)."""
        from dnadiff.checkpoint import load_model

        return load_model(self.path).state_dict()

    def describe(self) -> str:
        c = self.config
        return f"{c['name']}: arch {c['arch']}, d_model {c['d_model']}, n_layer {c['n_layer']}"

    def apply(self, cfg: PretrainConfig, overrides: Sequence[str]) -> PretrainConfig:
        """``cfg`` with this model's config as its model group; refuses contradicting ``overrides``."""
        conflicts = []
        for override in overrides:
            name, _, value = override.lstrip("+~").partition("=")
            if name == "model":
                if cfg.model.arch != self.config["arch"]:
                    conflicts.append(f"{override} (arch {cfg.model.arch})")
                continue
            leaf = name.removeprefix("model.")
            if leaf in RUNTIME_MODEL_KEYS or leaf not in self.config:
                continue
            mine = validate_config(as_dict(cfg.model)).get(leaf)
            if not _same(leaf, mine, self.config[leaf]):
                conflicts.append(f"{override} (the model has {leaf}={json.dumps(self.config[leaf])})")
        if conflicts:
            raise ConfigError(f"init_from={self.path} keeps its model's architecture ({self.describe()}); "
                              f"drop the conflicting override{'s' if len(conflicts) > 1 else ''} {', '.join(conflicts)}")
        model = ModelConfig(**{**self.config, "scan_backend": cfg.model.scan_backend})
        model.validate("model")
        objective = cfg.objective
        if objective.model_arch is not None:  # the configs tie it to the model group's arch
            objective = dataclasses.replace(objective, model_arch=model.arch)
            objective.validate("objective")
        log.info("init_from=%s (%s): its model config replaces the model group (%s)", self.path, self.kind,
                 self.describe())
        return dataclasses.replace(cfg, model=model, objective=objective)


@dataclass
class Start:
    """What this start is, and the ``run`` record its checkpoints carry."""

    kind: str  # fresh | init_from | resume
    run: dict
    resume_step: Optional[int] = None
    overrides: list[Change] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """For metrics.json."""
        return {"start": self.kind, "run_id": self.run.get("id"), "started": self.run.get("started"),
                "init_from": (self.run.get("init_from") or {}).get("path"),
                "resumed_from": self.run["resumes"][-1]["from"] if self.kind == "resume" else None,
                "resume_overrides": [c.record() for c in self.overrides]}


def read_resume(path: str) -> tuple[dict, Optional[int]]:
    """A resume checkpoint's metadata and step."""
    ckpt = safe_load(path)
    return check_metadata(ckpt.get(META_KEY), str(path)), ckpt.get("global_step")


def plan_start(cfg: PretrainConfig, world_size: int, init: Optional[InitSource]) -> Start:
    """Check a resume against the run's checkpoint (module doc) and build the run record."""
    resume = cfg.resume_from
    if not resume:
        source = None if init is None else {"path": init.path, "kind": init.kind, "model": init.describe()}
        return Start("init_from" if init else "fresh",
                     {"id": uuid.uuid4().hex[:12], "started": "init_from" if init else "fresh", "init_from": source,
                      "resumes": []})
    meta, step = read_resume(resume)
    old = meta.get("config")
    new = as_dict(cfg)
    overridden: list[Change] = []
    if isinstance(old, Mapping):
        arch = architecture_changes(old, new)
        if arch:
            raise ResumeError(
                f"resume={resume}: the run was trained with another model or objective ({'; '.join(map(str, arch))}); "
                f"a resume continues the same model and objective: use init_from={resume} for a new run from its weights"
            )
        changes = schedule_changes(old, new, meta.get("world_size"), world_size)
        if changes and not cfg.resume_override:
            raise ResumeError(
                f"resume={resume}: settings changed since the run started, so it would not continue exactly: "
                f"{'; '.join(map(str, changes))}; give the run's values, or resume_override=true to continue anyway "
                "(recorded in the checkpoint metadata)"
            )
        if changes:
            log.warning("resume_override=true: continuing %s with changed settings: %s", resume,
                        "; ".join(map(str, changes)))
        overridden = changes
    else:
        log.warning("resume=%s: the checkpoint records no config (an older dnadiff); its settings are not checked",
                    resume)
    run = json.loads(json.dumps(meta.get("run") or {"id": None, "started": "unknown", "init_from": None,
                                                    "resumes": []}))
    run.setdefault("resumes", []).append({"from": str(resume), "step": step,
                                          "overrides": [c.record() for c in overridden]})
    return Start("resume", run, step, overridden)
