"""Genomic Benchmarks reader on the real shared tasks: counts, labels, aliases, batching, errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dnadiff.data import benchmarks
from dnadiff.data.benchmarks import (
    TASKS,
    BenchmarkDataError,
    SequenceCollator,
    SequenceDataset,
    available_splits,
    collate_sequences,
    list_tasks,
    load_task,
    resolve_task,
)
from dnadiff.tokenizer import Tokenizer

# Counts per class from shared/data/README.md.
EXPECTED = {
    ("human_enhancers_cohn", "test"): {"negative": 3474, "positive": 3474},
    ("human_nontata_promoters", "test"): {"negative": 4119, "positive": 4915},
    ("human_ocr_ensembl", "train"): {"negative": 500, "positive": 500},
    ("human_ensembl_regulatory", "train"): {"enhancer": 500, "ocr": 500, "promoter": 500},
}


@pytest.fixture(scope="module")
def gb_root(shared_data: Path) -> Path:
    return shared_data / "genomic_benchmarks"


@pytest.mark.parametrize("task, split", list(EXPECTED))
def test_counts_per_class_match_readme(gb_root: Path, task: str, split: str) -> None:
    seqs, labels, classes = load_task(task, gb_root, split)
    assert classes == sorted(EXPECTED[task, split])
    assert labels.dtype == np.int64 and len(seqs) == len(labels)
    assert {c: int((labels == i).sum()) for i, c in enumerate(classes)} == EXPECTED[task, split]
    assert all(set(s.upper()) <= set("ACGTN") for s in seqs[:500])
    # class names agree with the official interval lists of both splits
    for official_split in ("train", "test"):
        listed = sorted(p.name.removesuffix(".csv.gz") for p in (gb_root / "intervals" / task / official_split).iterdir())
        assert listed == classes


def test_lengths_and_file_order(gb_root: Path) -> None:
    seqs, labels, _ = load_task("enhancers", gb_root, "test")
    assert {len(s) for s in seqs} == {500}
    nontata, _, _ = load_task("promoters", gb_root, "test")
    assert {len(s) for s in nontata} == {251}
    ocr, ocr_labels, _ = load_task("human_ocr_ensembl", gb_root, "train")
    assert min(map(len, ocr)) < 200 < 500 < max(map(len, ocr)) <= 593
    neg = gb_root / "human_ocr_ensembl" / "train" / "negative"
    names = sorted((p.name for p in neg.iterdir()), key=lambda n: int(n[1:-4]))
    assert ocr[: len(names)] == [(neg / n).read_text().strip() for n in names]
    assert np.all(ocr_labels[: len(names)] == 0)


def test_labels_consistent_across_splits(tmp_path: Path, gb_root: Path) -> None:
    src = gb_root / "human_ensembl_regulatory" / "train"
    for split, classes in (("train", ("enhancer", "ocr", "promoter")), ("test", ("promoter",))):
        for cls in classes:
            dest = tmp_path / "human_ensembl_regulatory" / split / cls
            dest.mkdir(parents=True)
            for name in sorted(p.name for p in (src / cls).iterdir())[:4]:
                shutil.copyfile(src / cls / name, dest / name)
    _, train_labels, train_classes = load_task("regulatory", tmp_path, "train")
    test_seqs, test_labels, test_classes = load_task("regulatory", tmp_path, "test")
    assert train_classes == test_classes == ["enhancer", "ocr", "promoter"]
    assert np.bincount(train_labels).tolist() == [4, 4, 4]
    assert test_labels.tolist() == [2, 2, 2, 2] and len(test_seqs) == 4
    assert available_splits("regulatory", tmp_path) == ["train", "test"]
    assert list_tasks(tmp_path) == ["human_ensembl_regulatory"]


def test_task_names_and_aliases() -> None:
    assert resolve_task("enhancers") == "human_enhancers_cohn"
    assert resolve_task("promoters") == "human_nontata_promoters"
    assert resolve_task("Human Enhancers Cohn") == "human_enhancers_cohn"
    assert resolve_task("Mouse Enhancers") == "dummy_mouse_enhancers_ensembl"
    assert resolve_task("Coding vs Intergenomic") == "demo_coding_vs_intergenomic_seqs"
    assert resolve_task("Human vs Worm") == "demo_human_or_worm"
    assert resolve_task("Human Regulatory") == "human_ensembl_regulatory"
    assert resolve_task("drosophila_enhancers") == "drosophila_enhancers_stark"
    assert all(resolve_task(t) == t for t in TASKS) and len(TASKS) == 9
    with pytest.raises(ValueError, match=r"unknown Genomic Benchmarks task 'enhancer_cohen'; valid tasks: .*human_enhancers_cohn"):
        resolve_task("enhancer_cohen")


def test_missing_data_errors(tmp_path: Path, gb_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchmarkDataError, match=r"no 'train' split under .*human_enhancers_cohn \(present: test\)"):
        load_task("enhancers", gb_root, "train")
    with pytest.raises(BenchmarkDataError, match=r"'demo_human_or_worm' not found under .*tasks there: human_enhancers_cohn"):
        load_task("human_or_worm", gb_root, "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_task("enhancers", gb_root, "valid")
    monkeypatch.setattr(benchmarks, "CACHE_PATH", tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "human_enhancers_cohn").symlink_to(gb_root / "human_enhancers_cohn")
    assert load_task("enhancers", None, "test")[2] == ["negative", "positive"], "root=None reads the package cache"
    (tmp_path / "cache" / "human_enhancers_cohn").unlink()
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", None)
    monkeypatch.setitem(sys.modules, "genomic_benchmarks.loc2seq", None)
    with pytest.raises(BenchmarkDataError, match=r"not in the cache .*package is not installed.*data.root=PATH"):
        load_task("enhancers", None, "test")
    assert not any((tmp_path / "cache").iterdir()), "nothing is written when the task cannot be fetched"
    bad = tmp_path / "bad" / "human_ocr_ensembl" / "train" / "positive"
    bad.mkdir(parents=True)
    (bad / "r0.txt").write_text("\n")
    with pytest.raises(BenchmarkDataError, match=r"positive/r0.txt: empty sequence file"):
        load_task("ocr", tmp_path / "bad", "train")


def test_collate_crops_centrally_and_pads(gb_root: Path, tokenizer: Tokenizer) -> None:
    seqs, _, _ = load_task("regulatory", gb_root, "train")
    batch = seqs[:64]
    ids, mask = collate_sequences(batch, tokenizer, max_len=400, policy="center")
    longest = max(min(len(s), 400) for s in batch)
    assert ids.shape == mask.shape == (64, longest)
    for row, s in enumerate(batch):
        n = min(len(s), 400)
        assert int(mask[row].sum()) == n
        off = (len(s) - n) // 2
        assert tokenizer.decode(ids[row, :n]) == s[off : off + n].upper()
        assert torch.all(ids[row, n:] == tokenizer.pad_id)
    left, _ = collate_sequences(batch, tokenizer, 400, policy="left", pad_to="max_len")
    assert left.shape == (64, 400)
    assert tokenizer.decode(left[0, : min(len(batch[0]), 400)]) == batch[0][:400].upper()
    with pytest.raises(ValueError, match="exceeds max_len=100"):
        collate_sequences(batch, tokenizer, 100, policy="error")
    with pytest.raises(ValueError, match="unknown crop policy 'middle'"):
        collate_sequences(batch, tokenizer, 100, policy="middle")


def test_dataloader_with_collator(gb_root: Path, tokenizer: Tokenizer) -> None:
    seqs, labels, _ = load_task("ocr", gb_root, "train")
    loader = DataLoader(SequenceDataset(seqs, labels), batch_size=32, shuffle=False,
                        collate_fn=SequenceCollator(tokenizer, max_len=512))
    total, positives = 0, 0
    for batch in loader:
        assert batch["input_ids"].shape[1] <= 512 and batch["attention_mask"].dtype == torch.bool
        total += len(batch["labels"])
        positives += int(batch["labels"].sum())
    assert (total, positives) == (1000, 500)
