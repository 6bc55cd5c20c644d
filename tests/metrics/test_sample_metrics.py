"""Sample-quality metrics against hand-computed values, motif scanning, model-based metrics and
the evaluate_samples CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dnadiff import Tokenizer, build_model
from dnadiff.metrics.motifs import MotifScanner, compare_occurrence
from dnadiff.metrics.oracle import classifier_outputs, generative_perplexity
from dnadiff.metrics.samples import (
    diversity,
    frechet_distance,
    gc_content,
    gc_wasserstein,
    js_divergence,
    kmer_counts,
    kmer_js,
    nn_identity,
)
from dnadiff.tokenizer import reverse_complement_text as reverse_complement

def rand_seq(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def test_kmer_counts_by_hand() -> None:
    counts = kmer_counts(["ACGTA", "acnAC"], 2)
    expected = np.zeros(16, dtype=int)
    for kmer, n in {"AC": 3, "CG": 1, "GT": 1, "TA": 1}.items():
        expected[4 * "ACGT".index(kmer[0]) + "ACGT".index(kmer[1])] = n
    assert np.array_equal(counts, expected)
    assert kmer_counts(["A"], 3).sum() == 0
    with pytest.raises(ValueError, match="got 0"):
        kmer_counts(["ACGT"], 0)


def test_js_divergence_values() -> None:
    seqs = ["ACGTTGCA", "GGGCCCAT"]
    assert all(v == 0.0 for v in kmer_js(seqs, list(seqs)).values())
    assert kmer_js(["AAAA"], ["CCCC"], [1, 2]) == {"1": 1.0, "2": 1.0}
    assert math.isclose(js_divergence([1, 0], [0, 1], base=math.e), math.log(2))
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    m = (p + q) / 2
    hand = 0.5 * (1.0 * math.log(1.0 / 0.75)) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert math.isclose(js_divergence(p, q, base=math.e), hand)
    assert m.sum() == 1.0
    with pytest.raises(ValueError, match="empty spectrum"):
        js_divergence([0, 0], [1, 1])


def test_gc_content_and_shuffles() -> None:
    assert np.allclose(gc_content(["GGCCAT", "ANNG", "NNN"])[:2], [4 / 6, 0.5])
    assert np.isnan(gc_content(["NNN"])[0])
    rng = random.Random(0)
    seqs = [rand_seq(rng, 50) for _ in range(20)]
    shuffled = ["".join(rng.sample(s, len(s))) for s in seqs]
    assert np.array_equal(gc_content(seqs), gc_content(shuffled))
    assert gc_wasserstein(gc_content(seqs), gc_content(shuffled)) == 0.0
    assert math.isclose(gc_wasserstein(np.array([0.2, 0.4]), np.array([0.5, 0.7])), 0.3)


def test_diversity_by_hand() -> None:
    assert diversity(["ACGT"] * 5) == {"mean_pairwise_hamming": 0.0, "fraction_unique": 0.2, "length": 4}
    d = diversity(["ACGT", "ACGT", "TTTT"])
    assert math.isclose(d["mean_pairwise_hamming"], (0 + 0.75 + 0.75) / 3)
    assert math.isclose(d["fraction_unique"], 2 / 3)
    assert diversity(["AAAA", "CCCCCC"])["mean_pairwise_hamming"] == 1.0
    with pytest.raises(ValueError, match="got 1"):
        diversity(["ACGT"])


def test_nn_identity_exact_against_brute_force() -> None:
    rng = random.Random(1)
    ref = [rand_seq(rng, 300), rand_seq(rng, 80)]
    samples = [ref[0][40:100], reverse_complement(ref[1][10:70]), rand_seq(rng, 60), ref[0][-30:] + ref[1][:30]]

    def brute(s: str) -> float:
        best = 0.0
        for q in (s, reverse_complement(s)):
            for r in ref:
                for o in range(len(r) - len(q) + 1):
                    best = max(best, sum(a == b for a, b in zip(q, r[o : o + len(q)])) / len(q))
        return best

    got = nn_identity(samples, ref)
    assert got[0] == 1.0 and got[1] == 1.0
    assert np.allclose(got, [brute(s) for s in samples])
    assert nn_identity([samples[1]], ref, both_strands=False)[0] < 0.7
    assert np.isnan(nn_identity(["A" * 400], ref)[0])


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert frechet_distance(a, a) < 1e-8
    b = a * 2.0 + 1.0
    s_a = np.cov(a, rowvar=False)
    s_b = np.cov(b, rowvar=False)
    shift = a.mean(0) + 1.0
    hand = shift @ shift + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(2.0 * s_a)
    assert math.isclose(frechet_distance(a, b), hand, rel_tol=1e-6)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(a, a[:, :2])


def test_motif_scanner_finds_planted_sites() -> None:
    scanner = MotifScanner()
    assert len(scanner.names) == 8 and any("CTCF" in n for n in scanner.names)
    rng = random.Random(2)
    background = [rand_seq(rng, 200) for _ in range(10)]
    planted = [s[:90] + "TGACGTCA" + s[98:] for s in background]
    creb = [n for n in scanner.names if "CREB1" in n][0]
    occ_bg, occ_pl = scanner.occurrence(background), scanner.occurrence(planted)
    assert occ_pl[creb] >= occ_bg[creb] + 10 * 1000 / 2000 - 1e-9
    assert compare_occurrence(occ_bg, occ_bg)["mean_abs_diff_per_kb"] == 0.0
    hits, bases = scanner.count(["NNNN" + planted[0]])
    assert bases == 200
    with pytest.raises(ValueError, match="fpr"):
        MotifScanner(fpr=0.0)


def test_generative_perplexity_matches_manual() -> None:
    torch.manual_seed(0)
    model = build_model("mamba", d_model=16, n_layer=1).eval()
    tok = Tokenizer()
    seqs = ["ACGTACGTAA", "GGGCCCATTT", "ACG"]
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            ids = tok.encode(s).unsqueeze(0)
            inp = torch.cat([torch.tensor([[tok.bos_id]]), ids[:, :-1]], dim=1)
            lp = torch.log_softmax(model(inp), -1)[0, torch.arange(len(s)), ids[0]]
            nll -= float(lp.sum())
            n += len(s)
    assert math.isclose(generative_perplexity(model, seqs, batch_size=2), math.exp(nll / n), rel_tol=1e-5)


class ToyClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(1))


def test_classifier_outputs_shapes_and_embeddings() -> None:
    clf = ToyClassifier().eval()
    seqs = ["ACGT", "ACGTAC", "TTTT"]
    probs, feats = classifier_outputs(clf, seqs, batch_size=2)
    assert probs.shape == (3, 2) and feats.shape == (3, 4)
    assert np.allclose(probs.sum(1), 1.0)
    ids = Tokenizer().encode("ACGTAC").unsqueeze(0)
    with torch.no_grad():
        assert np.allclose(feats[1], clf.embed(ids).mean(1)[0].numpy(), atol=1e-6)


def test_evaluate_samples_cli_json(tmp_path: Path, hg38_fasta: Path) -> None:
    from safetensors.torch import save_file

    from dnadiff.data.fasta import write_fasta
    from dnadiff.evaluate_samples import evaluate_samples, rewrite_reference_override
    from dnadiff.checkpoint import metadata

    rng = random.Random(3)
    write_fasta([(f"s{i} nfe=3 steps=3", rand_seq(rng, 40)) for i in range(6)], tmp_path / "s.fa")
    write_fasta([(f"r{i}", rand_seq(rng, 120)) for i in range(5)], tmp_path / "r.fa")
    torch.manual_seed(0)
    ar = build_model("mamba", d_model=16, n_layer=1)
    (tmp_path / "ar").mkdir()
    save_file({k: v.contiguous() for k, v in ar.state_dict().items()}, str(tmp_path / "ar" / "model.safetensors"))
    (tmp_path / "ar" / "config.json").write_text(json.dumps(metadata(ar.config, {"name": "ar"})))
    from omegaconf import OmegaConf

    from dnadiff.cli import compose_config

    overrides = [f"samples={tmp_path / 's.fa'}", f"out={tmp_path / 'm.json'}", f"reference.fasta={tmp_path / 'r.fa'}",
                 f"data.fasta={hg38_fasta}", f"ar_ckpt={tmp_path / 'ar'}", "device=cpu", "batch_size=4",
                 "metrics.plot_k=3", "metrics.nn_max_samples=10"]
    base = OmegaConf.to_container(compose_config("evaluate_samples", overrides), resolve=True)
    report = evaluate_samples(base)
    on_disk = json.loads((tmp_path / "m.json").read_text())
    for key in ("kmer_js", "gc_mean", "gc_mean_reference", "gc_wasserstein", "diversity", "nn_identity",
                "generative_perplexity", "motifs", "plots", "oracle"):
        assert key in on_disk, key
    assert sorted(on_disk["kmer_js"]) == [str(k) for k in range(1, 7)]
    assert on_disk["generative_perplexity"] > 1.0 and report["n_samples"] == 6
    assert all(Path(p).is_file() for p in on_disk["plots"])
    assert rewrite_reference_override(["reference=x.fa", "out=y"]) == ["reference.fasta=x.fa", "out=y"]
    with pytest.raises(ValueError, match="not found"):
        evaluate_samples({**base, "samples": str(tmp_path / "missing.fa")})


def test_reference_sources(hg38_fasta: Path, shared_data: Path) -> None:
    from dnadiff.config import to_typed
    from dnadiff.metrics.config import EvaluateSamplesConfig
    from dnadiff.metrics.sample_report import load_reference

    def typed(c: dict) -> EvaluateSamplesConfig:
        return to_typed({"samples": "unused.fa", "out": "unused.json", **c}, EvaluateSamplesConfig)

    ref = {"fasta": None, "task": None, "class": None, "split": "test", "max_sequences": 12}
    cfg = {"reference": ref, "data": {"fasta": str(hg38_fasta), "root": None}}
    windows, source = load_reference(typed(cfg), 50)
    assert len(windows) == 12 and {len(w) for w in windows} == {50} and source.startswith("genome:")
    gb = {**cfg, "reference": {**ref, "task": "human_ocr_ensembl", "class": "positive", "split": "train"},
          "data": {"root": str(shared_data / "genomic_benchmarks")}}
    seqs, source = load_reference(typed(gb), 50)
    assert len(seqs) == 12 and source.endswith("train/positive")
    with pytest.raises(ValueError, match="'nope'"):
        load_reference(typed({**gb, "reference": {**gb["reference"], "class": "nope"}}), 50)
