"""Shared fixtures: the real-data folder (found by dnadiff.resources) and a tokenizer."""

from __future__ import annotations

import os
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


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread: the test models are tiny, and on a busy 2-core machine two OpenMP threads
    per process (or per DDP rank) spin-wait on each other and run many times slower."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
