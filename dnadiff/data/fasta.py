"""FASTA records in and out: reading plain, gzip or bgzip files with errors that name the file
and line, and writing (atomically) with wrapped sequence lines."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable
from pathlib import Path

from dnadiff.atomic import atomic_write_text

GZIP_MAGIC = b"\x1f\x8b"
LINE_WIDTH = 80


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:  # gzip and bgzip alike (BGZF is a series of gzip members)
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="replace")
    return path.open(encoding="ascii", errors="replace")


def read_fasta(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(header, sequence) records of a FASTA file (plain, gzip or bgzip)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"FASTA file not found: {path}")
    records: list[tuple[str, list[str]]] = []
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    records.append((line[1:], []))
                elif not records:
                    raise ValueError(f"{path}, line {lineno}: sequence line before the first '>' header")
                else:
                    records[-1][1].append(line)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: unreadable FASTA ({type(err).__name__}: {err})") from None
    if not records:
        raise ValueError(f"{path}: no FASTA records")
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
