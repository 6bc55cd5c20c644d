"""The quality report of generated sequences (``python -m dnadiff.evaluate_samples``): the reference
set, k-mer, GC, diversity, memorisation and motif metrics, model-based metrics (generative
perplexity, a classifier oracle) and plots.

Reference set, by priority: ``reference.fasta`` (its records); a Genomic Benchmarks class
(``reference.task``, ``reference.class``, ``data.root``, ``reference.split``); otherwise held-out
genome windows of the samples' length (``data.fasta``, default the embedded hg38 chr2 sample;
``reference.split`` valid or test; at most ``reference.max_sequences``).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from dnadiff.atomic import atomic_write_files, check_output_file
from dnadiff.checkpoint import load_classifier, load_model, read_metadata
from dnadiff.data.fasta import read_fasta
from dnadiff.data.sources import GenomeSource
from dnadiff.device import resolve_device
from dnadiff.metrics.config import EvaluateSamplesConfig
from dnadiff.metrics.motifs import DEFAULT_MOTIFS, MotifScanner, compare_occurrence
from dnadiff.metrics.oracle import classifier_outputs, generative_perplexity
from dnadiff.metrics.samples import (
    diversity,
    frechet_distance,
    gc_content,
    gc_wasserstein,
    kmer_counts,
    kmer_js,
    nn_identity,
    summarise,
)
from dnadiff.tokenizer import Tokenizer


def load_reference(cfg: EvaluateSamplesConfig, length: int) -> tuple[list[str], str]:
    """The reference sequences and a one-line description of where they came from."""
    ref = cfg.reference
    limit = int(ref["max_sequences"])
    if ref.get("fasta"):
        seqs = [s for _, s in read_fasta(ref["fasta"])]
        return seqs[:limit], f"fasta:{ref['fasta']}"
    if ref.get("task"):
        from dnadiff.data.benchmarks import load_task

        if not ref.get("class"):
            raise ValueError("reference.task needs reference.class (the class whose sequences are the reference)")
        seqs, labels, classes = load_task(ref["task"], cfg.data.root, ref["split"])
        if ref["class"] not in classes:
            raise ValueError(f"unknown class {ref['class']!r} of task {ref['task']!r}; valid: {classes}")
        idx = classes.index(ref["class"])
        chosen = [s for s, y in zip(seqs, labels) if int(y) == idx]
        return chosen[:limit], f"genomic_benchmarks:{ref['task']}/{ref['split']}/{ref['class']}"
    source = GenomeSource(dataclasses.replace(cfg.data, seq_len=length, max_eval_windows=limit))
    ds = source.dataset(ref["split"])
    tok = Tokenizer()
    seqs = [tok.decode(ds[i]["input_ids"]) for i in range(len(ds))]
    return seqs, f"genome:{source.fasta}:{ref['split']} windows of {length} bp"


def plot_paths(out_json: Path, k: int) -> list[Path]:
    """The PNGs written beside the JSON: the k-mer scatter and the GC histograms."""
    stem = out_json.with_suffix("")
    return [Path(f"{stem}_kmer{k}.png"), Path(f"{stem}_gc.png")]


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def render_plots(samples: list[str], reference: list[str], out_json: Path, k: int) -> dict[Path, bytes]:
    """k-mer frequency scatter (samples vs reference) and GC histograms, as PNG bytes by path
    (:func:`plot_paths`), written with the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kmer_path, gc_path = plot_paths(out_json, k)
    a, b = kmer_counts(samples, k).astype(float), kmer_counts(reference, k).astype(float)
    a, b = a / max(a.sum(), 1), b / max(b.sum(), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(b, a, s=3, alpha=0.5)
    top = max(a.max(), b.max(), 1e-9)
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.set_xlabel(f"reference {k}-mer frequency")
    ax.set_ylabel(f"sample {k}-mer frequency")
    ax.set_title(f"{k}-mer spectra")
    fig.tight_layout()
    pngs = {kmer_path: _png(fig)}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(0, 1, 41)
    for seqs, label in ((reference, "reference"), (samples, "samples")):
        gc = gc_content(seqs)
        ax.hist(gc[~np.isnan(gc)], bins=bins, alpha=0.5, density=True, label=label)
    ax.set_xlabel("GC content")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    pngs[gc_path] = _png(fig)
    return pngs


def model_metrics(cfg: EvaluateSamplesConfig, samples: list[str], reference: list[str]) -> dict[str, Any]:
    """Generative perplexity under ``ar_ckpt`` and the classifier oracle of ``classifier_ckpt`` (when given)."""
    out: dict[str, Any] = {"generative_perplexity": None, "oracle": None}
    device = resolve_device(cfg.device)
    if cfg.ar_ckpt:
        if read_metadata(cfg.ar_ckpt)["objective"].get("name") != "ar":
            raise ValueError(f"ar_ckpt={cfg.ar_ckpt} is not an autoregressive (objective ar) checkpoint")
        model = load_model(cfg.ar_ckpt).to(device)
        out["generative_perplexity"] = generative_perplexity(model, samples, cfg.batch_size)
        out["generative_perplexity_reference"] = generative_perplexity(model, reference, cfg.batch_size)
    if cfg.classifier_ckpt:
        classifier = load_classifier(cfg.classifier_ckpt).to(device)
        p_s, f_s = classifier_outputs(classifier, samples, cfg.batch_size)
        p_r, f_r = classifier_outputs(classifier, reference, cfg.batch_size)
        names = classifier.classes or [str(i) for i in range(p_s.shape[1])]
        out["oracle"] = {
            "class_probability": {n: float(v) for n, v in zip(names, p_s.mean(0))},
            "class_probability_reference": {n: float(v) for n, v in zip(names, p_r.mean(0))},
            "frechet_distance": frechet_distance(f_s, f_r),
        }
    return out


def sample_report(cfg: EvaluateSamplesConfig) -> dict[str, Any]:
    """Compute every configured metric; writes the JSON (and plots) and returns the report.

    The output paths are checked before any work, and the JSON and its plots are written together
    (:func:`dnadiff.atomic.atomic_write_files`): a failure leaves an earlier report as it was."""
    out = check_output_file(cfg.out)
    pngs = plot_paths(out, cfg.metrics.plot_k) if cfg.plots else []
    for path in pngs:
        check_output_file(path)
    samples = [s for _, s in read_fasta(cfg.samples)]
    lengths = sorted({len(s) for s in samples})
    reference, source = load_reference(cfg, lengths[-1])
    if not reference:
        raise ValueError(f"the reference ({source}) has no sequences")
    m = cfg.metrics
    gc_s, gc_r = gc_content(samples), gc_content(reference)
    nn_samples = samples[: m.nn_max_samples]
    report: dict[str, Any] = {
        "samples": str(cfg.samples),
        "reference": source,
        "n_samples": len(samples),
        "n_reference": len(reference),
        "sample_lengths": lengths,
        "kmer_js": kmer_js(samples, reference, range(1, m.kmer_max + 1)),
        "kmer_js_base": "bits (log2; disjoint spectra = 1)",
        "gc_mean": float(np.nanmean(gc_s)),
        "gc_mean_reference": float(np.nanmean(gc_r)),
        "gc_std": float(np.nanstd(gc_s)),
        "gc_std_reference": float(np.nanstd(gc_r)),
        "gc_wasserstein": gc_wasserstein(gc_s, gc_r),
        "diversity": diversity(samples) if len(samples) > 1 else None,
        "nn_identity": {
            **summarise(nn_identity(nn_samples, reference, m.nn_both_strands)),
            "n_samples": len(nn_samples),
            "both_strands": m.nn_both_strands,
        },
    }
    if m.motifs:
        scanner = MotifScanner(m.motif_file or DEFAULT_MOTIFS, fpr=m.motif_fpr)
        occ_s, occ_r = scanner.occurrence(samples), scanner.occurrence(reference)
        report["motifs"] = {"per_kb": occ_s, "per_kb_reference": occ_r, "fpr": m.motif_fpr,
                            **compare_occurrence(occ_s, occ_r)}
    report.update(model_metrics(cfg, samples, reference))
    files: dict[Path, bytes] = render_plots(samples, reference, out, m.plot_k) if cfg.plots else {}
    report["plots"] = [str(p) for p in files]
    report = _json_safe(report)
    files[out] = json.dumps(report, indent=1, allow_nan=False).encode()
    atomic_write_files(files)
    return report


def _json_safe(obj: Any) -> Any:
    """NaN and infinities -> None (strict JSON), recursively."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
