"""FASTA records from plain, gzip and bgzip files (``dnadiff.data.fasta``), and ``evaluate_samples``
on bgzip input: the shipped hg38 sample (bgzip from htslib, many BGZF blocks) and BGZF files written
by Biopython (which pyfaidx indexes) give the same records, and the same report, as plain copies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from Bio import bgzf

from dnadiff.cli import load_config
from dnadiff.data.fasta import format_fasta, read_fasta
from dnadiff.data.genome import Genome
from dnadiff.resources import default_fasta

BGZF_MAGIC = b"\x1f\x8b\x08\x04"  # gzip, deflate, FEXTRA set (BGZF's "BC" block-size field)


def is_bgzf(path: Path) -> bool:
    head = path.read_bytes()[:16]
    return head.startswith(BGZF_MAGIC) and head[12:14] == b"BC"


def bgzf_blocks(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in bgzf.BgzfBlocks(fh))


def test_read_fasta_reads_the_shipped_bgzip_sample() -> None:
    path = default_fasta()
    assert is_bgzf(path) and bgzf_blocks(path) > 10
    records = read_fasta(path)
    assert [h.split()[0] for h, _ in records] == ["chr2"]
    seq = records[0][1]
    assert len(seq) == 2_000_000 and seq == Genome(path).fetch("chr2", 0, 2_000_000)
    assert seq[:10_000] == "N" * 10_000 and set(seq) <= set("ACGTNacgtn")


@pytest.fixture(scope="module")
def windows() -> list[tuple[str, str]]:
    """40 real hg38 windows of 300 bp (chr2 sample, upper and soft-masked lower case kept)."""
    genome = Genome(default_fasta())
    starts = range(50_000, 1_650_000, 40_000)
    return [(f"w{i} chr2:{s}", genome.fetch("chr2", s, s + 300)) for i, s in enumerate(starts)]


def write_all(records: list[tuple[str, str]], folder: Path, name: str) -> dict[str, Path]:
    """The same records as plain, gzip and bgzip (Biopython's BGZF writer) files."""
    text = format_fasta(records).encode()
    paths = {"plain": folder / f"{name}.fa", "gzip": folder / f"{name}.fa.gz", "bgzip": folder / f"{name}.fa.bgz"}
    paths["plain"].write_bytes(text)
    with gzip.open(paths["gzip"], "wb") as fh:
        fh.write(text)
    with bgzf.BgzfWriter(str(paths["bgzip"]), "wb") as fh:
        fh.write(text)
    return paths


def test_read_fasta_is_the_same_for_plain_gzip_and_bgzip(windows, tmp_path: Path) -> None:
    paths = write_all(windows * 6, tmp_path, "many")  # ~120 kB of text: several BGZF blocks
    assert is_bgzf(paths["bgzip"]) and bgzf_blocks(paths["bgzip"]) >= 2 and not is_bgzf(paths["gzip"])
    for kind, path in paths.items():
        assert read_fasta(path) == windows * 6, kind
    truncated = tmp_path / "cut.fa.gz"
    truncated.write_bytes(paths["bgzip"].read_bytes()[:5000])
    with pytest.raises(ValueError, match="cut.fa.gz: unreadable FASTA"):
        read_fasta(truncated)


def test_evaluate_samples_reads_bgzip_samples_and_reference(windows, tmp_path: Path) -> None:
    from dnadiff.evaluate_samples import evaluate_samples

    samples = write_all(windows, tmp_path, "samples")
    genome = Genome(default_fasta())
    reference = write_all([(f"r{k}", genome.fetch("chr2", s, s + 20_000)) for k, s in
                           enumerate(range(40_000, 1_640_000, 160_000))], tmp_path, "reference")
    assert bgzf_blocks(reference["bgzip"]) >= 3
    assert Genome(reference["bgzip"]).contigs["r0"] == 20_000  # pyfaidx indexes it: real BGZF, random access
    reports = {}
    for kind in ("plain", "bgzip"):
        out = tmp_path / f"{kind}.json"
        cfg = load_config("evaluate_samples", [f"samples={samples[kind]}", f"out={out}",
                                               f"reference.fasta={reference[kind]}", "metrics.motifs=false",
                                               "metrics.nn_max_samples=4", "plots=false", "device=cpu"])
        evaluate_samples(cfg)
        reports[kind] = json.loads(out.read_text())
    plain, packed = reports["plain"], reports["bgzip"]
    assert packed["n_samples"] == 40 and packed["n_reference"] == 10 and packed["sample_lengths"] == [300]
    for key in ("kmer_js", "gc_mean", "gc_mean_reference", "gc_wasserstein", "diversity", "nn_identity"):
        assert packed[key] == plain[key], key
    assert packed["nn_identity"]["max"] == pytest.approx(1.0)  # sample w0 lies inside reference r0
