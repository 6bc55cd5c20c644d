"""Shared fixtures: the real-data folder (found by dnadiff.resources) and a tokenizer."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

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


MAMBA_SSM_CPU_INSTALL = (
    "MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE "
    "CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation --no-deps "
    "mamba-ssm==2.3.2.post1 causal-conv1d==1.7.0 einops  (what .ci/run does)"
)


@pytest.fixture(scope="session")
def mamba_ssm_reference() -> SimpleNamespace:
    """mamba-ssm's and causal-conv1d's own pure-PyTorch code, loaded on a machine without their kernels.

    A kernel-less install (see ``MAMBA_SKIP_CUDA_BUILD``) has the Python sources but cannot be
    imported: ``selective_scan_cuda``, ``causal_conv1d_cuda`` and triton are missing. The modules
    needed here are loaded with those three replaced by empty stand-ins (``mamba_ssm/__init__``,
    which imports everything, is bypassed), and the kernel entry points that the reference code
    calls are pointed at the packages' own references: ``selective_scan_fn`` ->
    ``selective_scan_ref``, ``causal_conv1d_fn`` -> ``causal_conv1d_ref``. sys.modules is restored
    afterwards, so dnadiff itself still sees mamba-ssm as unusable.

    Returns a namespace with ``selective_scan_ref``, ``mamba_inner_ref``, ``causal_conv1d_ref`` and
    ``Mamba`` (mamba_ssm.modules.mamba_simple.Mamba, slow path on CPU unless told otherwise).
    """
    specs = {name: importlib.util.find_spec(name) for name in ("mamba_ssm", "causal_conv1d", "einops")}
    missing = [name for name, spec in specs.items() if spec is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; for these checks install the sources: {MAMBA_SSM_CPU_INSTALL}")
    def ours(name: str) -> bool:
        return name.split(".")[0] in ("mamba_ssm", "causal_conv1d", "selective_scan_cuda")

    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    try:
        for name in ("mamba_ssm", "causal_conv1d"):  # packages without running their __init__
            pkg = types.ModuleType(name)
            pkg.__path__ = list(specs[name].submodule_search_locations)
            sys.modules[name] = pkg
        layer_norm = types.ModuleType("mamba_ssm.ops.triton.layer_norm")
        layer_norm._layer_norm_fwd = None
        for name, module in {
            "selective_scan_cuda": types.ModuleType("selective_scan_cuda"),
            "causal_conv1d.cpp_functions": types.ModuleType("causal_conv1d.cpp_functions"),
            "mamba_ssm.ops.triton": types.ModuleType("mamba_ssm.ops.triton"),
            "mamba_ssm.ops.triton.layer_norm": layer_norm,
        }.items():
            sys.modules[name] = module
        for attr in ("causal_conv1d_fwd_function", "causal_conv1d_bwd_function", "causal_conv1d_update_function"):
            setattr(sys.modules["causal_conv1d.cpp_functions"], attr, None)
        conv = importlib.import_module("causal_conv1d.causal_conv1d_interface")
        ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    finally:  # drop the stand-ins and what was loaded under them; anything else imported stays
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
    ssi.selective_scan_fn = ssi.selective_scan_ref
    ssi.causal_conv1d_fn = conv.causal_conv1d_ref
    simple.selective_scan_fn = ssi.selective_scan_ref
    simple.mamba_inner_fn = ssi.mamba_inner_ref
    return SimpleNamespace(
        selective_scan_ref=ssi.selective_scan_ref,
        mamba_inner_ref=ssi.mamba_inner_ref,
        causal_conv1d_ref=conv.causal_conv1d_ref,
        Mamba=simple.Mamba,
        mamba_simple=simple,
    )
