"""``python -m dnadiff.generate ckpt=PATH num_samples=N length=L sampler=cached steps=T out=PATH.fa``.

Writes a FASTA of N generated sequences; each header holds ``sampler``, ``steps``, ``nfe`` (the
network evaluations that sequence took part in), ``seed``, ``temperature``, ``top_p`` and
``guidance``. MDLM checkpoints use the ancestral / cached / confidence / remask / semi-AR samplers (SPEC
section 6; ``confidence.*`` and ``remask.*`` hold those samplers' options);
AR checkpoints are sampled by recurrence whatever ``sampler`` says. Infilling:
``infill.fasta=PATH infill.region=CONTIG:START-END infill.mask=START-END`` (samtools-style,
1-based inclusive; the mask is relative to the region) generates the masked span and keeps the
flanks; ``infill.motif=SEQ infill.motif_position=P`` (1-based) fixes a motif. Guidance:
``guidance.class=NAME guidance.weight=W`` (classifier-free, for class-conditional models;
W = 0 unconditional, 1 conditional, > 1 guided) or with ``guidance.classifier=PATH``
(classifier-based). See ``configs/generate.yaml`` for every option.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn as nn
from omegaconf import DictConfig

from dnadiff.cli import one_line_errors, to_plain
from dnadiff.objectives.schedules import build_schedule
from dnadiff.sampling import (
    MDLM_SAMPLERS,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Denoiser,
    SampleOutput,
    all_mask,
    ar_sample,
    make_generator,
    motif_template,
    parse_region,
    parse_span,
    resolve_device,
    semi_ar_sample,
    span_template,
)
from dnadiff.tokenizer import Tokenizer

PROG = "python -m dnadiff.generate"
SAMPLERS = (*MDLM_SAMPLERS, "semi_ar")
TOKEN_SETS = {"ACGT": "ACGT", "ACGTN": "ACGTN"}


def allowed_ids(tokens: str, tok: Tokenizer) -> tuple[int, ...]:
    """The ids a generated sequence may contain (``ACGT`` or ``ACGTN``)."""
    if tokens not in TOKEN_SETS:
        raise ValueError(f"tokens must be one of {sorted(TOKEN_SETS)}, got {tokens!r}")
    return tuple(tok.token_to_id[c] for c in TOKEN_SETS[tokens])


def training_length(meta: dict[str, Any]) -> int | None:
    """The window length the checkpoint was trained on, when its metadata records it."""
    seq_len = (meta.get("config") or {}).get("data", {}).get("seq_len")
    return int(seq_len) if seq_len else None


def load_classifier(path: str, device: torch.device) -> tuple[nn.Module, list[str]]:
    """A fine-tuned classifier (``f(input_ids) -> class logits``) and its class names."""
    from dnadiff.models import heads

    loader = getattr(heads, "load_classifier", None)
    if loader is None:
        raise ValueError(
            "classifier guidance needs dnadiff.models.heads.load_classifier, not available in this install"
        )
    classifier = loader(path)
    return classifier.to(device).eval(), list(getattr(classifier, "classes", []))


def template_from_config(cfg: dict[str, Any], tok: Tokenizer) -> tuple[torch.Tensor | None, str]:
    """The infilling template (1-D ids with masks) and a header note, or (None, "") without infilling."""
    inf = cfg["infill"]
    if inf.get("region") or inf.get("fasta") or inf.get("mask"):
        if not (inf.get("fasta") and inf.get("region") and inf.get("mask")):
            raise ValueError("infilling from a genome needs infill.fasta, infill.region and infill.mask together")
        from dnadiff.data.genome import Genome

        contig, start, end = parse_region(inf["region"])
        seq = Genome(inf["fasta"]).fetch(contig, start, end)
        m_start, m_end = parse_span(inf["mask"], len(seq))
        return span_template(seq, m_start, m_end, tok), f"region={inf['region']} mask={inf['mask']}"
    if inf.get("motif"):
        if cfg["length"] is None or inf.get("motif_position") is None:
            raise ValueError("a motif template needs length and infill.motif_position (1-based)")
        pos = int(inf["motif_position"])
        return motif_template(int(cfg["length"]), str(inf["motif"]), pos - 1, tok), f"motif={inf['motif']}@{pos}"
    return None, ""


class Generator:
    """Everything fixed for a run: model, schedule, guidance and the sampler call per batch."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from dnadiff.train.checkpoint import load_model, read_metadata

        self.cfg = cfg
        self.tok = Tokenizer()
        if cfg["sampler"] not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {cfg['sampler']!r}")
        self.device = resolve_device(cfg["device"])
        self.meta = read_metadata(cfg["ckpt"])
        self.objective = str(self.meta["objective"].get("name", "mdlm"))
        # SEDD's absorbing scores normalised over the real tokens are exactly a SUBS x_theta, so
        # its checkpoints sample with the MDLM samplers.
        if self.objective not in ("mdlm", "sedd", "ar"):
            raise ValueError(
                f"cannot sample from a {self.objective!r} checkpoint: dnadiff.generate samples mdlm, sedd and ar models"
            )
        self.model = load_model(cfg["ckpt"]).to(self.device).eval()
        self.allowed = allowed_ids(cfg["tokens"], self.tok)
        self.template, self.note = template_from_config(cfg, self.tok)
        if self.template is not None and self.objective == "ar":
            raise ValueError("infilling needs a diffusion (mdlm or sedd) checkpoint; this one is autoregressive")
        self.length = self._length()
        self.schedule = None
        if self.objective != "ar":
            self.schedule = build_schedule(self.meta["objective"].get("schedule", "loglinear"),
                                           float(self.meta["objective"].get("eps", 1e-3)))
        self.target, self.classifier, self.guidance_note = self._guidance()

    def _length(self) -> int:
        if self.template is not None:
            return int(self.template.numel())
        if self.cfg["length"] is None:
            raise ValueError("length is required (or an infill region)")
        length = int(self.cfg["length"])
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        return length

    def _guidance(self) -> tuple[int | None, nn.Module | None, str]:
        g = self.cfg["guidance"]
        name = g.get("class")
        if name is None:
            return None, None, "none"
        if self.objective == "ar":
            raise ValueError("guidance needs a diffusion (mdlm or sedd) checkpoint; this one is autoregressive")
        classifier = None
        if g.get("classifier"):
            classifier, classes = load_classifier(g["classifier"], self.device)
            kind = "classifier"
        else:
            classes = list(self.meta.get("classes") or [])
            if not classes:
                raise ValueError(
                    "classifier-free guidance needs a class-conditional checkpoint (its metadata lists no classes)"
                )
            kind = "cfg"
        if str(name) not in classes:
            raise ValueError(f"unknown guidance class {name!r}; valid: {classes}")
        return classes.index(str(name)), classifier, f"{kind}:{name}:w={float(g['weight'])}"

    def denoiser(self, batch: int) -> Any:
        base = Denoiser(self.model, self.tok.mask_id, allowed_ids=self.allowed)
        if self.target is None:
            return base
        target = torch.full((batch,), self.target, dtype=torch.long, device=self.device)
        weight = float(self.cfg["guidance"]["weight"])
        if self.classifier is not None:
            return ClassifierGuidance(base, self.classifier, target, weight)
        return ClassifierFreeGuidance(base, target, weight)

    def sample(self, batch: int, generator: torch.Generator) -> SampleOutput:
        """One batch of ``batch`` sequences."""
        cfg = self.cfg
        common = dict(temperature=float(cfg["temperature"]), top_p=float(cfg["top_p"]), generator=generator)
        if self.objective == "ar":
            return ar_sample(self.model, batch, self.length, allowed_ids=self.allowed, **common)
        mask_id, steps = self.tok.mask_id, int(cfg["steps"])
        common["final"] = cfg["final"]
        common["precision"] = cfg.get("precision", "float32")
        if cfg["sampler"] == "semi_ar":
            if self.template is not None:
                raise ValueError("semi_ar does not combine with infilling; use sampler=ancestral or cached")
            block = cfg["semi_ar"]["block_length"] or training_length(self.meta)
            if block is None:
                raise ValueError(
                    "semi_ar.block_length is required (the checkpoint does not record its training length)"
                )
            prefix = cfg["semi_ar"]["prefix_length"]
            prefix = int(block) // 2 if prefix is None else int(prefix)
            common["cache"] = bool(cfg["semi_ar"]["cache"])
            return semi_ar_sample(self.denoiser(batch), batch, self.length, int(block), prefix, steps, self.schedule,
                                  mask_id, device=self.device, **common)
        if self.template is not None:
            z = self.template.to(self.device).unsqueeze(0).expand(batch, -1).contiguous()
        else:
            z = all_mask(batch, self.length, mask_id, self.device)
        options = dict(cfg.get(cfg["sampler"]) or {})
        return MDLM_SAMPLERS[cfg["sampler"]](self.denoiser(batch), z, steps, self.schedule, mask_id,
                                             **common, **options)

    def sampler_name(self) -> str:
        return "ar_recurrent" if self.objective == "ar" else str(self.cfg["sampler"])


def write_fasta(records: list[tuple[str, str]], path: str | Path, width: int = 80) -> None:
    """Write (header, sequence) records, sequences wrapped at ``width``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for header, seq in records:
            fh.write(f">{header}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")


def generate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run generation as configured; writes the FASTA and returns throughput figures."""
    n, batch_size = int(cfg["num_samples"]), int(cfg["batch_size"])
    if n < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {n} and {batch_size}")
    if not cfg.get("out"):
        raise ValueError("out=PATH.fa is required")
    gen = Generator(cfg)
    generator = make_generator(cfg["seed"], gen.device)
    records: list[tuple[str, str]] = []
    total_nfe = 0
    per_seq: list[int] = []
    start = time.perf_counter()
    for b0 in range(0, n, batch_size):
        batch = min(batch_size, n - b0)
        out = gen.sample(batch, generator)
        total_nfe += out.nfe
        per_seq.extend(out.nfe_per_sequence.tolist())
        for j, (seq, nfe) in enumerate(zip(gen.tok.decode(out.ids), out.nfe_per_sequence.tolist())):
            fields = [f"sample_{b0 + j}", f"sampler={gen.sampler_name()}", f"steps={out.steps}", f"nfe={nfe}",
                      f"length={len(seq)}", f"seed={cfg['seed']}", f"temperature={cfg['temperature']}",
                      f"top_p={cfg['top_p']}", f"guidance={gen.guidance_note}"]
            if gen.note:
                fields.append(gen.note)
            records.append((" ".join(fields), seq))
    elapsed = time.perf_counter() - start
    write_fasta(records, cfg["out"])
    return {
        "num_samples": n, "length": gen.length, "seconds": elapsed, "sequences_per_second": n / max(elapsed, 1e-9),
        "mean_nfe_per_sequence": sum(per_seq) / n, "network_calls": total_nfe, "device": str(gen.device),
        "out": str(cfg["out"]),
    }


@hydra.main(config_path="configs", config_name="generate", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Entry point; see ``configs/generate.yaml``."""
    stats = generate(to_plain(cfg))
    print(
        f"wrote {stats['num_samples']} sequences of {stats['length']} bp to {stats['out']} in {stats['seconds']:.2f} s "
        f"on {stats['device']}: {stats['sequences_per_second']:.2f} sequences/s, "
        f"mean NFE {stats['mean_nfe_per_sequence']:.1f} per sequence, {stats['network_calls']} network calls"
    )


if __name__ == "__main__":
    main()
