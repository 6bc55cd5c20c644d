"""What ``python -m dnadiff.generate`` drives: a checkpoint, a sampler and its options, an optional
template (infilling) and guidance, turned into batches of sequences.

Samplers are looked up by name in :data:`dnadiff.sampling.registry.SAMPLERS` (``sampler=NAME``).
AR checkpoints are sampled by recurrence whatever ``sampler`` says.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from dnadiff.checkpoint import load_classifier, load_model, read_metadata, training_seq_len
from dnadiff.data.genome import Genome
from dnadiff.device import resolve_device
from dnadiff.objectives.schedules import NoiseSchedule, build_schedule
from dnadiff.sampling.ancestral import all_mask
from dnadiff.sampling.ar import ar_sample
from dnadiff.sampling.common import SampleOutput
from dnadiff.sampling.config import GenerateConfig
from dnadiff.sampling.denoiser import Denoiser
from dnadiff.sampling.guidance import ClassifierFreeGuidance, ClassifierGuidance
from dnadiff.sampling.infill import motif_template, parse_region, parse_span, repeat_template, span_template
from dnadiff.sampling.registry import SAMPLERS
from dnadiff.tokenizer import Tokenizer

DIFFUSION_OBJECTIVES: tuple[str, ...] = ("mdlm", "sedd")

def allowed_ids(tokens: str, tok: Tokenizer) -> tuple[int, ...]:
    """The ids a generated sequence may contain (``ACGT`` or ``ACGTN``)."""
    return tuple(tok.token_to_id[c] for c in tokens)


class SamplingPipeline:
    """Everything fixed for a run: model, schedule, template, guidance and the sampler call per batch."""

    def __init__(self, cfg: GenerateConfig) -> None:
        self.cfg = cfg
        self.tok = Tokenizer()
        self.device = resolve_device(cfg.device)
        self.meta = read_metadata(cfg.ckpt)
        self.training_length = training_seq_len(self.meta)
        self.objective = str(self.meta["objective"].get("name", "mdlm"))
        # SEDD's absorbing scores normalised over the real tokens are exactly a SUBS x_theta, so
        # its checkpoints sample with the MDLM samplers.
        if self.objective not in (*DIFFUSION_OBJECTIVES, "ar"):
            raise ValueError(
                f"{cfg.ckpt}: cannot sample from a {self.objective!r} checkpoint; dnadiff.generate samples mdlm, "
                "sedd and ar models"
            )
        self.model = load_model(cfg.ckpt).to(self.device).eval()
        self.allowed = allowed_ids(cfg.tokens, self.tok)
        self.template, self.note = self._template()
        if self.template is not None and self.objective == "ar":
            raise ValueError("infilling needs a diffusion (mdlm or sedd) checkpoint; this one is autoregressive")
        self.length = self._length()
        self.schedule: NoiseSchedule | None = None
        if self.objective != "ar":
            self.schedule = build_schedule(self.meta["objective"].get("schedule", "loglinear"),
                                           float(self.meta["objective"].get("eps", 1e-3)))
        self.target, self.classifier, self.guidance_note = self._guidance()

    def _template(self) -> tuple[torch.Tensor | None, str]:
        """The infilling template (1-D ids with masks) and a header note, or (None, "")."""
        inf = self.cfg.infill
        if inf.region is not None:
            contig, start, end = parse_region(inf.region)
            seq = Genome(inf.fasta).fetch(contig, start, end)
            m_start, m_end = parse_span(inf.mask, len(seq))
            return span_template(seq, m_start, m_end, self.tok), f"region={inf.region} mask={inf.mask}"
        if inf.motif is not None:
            if self.cfg.length is None:
                raise ValueError("a motif template needs length=L")
            template = motif_template(self.cfg.length, inf.motif, inf.motif_position - 1, self.tok)
            return template, f"motif={inf.motif}@{inf.motif_position}"
        return None, ""

    def _length(self) -> int:
        if self.template is not None:
            return int(self.template.numel())
        if self.cfg.length is None:
            raise ValueError("length=L is required (or an infill region)")
        return self.cfg.length

    def _guidance(self) -> tuple[int | None, nn.Module | None, str]:
        g = self.cfg.guidance
        name = g["class"]
        if name is None:
            if g["classifier"]:
                raise ValueError("guidance.classifier needs guidance.class=NAME (the class to guide towards)")
            return None, None, "none"
        if self.objective == "ar":
            raise ValueError("guidance needs a diffusion (mdlm or sedd) checkpoint; this one is autoregressive")
        classifier = None
        if g["classifier"]:
            classifier = load_classifier(g["classifier"]).to(self.device).eval()
            classes, kind = list(classifier.classes), "classifier"
        else:
            classes = list(self.meta.get("classes") or [])
            if not classes:
                raise ValueError(
                    "classifier-free guidance needs a class-conditional checkpoint (its metadata lists no classes); "
                    "for classifier guidance give guidance.classifier=DIR"
                )
            kind = "cfg"
        if str(name) not in classes:
            raise ValueError(f"unknown guidance class {name!r}; valid: {classes}")
        return classes.index(str(name)), classifier, f"{kind}:{name}:w={float(g['weight'])}"

    def denoiser(self, batch: int) -> Any:
        """The (guided) denoiser for a batch of ``batch`` rows."""
        base = Denoiser(self.model, self.tok.mask_id, allowed_ids=self.allowed)
        if self.target is None:
            return base
        target = torch.full((batch,), self.target, dtype=torch.long, device=self.device)
        weight = float(self.cfg.guidance["weight"])
        if self.classifier is not None:
            return ClassifierGuidance(base, self.classifier, target, weight)
        return ClassifierFreeGuidance(base, target, weight)

    def initial(self, batch: int) -> torch.Tensor:
        """z_1 of a batch: the template repeated (fixed positions kept), or all-mask."""
        if self.template is None:
            return all_mask(batch, self.length, self.tok.mask_id, self.device)
        return repeat_template(self.template, batch, self.tok.mask_id, self.device)

    def sample(self, batch: int, generator: torch.Generator) -> SampleOutput:
        """One batch of ``batch`` sequences."""
        cfg = self.cfg
        options: dict[str, Any] = dict(temperature=cfg.temperature, top_p=cfg.top_p, generator=generator)
        if self.objective == "ar":
            return ar_sample(self.model, batch, self.length, allowed_ids=self.allowed, **options)
        options["final"] = cfg.final
        return SAMPLERS[cfg.sampler](self, self.denoiser(batch), self.initial(batch), options)

    def sampler_name(self) -> str:
        """What the FASTA headers call the sampler."""
        return "ar_recurrent" if self.objective == "ar" else self.cfg.sampler


def generate_fasta(cfg: GenerateConfig) -> dict[str, Any]:
    """Sample ``cfg.num_samples`` sequences in batches, write the FASTA atomically; returns throughput figures.

    Each header holds the sampler, steps, the NFE that sequence took part in, seed, temperature,
    top_p, guidance and the template, if any.
    """
    import time

    from dnadiff.atomic import check_output_file
    from dnadiff.data.fasta import write_fasta
    from dnadiff.sampling.common import make_generator

    check_output_file(cfg.out)
    pipe = SamplingPipeline(cfg)
    generator = make_generator(cfg.seed, pipe.device)
    records: list[tuple[str, str]] = []
    total_nfe = 0
    per_seq: list[int] = []
    start = time.perf_counter()
    for b0 in range(0, cfg.num_samples, cfg.batch_size):
        batch = min(cfg.batch_size, cfg.num_samples - b0)
        out = pipe.sample(batch, generator)
        total_nfe += out.nfe
        per_seq.extend(out.nfe_per_sequence.tolist())
        for j, (seq, nfe) in enumerate(zip(pipe.tok.decode(out.ids), out.nfe_per_sequence.tolist())):
            fields = [f"sample_{b0 + j}", f"sampler={pipe.sampler_name()}", f"steps={out.steps}", f"nfe={nfe}",
                      f"length={len(seq)}", f"seed={cfg.seed}", f"temperature={cfg.temperature}",
                      f"top_p={cfg.top_p}", f"guidance={pipe.guidance_note}"]
            if pipe.note:
                fields.append(pipe.note)
            records.append((" ".join(fields), seq))
    elapsed = time.perf_counter() - start
    write_fasta(records, cfg.out)
    return {
        "num_samples": cfg.num_samples, "length": pipe.length, "seconds": elapsed,
        "sequences_per_second": cfg.num_samples / max(elapsed, 1e-9),
        "mean_nfe_per_sequence": sum(per_seq) / cfg.num_samples, "network_calls": total_nfe,
        "device": str(pipe.device), "out": str(cfg.out),
    }
