"""Classifier guidance end to end on a real task: fine-tuning saves its classifier, generation is
guided by it, and the guided samples score higher under that classifier than unguided ones.

The classifier is a tiny BiMamba fine-tuned on real human_nontata_promoters sequences (the shared
test split) with ``python -m dnadiff.finetune ... save_classifier=DIR``; the MDLM is a random tiny
Caduceus-PS export, so what raises the probability of the target class is the guidance alone.
The claim is checked with a 95% confidence interval of the difference of mean probabilities
(Welch) that must exclude zero.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dnadiff import build_model
from dnadiff.checkpoint import load_classifier
from dnadiff.data.fasta import read_fasta
from dnadiff.metrics.oracle import classifier_outputs
from tests.sampling.test_sampling import MDLM_OBJ, _export

TASK = "human_nontata_promoters"
LENGTH = 64
N_SAMPLES = 48
Z95 = 1.96


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    from dnadiff.finetune import finetune

    out = tmp_path_factory.mktemp("clf")
    finetune({
        "task": TASK, "out_dir": str(out / "cv"), "baseline": False, "device": "cpu", "progress": False,
        "save_classifier": str(out / "classifier"),
        "model": {"name": "bimamba", "arch": "bimamba", "d_model": 16, "n_layer": 1, "scan_backend": "torch"},
        "data": {"root": str(shared_data / "genomic_benchmarks"), "max_per_class": 120, "max_len": LENGTH},
        "cv": {"folds": 2, "seeds": 1},
        "trainer": {"max_epochs": 2, "batch_size": 16, "lr": 3e-3},
    })
    return out


def test_finetune_saves_a_loadable_classifier(saved_classifier: Path) -> None:
    folder = saved_classifier / "classifier"
    meta = json.loads((folder / "config.json").read_text())
    cv = json.loads((saved_classifier / "cv" / TASK / "cv.json").read_text())
    chosen = cv["saved_classifier"]
    best = max(cv["folds"], key=lambda row: row["select_accuracy"])
    assert (chosen["seed"], chosen["fold"]) == (best["seed"], best["fold"]), "the best-selecting fold is kept"
    assert meta["classes"] == ["negative", "positive"] and meta["task"] == TASK
    clf = load_classifier(folder)
    assert clf.classes == ["negative", "positive"] and not clf.training
    ids = torch.randint(7, 11, (3, LENGTH))
    probs = torch.softmax(clf(ids), -1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def _generate(ckpt: Path, out: Path, **guidance: object) -> list[str]:
    from dnadiff.generate import generate

    generate({"ckpt": str(ckpt), "out": str(out), "num_samples": N_SAMPLES, "length": LENGTH, "steps": 16,
              "sampler": "ancestral", "seed": 5, "batch_size": N_SAMPLES, "device": "cpu",
              "guidance": {"class": None, "weight": 1.0, "classifier": None, **guidance}})
    return [seq for _, seq in read_fasta(out)]


def test_classifier_guidance_raises_the_target_probability(saved_classifier: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    mdlm = _export(build_model("caduceus_ps", d_model=16, n_layer=1).eval(), tmp_path / "mdlm", MDLM_OBJ)
    folder = saved_classifier / "classifier"
    plain = _generate(mdlm, tmp_path / "plain.fa")
    guided = _generate(mdlm, tmp_path / "guided.fa", **{"class": "positive", "weight": 4.0, "classifier": str(folder)})
    headers = [h for h, _ in read_fasta(tmp_path / "guided.fa")]
    assert all("guidance=classifier:positive:w=4.0" in h for h in headers)
    clf = load_classifier(folder)
    p_plain = classifier_outputs(clf, plain)[0][:, 1]
    p_guided = classifier_outputs(clf, guided)[0][:, 1]
    diff = float(p_guided.mean() - p_plain.mean())
    se = math.sqrt(p_guided.var(ddof=1) / len(p_guided) + p_plain.var(ddof=1) / len(p_plain))
    print(f"P(positive): guided {p_guided.mean():.3f} vs unguided {p_plain.mean():.3f}, "
          f"difference {diff:.3f} +- {Z95 * se:.3f} (95% CI)")
    assert diff - Z95 * se > 0, (diff, se)
    assert np.isfinite(p_guided).all()


def test_evaluate_samples_uses_the_saved_classifier_as_oracle(saved_classifier: Path, tmp_path: Path) -> None:
    from dnadiff.data.fasta import write_fasta
    from dnadiff.evaluate_samples import evaluate_samples

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), LENGTH)) for _ in range(8)]
    write_fasta([(f"s{i}", s) for i, s in enumerate(seqs)], tmp_path / "s.fa")
    write_fasta([(f"r{i}", s[::-1]) for i, s in enumerate(seqs)], tmp_path / "r.fa")
    report = evaluate_samples({"samples": str(tmp_path / "s.fa"), "out": str(tmp_path / "m.json"),
                               "reference": {"fasta": str(tmp_path / "r.fa")}, "device": "cpu",
                               "classifier_ckpt": str(saved_classifier / "classifier"),
                               "metrics": {"motifs": False, "nn_max_samples": 4}, "plots": False})
    oracle = report["oracle"]
    assert set(oracle["class_probability"]) == {"negative", "positive"}
    assert sum(oracle["class_probability"].values()) == pytest.approx(1.0, abs=1e-5)
    assert oracle["frechet_distance"] >= 0
