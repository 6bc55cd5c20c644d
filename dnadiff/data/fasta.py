"""FASTA records in and out: reading plain, gzip or bgzip files with errors that name the file
and line, and writing (atomically) with wrapped sequence lines."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

from dnadiff.atomic import atomic_write_text
from dnadiff.tokenizer import SEQUENCE_CODES, non_nucleotide

GZIP_MAGIC = b"\x1f\x8b"
LINE_WIDTH = 80


class FastaError(ValueError):
    """A FASTA file that is missing, unreadable or not DNA; the message names the file (and line)."""


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:  # gzip and bgzip alike (BGZF is a series of gzip members)
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="replace")
    return path.open(encoding="ascii", errors="replace")


def read_fasta(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(header, sequence) records of a FASTA file (plain, gzip or bgzip).

    Sequence lines may hold the nucleotide codes of :data:`dnadiff.tokenizer.SEQUENCE_CODES`
    (either case); a record with any other character (a digit, '*', a protein letter, a binary
    byte) is refused, naming the file, the record, the line and the count: the file is not DNA.
    """
    path = Path(path)
    if path.is_dir():
        raise FastaError(f"{path} is a folder, not a FASTA file")
    if not path.is_file():
        raise FastaError(f"FASTA file not found: {path}")
    records: list[tuple[str, list[str]]] = []
    bad: dict[int, list] = {}  # record index -> [count, first line number, first character]
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    records.append((line[1:], []))
                elif not records:
                    raise FastaError(f"{path}, line {lineno}: not FASTA (the first line that is not blank "
                                     f"must be a '>' header, found {line[:20]!r})")
                else:
                    found = non_nucleotide(line)
                    if found is not None:
                        entry = bad.setdefault(len(records) - 1, [0, lineno, found[2]])
                        entry[0] += found[0]
                    records[-1][1].append(line)
    except (OSError, EOFError, zlib.error) as err:
        raise FastaError(f"{path}: unreadable FASTA ({type(err).__name__}: {err})") from None
    if not records:
        raise FastaError(f"{path}: no FASTA records")
    if bad:
        index, (count, lineno, char) = next(iter(bad.items()))
        name = records[index][0].split()[0] if records[index][0].split() else records[index][0]
        others = f"; {len(bad) - 1} other record(s) too" if len(bad) > 1 else ""
        shown = "a non-ASCII byte" if char == "\ufffd" else repr(char)  # undecodable bytes are read as U+FFFD
        raise FastaError(
            f"{path}, line {lineno}: record {name!r} holds {count} character(s) that are not nucleotide codes "
            f"(first {shown}){others}; a DNA FASTA holds only {SEQUENCE_CODES} (either case)"
        )
    return [(h, "".join(parts)) for h, parts in records]


def format_fasta(records: Iterable[tuple[str, str]], width: int = LINE_WIDTH) -> str:
    """FASTA text of (header, sequence) records, sequences wrapped at ``width``."""
    lines: list[str] = []
    for header, seq in records:
        lines.append(f">{header}")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    return "\n".join(lines) + "\n"


def write_fasta(records: Iterable[tuple[str, str]], path: str | os.PathLike, width: int = LINE_WIDTH) -> None:
    """Write (header, sequence) records to ``path`` atomically."""
    atomic_write_text(format_fasta(records, width), path)
