"""Write a windows BED (contig, start, end, split) from any FASTA, offline.

    python -m data_prep.make_windows --fasta F --seq-len L --out windows.bed \
        [--bed intervals.bed | --split-block 100000 --split-period 10 --valid-block 8 --test-block 9] \
        [--max-n-frac 0.1]

Intervals come from ``--bed`` (a split BED) or the block rule of ``dnadiff.data.windows``;
each is tiled into non-overlapping windows of L bp, windows with more than ``--max-n-frac`` N
are left out, and the result is written atomically. The output is itself a split BED that
``GenomeDataModule(bed=windows.bed, seq_len=L)`` reads: one window per interval.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from dnadiff.data.genome import Genome
from dnadiff.data.windows import Interval, make_intervals, write_bed
from dnadiff.tokenizer import Tokenizer

CHUNK_BP = 1 << 23


def tile_windows(genome: Genome, intervals: list[Interval], seq_len: int, max_n_frac: float) -> list[Interval]:
    """Non-overlapping ``seq_len`` windows of each interval, without the N-rich ones."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    tok = Tokenizer()
    per_chunk = max(CHUNK_BP // seq_len, 1)
    out: list[Interval] = []
    for iv in intervals:
        n_win = len(iv) // seq_len
        for first in range(0, n_win, per_chunk):
            count = min(per_chunk, n_win - first)
            start = iv.start + first * seq_len
            ids = genome.fetch_ids(iv.contig, start, start + count * seq_len, tok).reshape(count, seq_len)
            n_frac = (ids == tok.n_id).mean(axis=1)
            for j in np.flatnonzero(n_frac <= max_n_frac).tolist():
                s = start + j * seq_len
                out.append(Interval(iv.contig, s, s + seq_len, iv.split))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.make_windows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", required=True, type=Path)
    parser.add_argument("--seq-len", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--bed", type=Path, default=None, help="split BED of intervals to tile (default: block rule)")
    parser.add_argument("--split-block", type=int, default=100_000)
    parser.add_argument("--split-period", type=int, default=10)
    parser.add_argument("--valid-block", type=int, default=8)
    parser.add_argument("--test-block", type=int, default=9)
    parser.add_argument("--max-n-frac", type=float, default=0.1)
    args = parser.parse_args(argv)
    try:
        genome = Genome(args.fasta)
        intervals = make_intervals(
            genome, args.bed, None, args.split_block, args.split_period, args.valid_block, args.test_block
        )
        windows = tile_windows(genome, intervals, args.seq_len, args.max_n_frac)
        if not windows:
            raise ValueError(f"no window of {args.seq_len} bp in {args.fasta} passes the filters")
        write_bed(windows, args.out)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    counts = {s: sum(w.split == s for w in windows) for s in ("train", "valid", "test")}
    print(f"{args.out}: {len(windows)} windows of {args.seq_len} bp ({counts}) from {os.fspath(args.fasta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
