"""Genome: lazy pyfaidx reads of the real hg38 chr2 slice (plain and bgzip) against Biopython."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO

from dnadiff.data.genome import Genome, GenomeError


@pytest.fixture(scope="module")
def chr2_seq(hg38_fasta: Path) -> str:
    """chr2:1-2,000,000 read independently with Biopython."""
    (record,) = SeqIO.parse(str(hg38_fasta), "fasta")
    return str(record.seq)


@pytest.fixture(scope="module")
def chrm_seq(shared_data: Path) -> str:
    (record,) = SeqIO.parse(str(shared_data / "genome" / "human_chrM.fa"), "fasta")
    return str(record.seq)


@pytest.fixture()
def multi_fasta(tmp_path: Path, chr2_seq: str, chrm_seq: str) -> Path:
    """A real two-contig FASTA (chrM, then 50 kb of chr2), 70 bases per line, not yet indexed."""
    path = tmp_path / "multi.fa"
    with open(path, "w") as out:
        for name, seq in (("MT_human", chrm_seq), ("chr2", chr2_seq[10_000:60_000])):
            out.write(f">{name} real sequence\n")
            out.writelines(seq[i : i + 70] + "\n" for i in range(0, len(seq), 70))
    return path


@pytest.mark.parametrize("which", ["plain", "bgzip"])
def test_fetch_matches_biopython(which: str, hg38_fasta: Path, hg38_fasta_gz: Path, chr2_seq: str) -> None:
    genome = Genome(hg38_fasta if which == "plain" else hg38_fasta_gz)
    assert genome.contigs == {"chr2": 2_000_000}
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 2_000_000 - 5000, size=300)
    lengths = rng.integers(1, 5000, size=300)
    for s, n in zip(starts.tolist(), lengths.tolist()):
        assert genome.fetch("chr2", s, s + n) == chr2_seq[s : s + n]
    assert genome.fetch("chr2", 0, 10) == "N" * 10
    assert genome.fetch("chr2", 1_999_990, 2_000_000) == chr2_seq[-10:]
    assert genome.fetch("chr2", 5, 5) == ""


def test_pickle_and_reopen_per_process(hg38_fasta_gz: Path, chr2_seq: str) -> None:
    genome = Genome(hg38_fasta_gz)
    genome.fetch("chr2", 0, 1)
    first = genome._handle
    clone = pickle.loads(pickle.dumps(genome))
    assert clone._handle is None
    assert clone.fetch("chr2", 123_456, 123_556) == chr2_seq[123_456:123_556]
    genome._pid = -1  # as if this object had been forked into another process
    assert genome.fetch("chr2", 500, 600) == chr2_seq[500:600]
    assert genome._handle is not first


def test_multi_contig_index_built_atomically(multi_fasta: Path, chrm_seq: str, chr2_seq: str) -> None:
    genome = Genome(multi_fasta)
    assert genome.contigs == {"MT_human": len(chrm_seq), "chr2": 50_000}
    assert Path(f"{multi_fasta}.fai").is_file()
    assert sorted(p.name for p in multi_fasta.parent.iterdir()) == ["multi.fa", "multi.fa.fai"]
    assert genome.fetch("MT_human", 16_500, 16_569) == chrm_seq[16_500:]
    assert genome.fetch("chr2", 69, 141) == chr2_seq[10_069:10_141]


def test_multi_contig_bgzip_and_its_stale_index(multi_fasta: Path, chrm_seq: str, chr2_seq: str) -> None:
    from Bio import bgzf

    gz = multi_fasta.with_suffix(".fa.gz")
    with bgzf.BgzfWriter(str(gz), "wb") as out:
        out.write(multi_fasta.read_bytes())
    genome = Genome(gz)
    assert genome.bgzf and genome.contigs == {"MT_human": len(chrm_seq), "chr2": 50_000}
    assert genome.fetch("chr2", 49_990, 50_000) == chr2_seq[59_990:60_000]
    assert genome.fetch("MT_human", 0, 100) == chrm_seq[:100]
    fai = Path(f"{gz}.fai")
    fai.write_text(fai.read_text().replace(f"\t{len(chrm_seq)}\t", f"\t{len(chrm_seq) + 70}\t"))
    with pytest.raises(GenomeError, match="multi.fa.gz.fai disagrees with the FASTA at contig"):
        Genome(gz)


def test_bgzip_indexes_built_when_missing(tmp_path: Path, hg38_fasta_gz: Path, chr2_seq: str) -> None:
    copy = tmp_path / hg38_fasta_gz.name
    shutil.copyfile(hg38_fasta_gz, copy)
    genome = Genome(copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name, copy.name + ".fai", copy.name + ".gzi"]
    assert Path(f"{copy}.fai").read_text() == Path(f"{hg38_fasta_gz}.fai").read_text()
    assert genome.fetch("chr2", 1_000_000, 1_000_050) == chr2_seq[1_000_000:1_000_050]


def test_missing_file_and_missing_index(tmp_path: Path, multi_fasta: Path) -> None:
    with pytest.raises(GenomeError, match="FASTA file not found: .*nope.fa"):
        Genome(tmp_path / "nope.fa")
    with pytest.raises(GenomeError, match=r"multi.fa: missing index .*multi.fa.fai.*samtools faidx"):
        Genome(multi_fasta, build_index=False)
    assert not Path(f"{multi_fasta}.fai").exists()


def test_stale_index_by_mtime(multi_fasta: Path) -> None:
    Genome(multi_fasta)
    fai = Path(f"{multi_fasta}.fai")
    old = multi_fasta.stat().st_mtime - 3600
    os.utime(fai, (old, old))
    with pytest.raises(GenomeError, match=r"stale index .*multi.fa.fai"):
        Genome(multi_fasta)


@pytest.mark.parametrize(
    "contig, delta", [("MT_human", -1), ("MT_human", 1), ("chr2", -1), ("chr2", 5), ("chr2", -100)]
)
def test_stale_index_by_lengths(multi_fasta: Path, contig: str, delta: int) -> None:
    Genome(multi_fasta)
    fai = Path(f"{multi_fasta}.fai")
    lines = [line.split("\t") for line in fai.read_text().splitlines()]
    for fields in lines:
        if fields[0] == contig:
            fields[1] = str(int(fields[1]) + delta)
    fai.write_text("".join("\t".join(f) + "\n" for f in lines))
    with pytest.raises(GenomeError, match=r"multi.fa.fai disagrees with the FASTA at contig"):
        Genome(multi_fasta)


def test_bgzip_stale_length(tmp_path: Path, hg38_fasta_gz: Path) -> None:
    copy = tmp_path / hg38_fasta_gz.name
    shutil.copyfile(hg38_fasta_gz, copy)
    shutil.copyfile(f"{hg38_fasta_gz}.gzi", f"{copy}.gzi")
    Path(f"{copy}.fai").write_text("chr2\t1999000\t6\t60\t61\n")
    with pytest.raises(GenomeError, match="contig 'chr2' .*the file continues after its last base"):
        Genome(copy)


def test_malformed_index_line(multi_fasta: Path) -> None:
    Path(f"{multi_fasta}.fai").write_text("MT_human\t16569\t10\t60\t61\nchr2\tlots\n")
    with pytest.raises(GenomeError, match=r"multi.fa.fai, line 2: not a FASTA index line"):
        Genome(multi_fasta)


def test_plain_gzip_is_refused(tmp_path: Path, chrm_seq: str) -> None:
    path = tmp_path / "chrM.fa.gz"
    path.write_bytes(gzip.compress(f">MT_human\n{chrm_seq}\n".encode()))
    with pytest.raises(GenomeError, match="chrM.fa.gz: compressed with plain gzip, not bgzip"):
        Genome(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chrM.fa.gz"]


def test_unknown_contig_and_bounds(hg38_fasta: Path) -> None:
    genome = Genome(hg38_fasta)
    with pytest.raises(GenomeError, match=r"unknown contig 'chrX'; valid contigs: chr2"):
        genome.fetch("chrX", 0, 10)
    for start, end in ((-1, 10), (10, 5), (1_999_999, 2_000_001)):
        with pytest.raises(GenomeError, match=rf"interval chr2:{start}-{end} is out of bounds .*length 2000000"):
            genome.fetch("chr2", start, end)


def test_bgzip_reads_starting_exactly_on_block_boundaries(hg38_fasta, hg38_fasta_gz) -> None:
    """Regression: pyfaidx's own bgzip path fails when a read starts on a BGZF block boundary."""
    plain, gz = Genome(hg38_fasta), Genome(hg38_fasta_gz)
    rec = gz._records["chr2"]
    checked = 0
    for block in gz._faidx().gzi_index[1:]:
        u = block.ustart - rec.offset
        pos = (u // rec.line_bytes) * rec.line_bases + u % rec.line_bases
        for start in (pos - 1, pos, pos + 1):
            if 0 <= start and start + 300 <= rec.length:
                assert gz.fetch("chr2", start, start + 300) == plain.fetch("chr2", start, start + 300)
                checked += 1
    assert checked > 60
