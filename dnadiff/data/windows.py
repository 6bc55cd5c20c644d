"""Fixed-length genome windows for pretraining: intervals with a split, then a torch Dataset.

Where intervals come from (one of three, see :func:`make_intervals`):

- a BED file with a split column (``contig  start  end  split``, 0-based half-open, split in
  train/valid/test), like the HyenaDNA/Caduceus ``human-sequences.bed``;
- chromosome lists: whole contigs per split (e.g. ``{"valid": ["chr8"], "test": ["chr9"]}``,
  every other contig train);
- no BED and no lists: the **block rule**. Each contig is tiled into consecutive blocks of
  ``split_block`` bp (the last one may be shorter); block ``i`` goes to ``valid`` when
  ``i % period == valid_block``, to ``test`` when ``i % period == test_block``, otherwise to
  ``train`` (defaults 10, 8, 9: 80/10/10). Deterministic, and non-empty for every split on any
  contig of at least ``period * split_block`` bp (the 2 Mb chr2 sample with 100 kb blocks).

Windows (:class:`GenomeWindows`):

- Each interval is tiled into ``(end - start) // seq_len`` non-overlapping slots; intervals
  shorter than ``seq_len`` are **dropped** (never padded), so every window is real sequence of
  exactly ``seq_len`` tokens.
- Evaluation (``train=False``): the slots themselves, deterministic and disjoint, at most
  ``max_windows`` of them (evenly spaced), and those whose N fraction exceeds ``max_n_frac``
  are dropped when the dataset is built.
- Training (``train=True``): item ``k`` is slot ``k`` moved by a random shift (uniform within
  ``+-max_shift`` bp, or anywhere within its interval when ``max_shift`` is None), kept inside
  the interval; a window whose N fraction exceeds ``max_n_frac`` is redrawn (another random
  slot) up to ``max_draws`` times; then reverse-complemented on token ids with probability 0.5
  when ``rc_aug``. ``sample(k, rng)`` draws with a caller's generator (the training stream
  seeds one per sample, so windows do not depend on the worker layout); ``dataset[k]`` uses
  a stream seeded by ``seed`` and, inside a DataLoader worker, by the worker's own seed
  (distinct per worker and per epoch, reproducible from the DataLoader's generator).
- Batch with :func:`collate_windows` (numpy stacking; see its doc for why).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from dnadiff.atomic import atomic_write_text
from dnadiff.data.genome import Genome, GenomeError
from dnadiff.tokenizer import Tokenizer

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}


class BedError(ValueError):
    """A bad line in an interval BED file; the message names the file and line number."""


class WindowError(RuntimeError):
    """Windows cannot be drawn as configured (none left, or only N-rich ones)."""


@dataclass(frozen=True)
class Interval:
    """A 0-based half-open genome interval assigned to a split."""

    contig: str
    start: int
    end: int
    split: str

    def __len__(self) -> int:
        return self.end - self.start


def canonical_split(name: str) -> str:
    """Map a split name or alias (val, validation, training) to train/valid/test."""
    try:
        return SPLIT_ALIASES[str(name).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}") from None


def read_bed(path: str | os.PathLike, genome: Genome | None = None) -> list[Interval]:
    """Read ``contig start end split`` lines (extra columns ignored; #, track, browser skipped).

    With ``genome``, every interval is also checked against the contig lengths. Any bad line
    raises :class:`BedError` naming the file and the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise BedError(f"BED file not found: {path}")
    intervals: list[Interval] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith(("#", "track", "browser")):
                continue
            fields = text.split("\t") if "\t" in text else text.split()
            where = f"{path}, line {lineno}"
            if len(fields) < 4:
                raise BedError(f"{where}: expected 4 columns (contig, start, end, split), got {len(fields)}: {text[:80]!r}")
            contig, start_s, end_s, split_s = fields[:4]
            try:
                start, end = int(start_s), int(end_s)
            except ValueError:
                raise BedError(f"{where}: start and end must be integers, got {start_s!r} and {end_s!r}") from None
            if start < 0 or end <= start:
                raise BedError(f"{where}: need 0 <= start < end, got {contig}:{start}-{end}")
            try:
                split = canonical_split(split_s)
            except ValueError as err:
                raise BedError(f"{where}: {err}") from None
            if genome is not None:
                try:
                    genome.check_interval(contig, start, end)
                except GenomeError as err:
                    raise BedError(f"{where}: {err}") from None
            intervals.append(Interval(contig, start, end, split))
    if not intervals:
        raise BedError(f"{path}: no intervals")
    return intervals


def write_bed(intervals: Sequence[Interval], path: str | os.PathLike) -> None:
    """Write intervals as a 4-column BED, atomically (:mod:`dnadiff.atomic`)."""
    atomic_write_text("".join(f"{iv.contig}\t{iv.start}\t{iv.end}\t{iv.split}\n" for iv in intervals), path)


def block_split(index: int, period: int = 10, valid_block: int = 8, test_block: int = 9) -> str:
    """The block rule: block ``index`` of a contig -> valid / test / train (see module doc)."""
    r = index % period
    return "valid" if r == valid_block else "test" if r == test_block else "train"


def intervals_from_blocks(
    genome: Genome,
    split_block: int = 100_000,
    period: int = 10,
    valid_block: int = 8,
    test_block: int = 9,
    contigs: Sequence[str] | None = None,
) -> list[Interval]:
    """Tile contigs into ``split_block``-bp blocks and assign splits with :func:`block_split`."""
    if split_block <= 0:
        raise ValueError(f"split_block must be positive, got {split_block}")
    if not (0 <= valid_block < period and 0 <= test_block < period and valid_block != test_block):
        raise ValueError(f"need distinct valid_block and test_block in [0, {period}), got {valid_block}, {test_block}")
    names = list(genome.contigs) if contigs is None else list(contigs)
    out: list[Interval] = []
    for name in names:
        length = genome.contigs.get(name)
        if length is None:
            genome.check_interval(name, 0, 0)
        for i, start in enumerate(range(0, length, split_block)):
            end = min(start + split_block, length)
            out.append(Interval(name, start, end, block_split(i, period, valid_block, test_block)))
    return out


def intervals_from_chromosomes(genome: Genome, chromosomes: Mapping[str, Sequence[str]]) -> list[Interval]:
    """Whole contigs per split; contigs not named go to ``train`` unless ``train`` is listed."""
    assigned: dict[str, str] = {}
    for split, names in chromosomes.items():
        split = canonical_split(split)
        for name in names or ():
            genome.check_interval(name, 0, 0)
            if name in assigned and assigned[name] != split:
                raise ValueError(f"contig {name!r} is listed in both {assigned[name]} and {split}")
            assigned[name] = split
    explicit_train = any(canonical_split(s) == "train" for s in chromosomes)
    out = []
    for name, length in genome.contigs.items():
        split = assigned.get(name, None if explicit_train else "train")
        if split is not None:
            out.append(Interval(name, 0, length, split))
    return out


def make_intervals(
    genome: Genome,
    bed: str | os.PathLike | None = None,
    chromosomes: Mapping[str, Sequence[str]] | None = None,
    split_block: int = 100_000,
    period: int = 10,
    valid_block: int = 8,
    test_block: int = 9,
) -> list[Interval]:
    """Intervals from a BED, else from chromosome lists, else from the block rule."""
    if bed is not None:
        return read_bed(bed, genome)
    if chromosomes:
        return intervals_from_chromosomes(genome, chromosomes)
    return intervals_from_blocks(genome, split_block, period, valid_block, test_block)


def collate_windows(batch: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of window dicts key by key, with numpy.

    Why not torch's default collate: ``torch.stack`` runs on the intra-op thread pool, and on a
    loaded machine with few cores waking those threads cost up to ~40 ms per 2 MB batch
    (measured in bench/loader.py); ``np.stack`` is a single memcpy. Same output as the default.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    return {key: torch.from_numpy(np.stack([item[key].numpy() for item in batch])) for key in batch[0]}


def _contig_list(names: Iterable[str], shown: int = 5) -> str:
    """Distinct contig names in order of appearance, at most ``shown`` of them, for messages."""
    distinct = list(dict.fromkeys(names))
    more = f", ... ({len(distinct)} in all)" if len(distinct) > shown else ""
    return ", ".join(distinct[:shown]) + more


def n_fraction(ids: np.ndarray, n_id: int) -> float:
    """Fraction of N tokens in a window of ids."""
    return float(np.count_nonzero(ids == n_id)) / max(len(ids), 1)


class GenomeWindows(Dataset):
    """Windows of ``seq_len`` token ids from one split's intervals (see module doc).

    Items are ``{"input_ids": LongTensor(seq_len)}``; with ``return_coords=True`` also
    ``contig`` (index into :attr:`contig_names`), ``start`` and ``rc`` (reverse-complemented?).
    """

    def __init__(
        self,
        genome: Genome,
        intervals: Sequence[Interval],
        seq_len: int,
        *,
        train: bool,
        rc_aug: bool = False,
        shift: bool = True,
        max_shift: int | None = None,
        max_n_frac: float = 0.1,
        seed: int = 0,
        max_windows: int | None = None,
        tokenizer: Tokenizer | None = None,
        max_draws: int = 32,
        return_coords: bool = False,
    ) -> None:
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        if not 0.0 <= max_n_frac <= 1.0:
            raise ValueError(f"max_n_frac must be in [0, 1], got {max_n_frac}")
        if max_shift is not None and max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 or None, got {max_shift}")
        self.genome = genome
        self.tokenizer = tokenizer or Tokenizer()
        self.seq_len = int(seq_len)
        self.train = bool(train)
        self.rc_aug = bool(rc_aug) and self.train
        self.shift = bool(shift) and self.train
        self.max_shift = max_shift
        self.max_n_frac = float(max_n_frac)
        self.seed = int(seed)
        self.max_draws = int(max_draws)
        self.return_coords = bool(return_coords)
        for iv in intervals:
            genome.check_interval(iv.contig, iv.start, iv.end)
        kept = [iv for iv in intervals if len(iv) >= self.seq_len]
        self.n_dropped_short = len(intervals) - len(kept)
        self.contig_names: list[str] = sorted({iv.contig for iv in kept})
        cidx = {name: i for i, name in enumerate(self.contig_names)}
        self._iv_contig = np.array([cidx[iv.contig] for iv in kept], dtype=np.int64)
        self._iv_start = np.array([iv.start for iv in kept], dtype=np.int64)
        self._iv_end = np.array([iv.end for iv in kept], dtype=np.int64)
        slots = (self._iv_end - self._iv_start) // self.seq_len
        self._cum_slots = np.cumsum(slots)
        self.n_slots = int(self._cum_slots[-1]) if len(kept) else 0
        if self.n_slots == 0:
            longest = max(intervals, key=len, default=None)
            where = (f"; the longest is {longest.contig}:{longest.start}-{longest.end} ({len(longest)} bp)"
                     if longest is not None else "")
            raise WindowError(
                f"no window of {self.seq_len} bp fits in the {len(intervals)} interval(s) on contig(s) "
                f"{_contig_list(iv.contig for iv in intervals)}{where}; lower data.seq_len or give longer intervals"
            )
        self._rng_key: tuple | None = None
        self._gen: np.random.Generator | None = None
        self.n_dropped_n = 0
        if not self.train:
            self._build_eval_windows(max_windows)

    # ----------------------------------------------------------------- slots
    def _slot(self, k: int) -> tuple[int, int]:
        """(interval index, window start) of slot ``k``."""
        i = int(np.searchsorted(self._cum_slots, k, side="right"))
        before = int(self._cum_slots[i - 1]) if i else 0
        return i, int(self._iv_start[i]) + (k - before) * self.seq_len

    def _read(self, i: int, start: int) -> tuple[np.ndarray, float]:
        """Token ids of the window at ``start`` in interval ``i``, and its N fraction."""
        contig = self.contig_names[self._iv_contig[i]]
        ids = self.genome.fetch_ids(contig, start, start + self.seq_len, self.tokenizer)
        return ids, n_fraction(ids, self.tokenizer.n_id)

    def _build_eval_windows(self, max_windows: int | None) -> None:
        slots = np.arange(self.n_slots)
        if max_windows is not None and max_windows < self.n_slots:
            slots = np.unique(np.linspace(0, self.n_slots - 1, int(max_windows)).round().astype(np.int64))
        keep_iv, keep_start = [], []
        for k in slots.tolist():
            i, start = self._slot(k)
            if self._read(i, start)[1] <= self.max_n_frac:
                keep_iv.append(i)
                keep_start.append(start)
        self.n_dropped_n = len(slots) - len(keep_iv)
        if not keep_iv:
            contigs = _contig_list(self.contig_names[self._iv_contig[self._slot(k)[0]]] for k in slots.tolist())
            raise WindowError(
                f"all {len(slots)} evaluation windows (on contig(s) {contigs}) have more than "
                f"{self.max_n_frac:.0%} N; raise data.max_n_frac or choose other intervals"
            )
        self._eval_iv = np.array(keep_iv, dtype=np.int64)
        self._eval_start = np.array(keep_start, dtype=np.int64)

    def windows(self) -> list[tuple[str, int, int]]:
        """The evaluation windows as (contig, start, end); training windows are random."""
        if self.train:
            raise WindowError("training windows are drawn at random; windows() lists evaluation windows only")
        return [
            (self.contig_names[self._iv_contig[i]], int(s), int(s) + self.seq_len)
            for i, s in zip(self._eval_iv.tolist(), self._eval_start.tolist())
        ]

    # ----------------------------------------------------------------- randomness
    def _rng(self) -> np.random.Generator:
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._gen is None or self._rng_key != key:
            entropy = [self.seed] if info is None else [self.seed, int(info.seed)]
            self._gen = np.random.default_rng(entropy)
            self._rng_key = key
        return self._gen

    def _shifted(self, i: int, start: int, rng: np.random.Generator) -> int:
        lo, hi = int(self._iv_start[i]), int(self._iv_end[i]) - self.seq_len
        if not self.shift:
            return start
        if self.max_shift is None:
            return int(rng.integers(lo, hi + 1))
        return int(np.clip(start + rng.integers(-self.max_shift, self.max_shift + 1), lo, hi))

    # ----------------------------------------------------------------- Dataset API
    def __len__(self) -> int:
        return self.n_slots if self.train else len(self._eval_start)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        """Window ``k``; training windows draw from this process's (per-worker) random stream."""
        return self.sample(k, self._rng() if self.train else None)

    def sample(self, k: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        """Window ``k`` with its shift, N redraws and RC flip drawn from ``rng``.

        Pure in ``(k, rng state)``: a caller that seeds ``rng`` per sample (the training stream)
        gets reproducible, resumable windows whatever the worker layout. Evaluation windows
        ignore ``rng``.
        """
        if not 0 <= k < len(self):
            raise IndexError(f"window index {k} out of range (0..{len(self) - 1})")
        rc = False
        if self.train:
            if rng is None:
                raise ValueError("training windows need a random generator")
            slot = int(k)
            for _ in range(self.max_draws):
                i, start = self._slot(slot)
                start = self._shifted(i, start, rng)
                ids, n_frac = self._read(i, start)
                if n_frac <= self.max_n_frac:
                    break
                slot = int(rng.integers(self.n_slots))
            else:
                raise WindowError(
                    f"no training window with at most {self.max_n_frac:.0%} N in {self.max_draws} draws "
                    f"(last tried {self.contig_names[self._iv_contig[i]]}:{start}-{start + self.seq_len}); "
                    "raise max_n_frac or remove N-rich intervals"
                )
            if self.rc_aug and rng.random() < 0.5:
                ids = self.tokenizer.reverse_complement(ids)
                rc = True
        else:
            i, start = int(self._eval_iv[k]), int(self._eval_start[k])
            ids = self._read(i, start)[0]
        item = {"input_ids": torch.from_numpy(np.ascontiguousarray(ids))}
        if self.return_coords:
            item["contig"] = torch.tensor(int(self._iv_contig[i]))
            item["start"] = torch.tensor(start)
            item["rc"] = torch.tensor(rc)
        return item
