"""``python -m dnadiff.evaluate_samples samples=PATH.fa out=PATH.json [reference=PATH.fa]``: sample quality.

Reference set, by priority: ``reference=PATH.fa`` (its records); a Genomic Benchmarks class
(``reference.task=NAME reference.class=NAME data.root=DIR [reference.split=test]``); otherwise
held-out genome windows of the samples' length (``data.fasta=PATH``, default the embedded hg38
chr2 sample; ``reference.split`` valid or test; at most ``reference.max_sequences``).

The JSON holds: ``kmer_js`` (k = 1..6, bits), ``gc_mean`` / ``gc_mean_reference`` / ``gc_std`` /
``gc_wasserstein``, ``diversity``, ``nn_identity`` (memorisation: exact nearest-window identity
in the reference, both strands), ``motifs`` (JASPAR hits per kb, samples vs reference),
``generative_perplexity`` (with ``ar_ckpt=PATH``), ``oracle`` (with ``classifier_ckpt=PATH``:
mean class probabilities and the Frechet distance of classifier embeddings), and ``plots``: the
PNGs written beside the JSON (k-mer frequency scatter, GC histogram).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from dnadiff.cli import one_line_errors, to_plain
from dnadiff.metrics.samples import (
    diversity,
    gc_content,
    gc_wasserstein,
    kmer_counts,
    kmer_js,
    nn_identity,
    summarise,
)

PROG = "python -m dnadiff.evaluate_samples"


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(header, sequence) records of a plain FASTA file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"FASTA file not found: {path}")
    records: list[tuple[str, list[str]]] = []
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                records.append((line[1:], []))
            elif not records:
                raise ValueError(f"{path}: sequence line before the first '>' header")
            else:
                records[-1][1].append(line)
    if not records:
        raise ValueError(f"{path}: no FASTA records")
    return [(h, "".join(parts)) for h, parts in records]


def load_reference(cfg: dict[str, Any], length: int) -> tuple[list[str], str]:
    """The reference sequences and a one-line description of where they came from."""
    ref = cfg["reference"]
    limit = int(ref["max_sequences"])
    if ref.get("fasta"):
        seqs = [s for _, s in read_fasta(ref["fasta"])]
        return seqs[:limit], f"fasta:{ref['fasta']}"
    if ref.get("task"):
        from dnadiff.data.benchmarks import load_task

        if not ref.get("class"):
            raise ValueError("reference.task needs reference.class (the class whose sequences are the reference)")
        seqs, labels, classes = load_task(ref["task"], cfg["data"].get("root"), ref["split"])
        if ref["class"] not in classes:
            raise ValueError(f"unknown class {ref['class']!r} of task {ref['task']!r}; valid: {classes}")
        idx = classes.index(ref["class"])
        chosen = [s for s, y in zip(seqs, labels) if int(y) == idx]
        return chosen[:limit], f"genomic_benchmarks:{ref['task']}/{ref['split']}/{ref['class']}"
    from dnadiff.data.datamodule import GenomeDataModule
    from dnadiff.tokenizer import Tokenizer

    data_cfg = {k: v for k, v in cfg["data"].items() if k != "root"}
    data_cfg.update(seq_len=length, max_eval_windows=limit)
    dm = GenomeDataModule.from_config(data_cfg)
    ds = dm.dataset(ref["split"])
    tok = Tokenizer()
    seqs = [tok.decode(ds[i]["input_ids"]) for i in range(len(ds))]
    return seqs, f"genome:{dm.fasta}:{ref['split']} windows of {length} bp"


def save_plots(samples: list[str], reference: list[str], out_json: Path, k: int) -> list[str]:
    """k-mer frequency scatter (samples vs reference) and GC histograms, PNGs beside the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out_json.with_suffix("")
    paths = []
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
    path = f"{stem}_kmer{k}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(0, 1, 41)
    for seqs, label in ((reference, "reference"), (samples, "samples")):
        gc = gc_content(seqs)
        ax.hist(gc[~np.isnan(gc)], bins=bins, alpha=0.5, density=True, label=label)
    ax.set_xlabel("GC content")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    path = f"{stem}_gc.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def model_metrics(cfg: dict[str, Any], samples: list[str], reference: list[str]) -> dict[str, Any]:
    """Generative perplexity under ``ar_ckpt`` and the classifier oracle of ``classifier_ckpt`` (when given)."""
    from dnadiff.metrics.oracle import classifier_outputs, generative_perplexity
    from dnadiff.metrics.samples import frechet_distance
    from dnadiff.sampling.common import resolve_device

    out: dict[str, Any] = {"generative_perplexity": None, "oracle": None}
    device = resolve_device(cfg["device"])
    if cfg.get("ar_ckpt"):
        from dnadiff.train.checkpoint import load_model, read_metadata

        if read_metadata(cfg["ar_ckpt"])["objective"].get("name") != "ar":
            raise ValueError(f"ar_ckpt={cfg['ar_ckpt']} is not an autoregressive (objective ar) checkpoint")
        model = load_model(cfg["ar_ckpt"]).to(device)
        out["generative_perplexity"] = generative_perplexity(model, samples, int(cfg["batch_size"]))
        out["generative_perplexity_reference"] = generative_perplexity(model, reference, int(cfg["batch_size"]))
    if cfg.get("classifier_ckpt"):
        from dnadiff.generate import load_classifier

        classifier, classes = load_classifier(cfg["classifier_ckpt"], device)
        p_s, f_s = classifier_outputs(classifier, samples, int(cfg["batch_size"]))
        p_r, f_r = classifier_outputs(classifier, reference, int(cfg["batch_size"]))
        names = classes or [str(i) for i in range(p_s.shape[1])]
        out["oracle"] = {
            "class_probability": {n: float(v) for n, v in zip(names, p_s.mean(0))},
            "class_probability_reference": {n: float(v) for n, v in zip(names, p_r.mean(0))},
            "frechet_distance": frechet_distance(f_s, f_r),
        }
    return out


def evaluate_samples(cfg: dict[str, Any]) -> dict[str, Any]:
    """Compute every configured metric; writes the JSON (and plots) and returns the report."""
    if not cfg.get("out"):
        raise ValueError("out=PATH.json is required")
    samples = [s for _, s in read_fasta(cfg["samples"])]
    lengths = sorted({len(s) for s in samples})
    reference, source = load_reference(cfg, lengths[-1])
    if not reference:
        raise ValueError(f"the reference ({source}) has no sequences")
    m = cfg["metrics"]
    gc_s, gc_r = gc_content(samples), gc_content(reference)
    nn_samples = samples[: int(m["nn_max_samples"])]
    report: dict[str, Any] = {
        "samples": str(cfg["samples"]),
        "reference": source,
        "n_samples": len(samples),
        "n_reference": len(reference),
        "sample_lengths": lengths,
        "kmer_js": kmer_js(samples, reference, range(1, int(m["kmer_max"]) + 1)),
        "kmer_js_base": "bits (log2; disjoint spectra = 1)",
        "gc_mean": float(np.nanmean(gc_s)),
        "gc_mean_reference": float(np.nanmean(gc_r)),
        "gc_std": float(np.nanstd(gc_s)),
        "gc_std_reference": float(np.nanstd(gc_r)),
        "gc_wasserstein": gc_wasserstein(gc_s, gc_r),
        "diversity": diversity(samples) if len(samples) > 1 else None,
        "nn_identity": {
            **summarise(nn_identity(nn_samples, reference, bool(m["nn_both_strands"]))),
            "n_samples": len(nn_samples),
            "both_strands": bool(m["nn_both_strands"]),
        },
    }
    if m["motifs"]:
        from dnadiff.metrics.motifs import DEFAULT_MOTIFS, MotifScanner, compare_occurrence

        scanner = MotifScanner(m["motif_file"] or DEFAULT_MOTIFS, fpr=float(m["motif_fpr"]))
        occ_s, occ_r = scanner.occurrence(samples), scanner.occurrence(reference)
        report["motifs"] = {"per_kb": occ_s, "per_kb_reference": occ_r, "fpr": float(m["motif_fpr"]),
                            **compare_occurrence(occ_s, occ_r)}
    report.update(model_metrics(cfg, samples, reference))
    out = Path(cfg["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    report["plots"] = save_plots(samples, reference, out, int(m["plot_k"])) if cfg["plots"] else []
    report = _json_safe(report)
    out.write_text(json.dumps(report, indent=1, allow_nan=False))
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


@hydra.main(config_path="configs", config_name="evaluate_samples", version_base="1.3")
@one_line_errors(PROG)
def main(cfg: DictConfig) -> None:
    """Entry point; see ``configs/evaluate_samples.yaml``."""
    report = evaluate_samples(to_plain(cfg))
    js = ", ".join(f"k={k}: {v:.4f}" for k, v in report["kmer_js"].items())
    nn_mean = report["nn_identity"]["mean"]
    nn_text = "n/a (reference shorter than the samples)" if nn_mean is None else f"{nn_mean:.3f}"
    print(f"k-mer JS (bits) {js}; GC {report['gc_mean']:.3f} vs {report['gc_mean_reference']:.3f}; "
          f"nn identity mean {nn_text}; wrote {cfg.out}")


def rewrite_reference_override(argv: list[str]) -> list[str]:
    """``reference=PATH`` is shorthand for ``reference.fasta=PATH``."""
    return [f"reference.fasta={a.split('=', 1)[1]}" if a.startswith("reference=") else a for a in argv]


def cli() -> None:
    """Console entry: accepts the ``reference=PATH`` shorthand, then runs :func:`main`."""
    sys.argv = [sys.argv[0], *rewrite_reference_override(sys.argv[1:])]
    main()


if __name__ == "__main__":
    cli()
