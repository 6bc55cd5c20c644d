"""Shared fixtures: the real-data folder (found by dnadiff.resources) and a tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dnadiff import Tokenizer
from dnadiff.resources import shared_data_dir, shared_data_missing_reason


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; the test skips, saying why, when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(shared_data_missing_reason())
    return path


@pytest.fixture(scope="session")
def hg38_fasta(shared_data: Path) -> Path:
    """Plain FASTA of hg38 chr2:1-2,000,000."""
    return shared_data / "genome" / "hg38_chr2_1-2000000.fa"


@pytest.fixture(scope="session")
def hg38_fasta_gz(shared_data: Path) -> Path:
    """bgzip-compressed FASTA of hg38 chr2:1-2,000,000."""
    return shared_data / "genome" / "hg38_chr2_1-2000000.fa.gz"


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
