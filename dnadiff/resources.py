"""Where dnadiff finds its data: the embedded real sample and the shared real-data folder.

One helper finds the shared data folder (tests and benchmarks read real data from it) so that
every caller skips or fails with the same clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_SAMPLE_FASTA = ASSETS / "hg38_chr2_1-2000000.fa.gz"
SHARED_DATA_ENV = "DNADIFF_SHARED_DATA"


def default_fasta() -> Path:
    """The embedded real sample: hg38 chr2:1-2,000,000, bgzip-compressed (see assets/README.md)."""
    return DEFAULT_SAMPLE_FASTA


def shared_data_dir() -> Path | None:
    """The shared real-data folder, or None.

    Looks at ``$DNADIFF_SHARED_DATA`` first, then for ``shared/data`` beside (or inside) the
    checkout and beside the current directory.
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    repo = Path(__file__).resolve().parents[1]
    for base in (repo.parent, repo, Path.cwd().parent, Path.cwd()):
        cand = base / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def shared_data_missing_reason() -> str:
    """The sentence tests print when they skip for want of the shared data folder."""
    return (
        f"shared real-data folder not found: set ${SHARED_DATA_ENV} or place 'shared/data' beside the "
        "checkout (see README, 'Real data')"
    )
