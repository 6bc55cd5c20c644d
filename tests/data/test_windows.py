"""Windows from the real hg38 chr2 slice: exact sequences, splits, augmentation, N filter, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from Bio import SeqIO
from Bio.Seq import Seq
from torch.utils.data import DataLoader, default_collate

import dataclasses

from dnadiff.cli import load_config
from dnadiff.data.datamodule import PretrainDataModule
from dnadiff.data.sources import GenomeSource, data_source
from dnadiff.data.genome import Genome
from dnadiff.data.windows import (
    BedError,
    GenomeWindows,
    Interval,
    WindowError,
    block_split,
    collate_windows,
    intervals_from_blocks,
    intervals_from_chromosomes,
    read_bed,
)
from dnadiff.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chr2_seq(hg38_fasta: Path) -> str:
    (record,) = SeqIO.parse(str(hg38_fasta), "fasta")
    return str(record.seq)


@pytest.fixture(scope="module")
def genome_gz(hg38_fasta_gz: Path) -> Genome:
    return Genome(hg38_fasta_gz)


def _expected(chr2_seq: str, start: int, length: int, tok: Tokenizer, rc: bool = False) -> np.ndarray:
    """Token ids of a window computed independently: Biopython's sequence and reverse complement."""
    seq = chr2_seq[start : start + length].upper()
    if rc:
        seq = str(Seq(seq).reverse_complement())
    return np.array([tok.token_to_id[c] for c in seq])


def test_block_rule_splits_the_sample(genome_gz: Genome) -> None:
    ivs = intervals_from_blocks(genome_gz, split_block=100_000)
    assert len(ivs) == 20 and all(len(iv) == 100_000 for iv in ivs)
    by_split = {s: [iv.start // 100_000 for iv in ivs if iv.split == s] for s in ("train", "valid", "test")}
    assert by_split["valid"] == [8, 18] and by_split["test"] == [9, 19] and len(by_split["train"]) == 16
    assert [block_split(i) for i in range(10)] == ["train"] * 8 + ["valid", "test"]


@pytest.mark.parametrize("which", ["plain", "bgzip"])
def test_eval_windows_equal_biopython(which: str, hg38_fasta: Path, hg38_fasta_gz: Path, chr2_seq: str, tokenizer: Tokenizer) -> None:
    genome = Genome(hg38_fasta if which == "plain" else hg38_fasta_gz)
    ivs = intervals_from_blocks(genome, split_block=100_000)
    for split in ("valid", "test"):
        ds = GenomeWindows(genome, [iv for iv in ivs if iv.split == split], 1024, train=False, max_n_frac=0.1)
        assert len(ds) == 2 * (100_000 // 1024)
        for k, (contig, start, end) in enumerate(ds.windows()):
            assert end - start == 1024 and block_split(start // 100_000) == split
            ids = ds[k]["input_ids"]
            assert ids.dtype == torch.long and ids.shape == (1024,)
            np.testing.assert_array_equal(ids.numpy(), _expected(chr2_seq, start, 1024, tokenizer))


def test_eval_windows_deterministic_and_disjoint(genome_gz: Genome) -> None:
    ivs = intervals_from_blocks(genome_gz, split_block=100_000)
    make = lambda split: GenomeWindows(  # noqa: E731
        genome_gz, [iv for iv in ivs if iv.split == split], 512, train=False, max_windows=100, seed=split == "test"
    )
    valid, again, test = make("valid"), make("valid"), make("test")
    assert valid.windows() == again.windows() and len(valid) == 100
    assert all(torch.equal(valid[k]["input_ids"], again[k]["input_ids"]) for k in range(0, 100, 7))
    spans = sorted((s, e) for _, s, e in valid.windows() + test.windows())
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))


def test_train_windows_shift_and_rc_are_exact(genome_gz: Genome, chr2_seq: str, tokenizer: Tokenizer) -> None:
    ivs = [iv for iv in intervals_from_blocks(genome_gz, 100_000) if iv.split == "train"]
    ds = GenomeWindows(genome_gz, ivs, 512, train=True, rc_aug=True, max_n_frac=0.1, seed=3, return_coords=True)
    n_rc, starts = 0, set()
    for k in np.random.default_rng(0).choice(len(ds), 200, replace=False).tolist():
        item = ds[k]
        start, rc = int(item["start"]), bool(item["rc"])
        assert block_split(start // 100_000) == "train" and block_split((start + 511) // 100_000) == "train"
        np.testing.assert_array_equal(item["input_ids"].numpy(), _expected(chr2_seq, start, 512, tokenizer, rc))
        n_rc += rc
        starts.add(start)
    assert 70 <= n_rc <= 130
    assert len(starts) == 200
    assert any(s % 512 for s in starts)
    # sample(k, rng) is a pure function of (k, rng state): the training stream relies on it
    a = ds.sample(7, np.random.default_rng([5, 7]))
    b = ds.sample(7, np.random.default_rng([5, 7]))
    c = ds.sample(7, np.random.default_rng([6, 7]))
    assert all(torch.equal(a[key], b[key]) for key in a) and int(a["start"]) != int(c["start"])


def test_collate_windows_equals_default_collate(genome_gz: Genome) -> None:
    ivs = [iv for iv in intervals_from_blocks(genome_gz, 100_000) if iv.split == "test"]
    ds = GenomeWindows(genome_gz, ivs, 300, train=False, max_windows=8, return_coords=True)
    items = [ds[k] for k in range(len(ds))]
    ours, reference = collate_windows(items), default_collate(items)
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) and ours[k].dtype == reference[k].dtype for k in ours)
    with pytest.raises(ValueError, match="empty batch"):
        collate_windows([])


def test_rc_is_an_involution_on_real_windows(genome_gz: Genome, tokenizer: Tokenizer) -> None:
    ivs = [iv for iv in intervals_from_blocks(genome_gz, 100_000) if iv.split == "valid"]
    ds = GenomeWindows(genome_gz, ivs, 1024, train=False, max_windows=50)
    batch = torch.stack([ds[k]["input_ids"] for k in range(len(ds))])
    rc = tokenizer.reverse_complement(batch)
    assert not torch.equal(rc, batch)
    assert torch.equal(tokenizer.reverse_complement(rc), batch)
    assert torch.equal(torch.from_numpy(tokenizer.reverse_complement(batch.numpy()).copy()), rc)


def test_n_threshold_drops_the_telomere(genome_gz: Genome, chr2_seq: str) -> None:
    telomere = [Interval("chr2", 0, 40_960, "valid")]
    ds = GenomeWindows(genome_gz, telomere, 1024, train=False, max_n_frac=0.1)
    n_frac = {s: chr2_seq[s : s + 1024].count("N") / 1024 for s in range(0, 40_960, 1024)}
    assert n_frac[0] == 1.0 and n_frac[9216] > 0.1
    assert [s for _, s, _ in ds.windows()] == [s for s, f in n_frac.items() if f <= 0.1]
    assert min(s for _, s, _ in ds.windows()) == 10_240 and ds.n_dropped_n == 10
    keep_all = GenomeWindows(genome_gz, telomere, 1024, train=False, max_n_frac=1.0)
    assert len(keep_all) == 40
    train = GenomeWindows(genome_gz, telomere, 1024, train=True, max_n_frac=0.1, seed=1, return_coords=True)
    for k in range(len(train)):
        item = train[k]
        start = int(item["start"])
        assert chr2_seq[start : start + 1024].count("N") <= 102
    only_n = [Interval("chr2", 0, 9_000, "train")]
    with pytest.raises(WindowError, match="no training window with at most 10% N"):
        GenomeWindows(genome_gz, only_n, 1024, train=True, max_n_frac=0.1)[0]
    with pytest.raises(WindowError, match=r"all 8 evaluation windows \(on contig\(s\) chr2\) have more than 10% N"):
        GenomeWindows(genome_gz, only_n, 1024, train=False, max_n_frac=0.1)


def test_two_workers_give_distinct_valid_windows(hg38_fasta: Path, chr2_seq: str, tokenizer: Tokenizer) -> None:
    genome = Genome(hg38_fasta)
    ivs = [iv for iv in intervals_from_blocks(genome, 100_000) if iv.split == "train"]
    ds = GenomeWindows(genome, ivs, 256, train=True, rc_aug=True, seed=0, return_coords=True)
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen = set()
    for b, batch in enumerate(loader):
        for ids, start, rc in zip(batch["input_ids"], batch["start"].tolist(), batch["rc"].tolist()):
            np.testing.assert_array_equal(ids.numpy(), _expected(chr2_seq, start, 256, tokenizer, rc))
            seen.add(start)
        if b == 5:
            break
    assert len(seen) == 6 * 16


def test_datamodule_from_config_with_workers(tmp_path: Path) -> None:
    cfg = load_config("pretrain", ["data.num_workers=2", "data.seq_len=256"]).data
    dm = PretrainDataModule(cfg, seed=0, max_steps=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (cfg.batch_size, 256)
    assert int(batch["input_ids"].min()) >= 7 and int(batch["input_ids"].max()) <= 11
    val = [b["input_ids"] for b in dm.val_dataloader()]
    assert sum(len(v) for v in val) == cfg.max_eval_windows
    single = PretrainDataModule(dataclasses.replace(cfg, num_workers=0), seed=0, max_steps=3)
    again = [b["input_ids"] for b in single.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(val, again))
    assert len(dm.source.dataset("test")) == cfg.max_eval_windows
    with pytest.raises(ValueError, match=r"unknown config key data.seqlen"):
        data_source({"seqlen": 5})
    with pytest.raises(WindowError, match="no window of 131072 bp fits"):
        data_source({"seq_len": 131_072}).dataset("valid")


def _bed(tmp_path: Path, bad: str) -> Path:
    path = tmp_path / "splits.bed"
    path.write_text(f"# header\nchr2\t10000\t60000\ttrain\n{bad}\nchr2\t60000\t90000\ttest\n")
    return path


@pytest.mark.parametrize(
    "bad, message",
    [
        ("chr2\t100\t200", "expected 4 columns"),
        ("chr2\tabc\t200\ttrain", "start and end must be integers"),
        ("chr2\t300\t200\ttrain", "need 0 <= start < end"),
        ("chr2\t100\t200\tholdout", "unknown split 'holdout'"),
        ("chrX\t100\t200\ttrain", "unknown contig 'chrX'"),
        ("chr2\t1999000\t2000100\tvalid", "out of bounds"),
    ],
)
def test_bad_bed_lines_name_file_and_line(tmp_path: Path, genome_gz: Genome, bad: str, message: str) -> None:
    path = _bed(tmp_path, bad)
    with pytest.raises(BedError, match=rf"splits.bed, line 3: .*{message}"):
        read_bed(path, genome_gz)


def test_bed_and_chromosome_lists(tmp_path: Path, genome_gz: Genome, chr2_seq: str, tokenizer: Tokenizer) -> None:
    path = _bed(tmp_path, "chr2\t200000\t205000\tval")
    ivs = read_bed(path, genome_gz)
    assert [iv.split for iv in ivs] == ["train", "valid", "test"]
    dm = GenomeSource.from_config({"fasta": str(genome_gz.path), "bed": str(path), "seq_len": 1000,
                                   "max_eval_windows": None})
    assert [w[1] for w in dm.dataset("valid").windows()] == [200_000 + 1000 * i for i in range(5)]
    ids = dm.dataset("test")[0]["input_ids"].numpy()
    np.testing.assert_array_equal(ids, _expected(chr2_seq, 60_000, 1000, tokenizer))
    with pytest.raises(BedError, match="BED file not found"):
        read_bed(tmp_path / "missing.bed")
    whole = intervals_from_chromosomes(genome_gz, {"test": ["chr2"]})
    assert whole == [Interval("chr2", 0, 2_000_000, "test")]
    from dnadiff.data.genome import GenomeError

    with pytest.raises(GenomeError, match="unknown contig 'chr9'"):
        intervals_from_chromosomes(genome_gz, {"valid": ["chr9"]})
