"""What a sequence line may hold: IUPAC nucleotide codes (either case) and '-'; anything else is
refused by every reader, naming the file, the contig or record, and the count."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnadiff.data.fasta import FastaError, read_fasta
from dnadiff.data.genome import Genome, GenomeError
from dnadiff.resources import default_fasta
from dnadiff.tokenizer import SEQUENCE_CODES, Tokenizer, non_nucleotide


@pytest.fixture(scope="module")
def real() -> str:
    """6 kb of real sequence (hg38 chr2, the embedded sample)."""
    g = Genome(default_fasta())
    return g.fetch(next(iter(g.contigs)), 1_000_000, 1_006_000)


def test_codes_are_the_iupac_nucleotides_and_gap(tokenizer: Tokenizer) -> None:
    assert sorted(SEQUENCE_CODES) == sorted("ACGTNRYSWKMBDHVU-")
    assert non_nucleotide("acgtNRYSWKMBDHVU-ryswkmbdhvu") is None
    assert non_nucleotide("ACG7T*.") == (3, 3, "7")
    assert non_nucleotide(b"AC\xc3\xa9") == (2, 2, "\xc3")
    assert tokenizer.decode(tokenizer.encode("ACGTRY-")) == "ACGTNNN"  # what the models see


@pytest.mark.parametrize("bad", ["7", "*", ".", "E", "é"])
def test_read_fasta_refuses_non_nucleotides(tmp_path: Path, real: str, bad: str) -> None:
    path = tmp_path / "x.fa"
    path.write_text(f">ok\n{real[:60]}\n>chrX desc\n{real[:30]}\n{real[30:40]}{bad}{bad}{real[40:60]}\n",
                    encoding="utf-8")
    with pytest.raises(FastaError) as err:
        read_fasta(path)
    text = str(err.value)
    first, count = ("a non-ASCII byte", 4) if bad == "é" else (repr(bad), 2)  # é is two UTF-8 bytes
    assert text.startswith(f"{path}, line 5: record 'chrX' holds {count} character(s) that are not nucleotide "
                           f"codes (first {first})")


def test_read_fasta_keeps_iupac_and_soft_mask(tmp_path: Path, real: str) -> None:
    path = tmp_path / "x.fa"
    seq = real[:40].lower() + "RYKM-N" + real[40:60]
    path.write_text(f">a\n{seq}\n")
    assert read_fasta(path) == [("a", seq)]


def test_genome_refuses_a_digit_where_a_window_reads_it(tmp_path: Path, real: str) -> None:
    """Decided: a genome is checked where it is read (a full scan of hg38 on every open would take a
    minute): the window that covers the digit is refused, naming file, contig, interval and count."""
    seq = real[:3000] + "0*" + real[3002:]
    path = tmp_path / "g.fa"
    path.write_text(">chrQ\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    genome = Genome(path)
    assert genome.fetch("chrQ", 0, 2000) == real[:2000]
    with pytest.raises(GenomeError) as err:
        genome.fetch("chrQ", 2900, 3100)
    assert str(err.value).startswith(f"{path}: contig 'chrQ' holds 2 character(s) that are not nucleotide codes "
                                     "in chrQ:2901-3100 (first '0' at chrQ:3001)")


def test_a_bad_window_read_in_a_worker_keeps_its_one_line(tmp_path: Path, real: str) -> None:
    """Training windows are read in DataLoader workers; the one-line error still names the file."""
    from torch.utils.data import DataLoader

    from dnadiff.data.windows import GenomeWindows, Interval
    from dnadiff.errors import first_line

    path = tmp_path / "g.fa"
    path.write_text(">chrQ\n" + real[:500] + "7" * 100 + real[600:1000] + "\n")
    windows = GenomeWindows(Genome(path), [Interval("chrQ", 0, 1000, "train")], 1000, train=True, shift=False)
    with pytest.raises(GenomeError) as err:
        next(iter(DataLoader(windows, batch_size=1, num_workers=1)))
    assert first_line(err.value) == (f"{path}: contig 'chrQ' holds 100 character(s) that are not nucleotide codes in "
                                     "chrQ:1-1000 (first '7' at chrQ:501); a DNA FASTA holds only "
                                     "ACGTNRYSWKMBDHVU- (either case)")
