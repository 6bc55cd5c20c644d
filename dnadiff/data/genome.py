"""Lazy random access to a reference genome (plain or bgzip FASTA) through pyfaidx.

Why a wrapper: pyfaidx builds or rewrites index files silently and raises low-level errors
(``KeyError``, ``FetchError``) deep in a data loader. :class:`Genome` checks the index once,
up front, and turns every bad input into a :class:`GenomeError` naming the file, contig or
interval. Coordinates are 0-based, half-open (``fetch("chr2", 0, 10)`` is the first ten bases).

Index policy (documented, and tested):

- A missing ``.fai`` (and, for bgzip, ``.gzi``) is built automatically when the FASTA's folder
  is writable and ``build_index=True`` (the default): pyfaidx writes it to a temporary name
  that is renamed into place, so a crash never leaves half an index. Otherwise a
  :class:`GenomeError` says how to build it (``samtools faidx FILE``).
- A stale index is an error, never rebuilt silently: a ``.fai`` older than the FASTA by more
  than :data:`MTIME_TOLERANCE_S` (a tolerance for git checkouts and copies, which write files
  in arbitrary order within a second), or an index whose names, offsets and lengths disagree
  with the file (checked at every contig boundary, both formats: the header line just before
  each contig's offset must name that contig, so a renamed contig beside an old index is
  refused). Delete the index to rebuild it.
- A bgzip file must end with the BGZF end-of-file block (what samtools checks): without it the
  file is truncated, and that is said up front rather than as a failed read somewhere inside.
  Any read error later is a :class:`GenomeError` naming the file.
- Sequence characters: IUPAC nucleotide codes and '-' (:data:`dnadiff.tokenizer.SEQUENCE_CODES`).
  Every read checks the bases it returns; a digit, '*' or any other character is an error
  naming the file, the contig, the interval and how many such characters it holds (the file is
  not DNA FASTA). The whole genome is not scanned on open (hg38 would take a minute), so a bad
  character is found when a window covering it is read: evaluation windows all up front,
  training windows when drawn.

One pyfaidx handle per process: the handle is opened lazily and reopened when ``os.getpid()``
changes, and it is not pickled, so a :class:`Genome` can be sent to DataLoader workers.
"""

from __future__ import annotations

import bisect
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyfaidx

from dnadiff.tokenizer import SEQUENCE_CODES, Tokenizer, non_nucleotide

MTIME_TOLERANCE_S = 2.0
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_READ_ERRORS = (OSError, ValueError, EOFError, struct.error, zlib.error)
_BGZF_SUFFIXES = (".gz", ".bgz")
_SEQ_BYTES = frozenset(b"ACGTNRYSWKMBDHVUacgtnryswkmbdhvu*-.")


class GenomeError(ValueError):
    """Bad genome input: missing or unreadable FASTA, missing or stale index, unknown contig,
    interval out of bounds. The message names the file and the contig or interval."""


@dataclass(frozen=True)
class FaiRecord:
    """One line of a samtools ``.fai`` index."""

    name: str
    length: int
    offset: int
    line_bases: int
    line_bytes: int

    def end_offset(self) -> int:
        """Uncompressed byte offset just after the contig's last base."""
        if self.length == 0:
            return self.offset
        full, rem = divmod(self.length, self.line_bases)
        if rem:
            return self.offset + full * self.line_bytes + rem
        return self.offset + (full - 1) * self.line_bytes + self.line_bases


def is_bgzf(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a (b)gzip-compressed FASTA by its suffix."""
    return str(path).lower().endswith(_BGZF_SUFFIXES)


def read_fai(fai: Path) -> list[FaiRecord]:
    """Parse a ``.fai`` index; a malformed line raises :class:`GenomeError` naming the line."""
    records: list[FaiRecord] = []
    seen: set[str] = set()
    with open(fai, encoding="ascii", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                name = fields[0]
                length, offset, line_bases, line_bytes = (int(x) for x in fields[1:5])
            except (ValueError, IndexError):
                raise GenomeError(
                    f"{fai}, line {lineno}: not a FASTA index line (expected name, length, offset, "
                    f"line bases, line bytes separated by tabs): {line.rstrip()[:80]!r}"
                ) from None
            if length < 0 or offset < 0 or line_bases <= 0 or line_bytes < line_bases:
                raise GenomeError(f"{fai}, line {lineno}: impossible index values {fields[1:5]}")
            if name in seen:
                raise GenomeError(f"{fai}, line {lineno}: contig {name!r} appears twice")
            seen.add(name)
            records.append(FaiRecord(name, length, offset, line_bases, line_bytes))
    if not records:
        raise GenomeError(f"{fai}: empty FASTA index")
    return records


class Genome:
    """Lazy, process-safe reader of a plain or bgzip-compressed FASTA with a ``.fai`` index."""

    def __init__(self, path: str | os.PathLike, build_index: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise GenomeError(f"{self.path} is a folder, not a FASTA file")
        if not self.path.is_file():
            raise GenomeError(f"FASTA file not found: {self.path}")
        self.bgzf = is_bgzf(self.path)
        if self.bgzf:
            self._check_bgzf_eof()
        self.fai_path = Path(f"{self.path}.fai")
        self.gzi_path = Path(f"{self.path}.gzi") if self.bgzf else None
        self._ensure_index(build_index)
        self._records = {r.name: r for r in read_fai(self.fai_path)}
        self._handle: pyfaidx.Faidx | None = None
        self._pid: int | None = None
        self._ustarts: list[int] | None = None
        self._check_consistency()

    # ----------------------------------------------------------------- index management
    def _check_bgzf_eof(self) -> None:
        """A BGZF file (first block with the 'BC' extra field) must end with the BGZF EOF block."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(18)
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(size - len(BGZF_EOF), 0))
                tail = fh.read()
        except OSError as err:
            raise GenomeError(f"{self.path}: cannot read ({err.strerror or err})") from None
        is_bgzf_block = len(head) == 18 and head[:2] == b"\x1f\x8b" and head[3] & 4 and head[12:14] == b"BC"
        if is_bgzf_block and tail != BGZF_EOF:
            raise GenomeError(
                f"{self.path}: truncated bgzip file (it does not end with the BGZF end-of-file block); "
                "download or compress it again"
            )

    def _index_paths(self) -> list[Path]:
        return [p for p in (self.fai_path, self.gzi_path) if p is not None]

    def _ensure_index(self, build_index: bool) -> None:
        missing = [p for p in self._index_paths() if not p.is_file()]
        if missing:
            if not build_index or not os.access(self.path.parent, os.W_OK):
                why = "index building is off" if not build_index else "its folder is not writable"
                raise GenomeError(
                    f"{self.path}: missing index {', '.join(str(p) for p in missing)} and {why}; "
                    f"build it with `samtools faidx {self.path}` (or Genome(path, build_index=True) "
                    "in a writable folder)"
                )
            self._build_index()
            return
        fasta_mtime = self.path.stat().st_mtime
        for idx in self._index_paths():
            if fasta_mtime - idx.stat().st_mtime > MTIME_TOLERANCE_S:
                raise GenomeError(
                    f"{self.path}: stale index {idx} (older than the FASTA); delete it to rebuild it, "
                    f"or run `samtools faidx {self.path}`"
                )

    def _build_index(self) -> None:
        """Build .fai (and .gzi) under temporary names, then rename them into place."""
        tmp_dir = self.path.parent
        tmps: list[str] = []
        try:
            fd, tmp_fai = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".fai.part", dir=tmp_dir)
            os.close(fd)
            os.unlink(tmp_fai)
            tmps.append(tmp_fai)
            tmp_gzi = None
            if self.bgzf:
                tmp_gzi = tmp_fai[: -len(".fai.part")] + ".gzi.part"
                tmps.append(tmp_gzi)
            try:
                fa = pyfaidx.Faidx(
                    str(self.path), indexname=tmp_fai, gzi_indexname=tmp_gzi, build_index=True, rebuild=True
                )
                fa.close()
            except pyfaidx.UnsupportedCompressionFormat:
                raise GenomeError(
                    f"{self.path}: compressed with plain gzip, not bgzip; random access needs BGZF "
                    "(`zcat F.gz | bgzip > F.bgz`, or `python -m data_prep.download` does it)"
                ) from None
            except (pyfaidx.FastaIndexingError, *_READ_ERRORS) as err:
                raise GenomeError(f"{self.path}: cannot index this FASTA ({type(err).__name__}: {err})") from None
            if tmp_gzi is not None:
                os.replace(tmp_gzi, self.gzi_path)
            os.replace(tmp_fai, self.fai_path)
        finally:
            for tmp in tmps:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _check_consistency(self) -> None:
        """Check every contig boundary: the index's offsets and lengths must match the file."""
        records = list(self._records.values())
        self._check_first_header(records[0])
        for rec, nxt in zip(records, records[1:] + [None]):
            end = rec.end_offset()
            if rec.length:
                last = self._read_raw(end - 1, 1)
                if len(last) != 1 or last[0] not in _SEQ_BYTES:
                    self._stale(rec, "its last base is not sequence")
            if nxt is None:
                tail = self._read_raw(end, 4 * rec.line_bytes + 2)
                if tail.strip():
                    self._stale(rec, "the file continues after its last base")
                continue
            if nxt.offset <= end:
                self._stale(nxt, "it starts before the previous contig ends")
            gap = self._read_raw(end, nxt.offset - end)
            header = gap.lstrip(b"\r\n")
            if not header.startswith(b">") or not header[1:].split()[:1] == [nxt.name.encode()]:
                found = header.split(b"\n")[0].strip()[:60].decode("ascii", errors="replace")
                self._stale(nxt, f"the file has {found!r} where its header '>{nxt.name}' should be")

    def _check_first_header(self, rec: FaiRecord) -> None:
        """The line just before the first contig's offset is its header (the others are checked
        from the previous contig's end)."""
        before = self._read_raw(max(rec.offset - 65536, 0), min(rec.offset, 65536))
        header = before.rstrip(b"\r\n").split(b"\n")[-1].strip() if before.endswith(b"\n") else b""
        if not header.startswith(b">") or header[1:].split()[:1] != [rec.name.encode()]:
            found = header[:60].decode("ascii", errors="replace")
            why = (f"the file's header is {found!r}, not '>{rec.name}'" if header
                   else "no header line ends just before its offset (the sequence moved)")
            self._stale(rec, why)

    def _stale(self, rec: FaiRecord, why: str) -> None:
        raise GenomeError(
            f"{self.path}: index {self.fai_path} disagrees with the FASTA at contig {rec.name!r} "
            f"(length {rec.length}): {why}; the index is stale or belongs to another file, delete it"
        )

    def _read_raw(self, offset: int, n: int) -> bytes:
        """Read ``n`` uncompressed bytes at an uncompressed offset (plain or bgzip)."""
        try:
            return self._read_raw_unchecked(offset, n)
        except GenomeError:
            raise
        except _READ_ERRORS as err:
            raise GenomeError(
                f"{self.path}: cannot read {n} bytes at offset {offset} ({type(err).__name__}: {err}); "
                "the file is truncated or corrupt, or its index belongs to another file"
            ) from None

    def _read_raw_unchecked(self, offset: int, n: int) -> bytes:
        handle = self._faidx()
        if not self.bgzf:
            handle.file.seek(offset)
            return handle.file.read(n)
        from Bio import bgzf

        blocks = handle.gzi_index
        if self._ustarts is None:
            self._ustarts = [b.ustart for b in blocks]
        i = max(bisect.bisect_right(self._ustarts, offset) - 1, 0)
        handle.file.seek(bgzf.make_virtual_offset(blocks[i].cstart, offset - blocks[i].ustart))
        return handle.file.read(n)

    # ----------------------------------------------------------------- handle per process
    def _faidx(self) -> pyfaidx.Faidx:
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = pyfaidx.Faidx(
                    str(self.path),
                    as_raw=True,
                    strict_bounds=True,
                    build_index=False,
                    rebuild=False,
                    sequence_always_upper=False,
                )
            except pyfaidx.UnsupportedCompressionFormat:
                raise GenomeError(f"{self.path}: compressed with plain gzip, not bgzip (see data_prep)") from None
            except (OSError, ValueError) as err:
                raise GenomeError(f"{self.path}: cannot open ({err})") from None
            self._pid = pid
        return self._handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        state["_ustarts"] = None
        return state

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._pid = None

    # ----------------------------------------------------------------- public reads
    @property
    def contigs(self) -> dict[str, int]:
        """Contig names and lengths, in file order."""
        return {name: rec.length for name, rec in self._records.items()}

    def __repr__(self) -> str:
        kind = "bgzip" if self.bgzf else "plain"
        return f"Genome({str(self.path)!r}, {kind}, {len(self._records)} contigs, {self.total_length():,} bp)"

    def total_length(self) -> int:
        """Sum of contig lengths in bp."""
        return sum(r.length for r in self._records.values())

    def check_interval(self, contig: str, start: int, end: int) -> None:
        """Raise :class:`GenomeError` unless ``contig:start-end`` (0-based half-open) is valid."""
        if contig not in self._records:
            names = list(self._records)
            shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
            raise GenomeError(f"{self.path}: unknown contig {contig!r}; valid contigs: {shown}")
        length = self._records[contig].length
        if not (0 <= start <= end <= length):
            raise GenomeError(
                f"{self.path}: interval {contig}:{start}-{end} is out of bounds "
                f"(0-based half-open; {contig} has length {length})"
            )

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Sequence of ``contig[start:end]`` (0-based, half-open), case preserved."""
        start, end = int(start), int(end)
        self.check_interval(contig, start, end)
        if start == end:
            return ""
        rec = self._records[contig]
        first = rec.offset + (start // rec.line_bases) * rec.line_bytes + start % rec.line_bases
        last = rec.offset + ((end - 1) // rec.line_bases) * rec.line_bytes + (end - 1) % rec.line_bases
        # Read through our own block lookup: pyfaidx's bgzip path fails when a read starts exactly
        # on a BGZF block boundary ("within_block_offset ... got 65536").
        raw = self._read_raw(first, last - first + 1).replace(b"\n", b"").replace(b"\r", b"")
        bad = non_nucleotide(raw)
        if bad is not None:
            count, pos, char = bad
            raise GenomeError(
                f"{self.path}: contig {contig!r} holds {count} character(s) that are not nucleotide codes in "
                f"{contig}:{start + 1}-{end} (first {char!r} at {contig}:{start + pos + 1}); a DNA FASTA holds "
                f"only {SEQUENCE_CODES} (either case)"
            )
        return raw.decode("ascii")

    def fetch_ids(self, contig: str, start: int, end: int, tokenizer: Tokenizer) -> np.ndarray:
        """Token ids (int64 numpy) of ``contig[start:end]``, via the tokenizer's lookup table."""
        return tokenizer.encode_numpy(self.fetch(contig, start, end))
