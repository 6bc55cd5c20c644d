"""Download the real data: hg38 (UCSC, re-compressed to bgzip and indexed), the HG38 split BED
of HyenaDNA/Caduceus/MDLM, and Genomic Benchmarks tasks.

    python -m data_prep.download --out data [--what hg38,bed,benchmarks] [--tasks enhancers,ocr]

Layout written under OUT: ``hg38/hg38.fa.gz`` (+ ``.fai``, ``.gzi``), ``hg38/human-sequences.bed``,
``genomic_benchmarks/<task>/{train,test}/<class>/*.txt`` -- what ``configs/data/hg38.yaml``
(``DNADIFF_DATA_DIR=OUT``) and ``load_task(..., root=OUT/genomic_benchmarks)`` read.
Every step is resumable and leaves nothing half-written (see data_prep/fetch.py).
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path

from tqdm import tqdm

from data_prep.fetch import CHUNK, DownloadError, download
from dnadiff.data.benchmarks import TASKS, BenchmarkDataError, resolve_task
from dnadiff.data.genome import Genome
from dnadiff.data.windows import BedError, read_bed

HG38_URL = "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/hg38.fa.gz"
HG38_MD5_URL = "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/md5sum.txt"
# The Basenji train/valid/test intervals that HyenaDNA and Caduceus publish as human-sequences.bed
# (their data instructions: curl .../sequences_human.bed > data/hg38/human-sequences.bed).
BED_URL = "https://storage.googleapis.com/basenji_barnyard2/sequences_human.bed"
WHAT = ("hg38", "bed", "benchmarks")


def md5_from_listing(listing: str | os.PathLike, name: str) -> str | None:
    """The md5 of ``name`` in an ``md5sum``-format listing (UCSC's md5sum.txt), or None."""
    for line in Path(listing).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    return None


def gzip_to_bgzip(src: str | os.PathLike, dest: str | os.PathLike, progress: bool = True) -> Path:
    """Re-compress a (plain) gzip file as BGZF for random access, through ``dest.part``."""
    from Bio import bgzf

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        with gzip.open(src, "rb") as inp, bgzf.BgzfWriter(str(part), "wb") as out, tqdm(
            unit="B", unit_scale=True, desc=f"bgzip {dest.name}", disable=not progress
        ) as bar:
            for chunk in iter(lambda: inp.read(CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
        os.replace(part, dest)
    except (OSError, EOFError) as err:
        raise DownloadError(f"{src}: cannot re-compress to BGZF ({err})") from None
    finally:
        if part.exists():
            part.unlink()
    return dest


def fetch_hg38(
    out: Path, url: str = HG38_URL, md5_url: str | None = HG38_MD5_URL, keep_raw: bool = False, progress: bool = True
) -> Path:
    """hg38.fa.gz from UCSC (md5-checked against UCSC's listing), bgzipped and indexed."""
    folder = out / "hg38"
    final = folder / "hg38.fa.gz"
    if final.is_file():
        Genome(final)
        return final
    name = url.rstrip("/").rsplit("/", 1)[-1]
    md5 = None
    if md5_url:
        listing = download(md5_url, folder / "md5sum.txt", progress=False)
        md5 = md5_from_listing(listing, name)
        if md5 is None:
            raise DownloadError(f"{md5_url}: no checksum listed for {name}")
    raw = download(url, folder / f"raw.{name}", md5=md5, progress=progress)
    gzip_to_bgzip(raw, final, progress=progress)
    Genome(final)  # builds .fai and .gzi atomically
    if not keep_raw:
        raw.unlink()
    return final


def fetch_bed(out: Path, url: str = BED_URL, sha256: str | None = None, progress: bool = True) -> Path:
    """The HG38 split BED; checked line by line (deleted again if malformed)."""
    dest = download(url, out / "hg38" / "human-sequences.bed", sha256=sha256, progress=progress)
    try:
        read_bed(dest)
    except BedError:
        dest.unlink()
        raise
    return dest


def fetch_benchmarks(out: Path, tasks: list[str]) -> Path:
    """Genomic Benchmarks tasks via the genomic-benchmarks package (needs internet)."""
    try:
        from genomic_benchmarks.loc2seq import download_dataset
    except ImportError:
        raise BenchmarkDataError(
            "the genomic-benchmarks package is not installed: `pip install genomic-benchmarks` "
            "(or `pip install dnadiff[benchmarks]`), then run again"
        ) from None
    root = out / "genomic_benchmarks"
    root.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        if (root / task).is_dir():
            continue
        download_dataset(task, dest_path=root)
    return root


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--what", default="hg38,bed,benchmarks", help=f"comma list of {', '.join(WHAT)}")
    parser.add_argument("--tasks", default=",".join(TASKS), help="Genomic Benchmarks tasks (names or aliases)")
    parser.add_argument("--hg38-url", default=HG38_URL)
    parser.add_argument("--hg38-md5-url", default=HG38_MD5_URL, help="md5sum listing; '' to skip the check")
    parser.add_argument("--bed-url", default=BED_URL)
    parser.add_argument("--bed-sha256", default=None, help="expected sha256 of the BED, when known")
    parser.add_argument("--keep-raw", action="store_true", help="keep the plain-gzip hg38 after bgzipping")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = sorted(set(what) - set(WHAT))
    if unknown:
        parser.error(f"unknown --what {unknown}; choose from {', '.join(WHAT)}")
    try:
        tasks = [resolve_task(t) for t in args.tasks.split(",") if t.strip()]
        if "hg38" in what:
            print(fetch_hg38(args.out, args.hg38_url, args.hg38_md5_url or None, args.keep_raw, not args.quiet))
        if "bed" in what:
            print(fetch_bed(args.out, args.bed_url, args.bed_sha256, not args.quiet))
        if "benchmarks" in what:
            print(fetch_benchmarks(args.out, tasks))
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
