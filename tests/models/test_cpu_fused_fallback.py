"""The fallback of the ``cpu_fused`` backend, which must work on a machine without a (working)
C++ compiler: ``auto`` runs the ``torch`` scan and says why once, in one line; an explicit
``cpu_fused`` request raises a one-line :class:`ScanBackendError`. These tests need no compiler
(they fake a broken one), so they run everywhere, unlike ``test_cpu_fused.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dnadiff.models.kernels.scan import BACKEND_ENV

REPO = Path(__file__).resolve().parents[2]


_FALLBACK_SCRIPT = """
import json, warnings, torch
from dnadiff.models import build_model
from dnadiff.models.kernels.scan import resolve_backend, selective_scan, ScanBackendError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = build_model("caduceus_ps", d_model=16, n_layer=1)
    ids = torch.randint(0, 4, (2, 20))
    logits = model(ids)
    logits = model(ids)
backend = resolve_backend("auto", ids)
model.scan_backend = "torch"
same = torch.allclose(model(ids), logits, rtol=1e-5, atol=1e-6)
try:
    selective_scan(torch.ones(1, 2, 3), torch.ones(1, 2, 3), -torch.ones(2, 4), torch.ones(1, 4, 3),
                   torch.ones(1, 4, 3), backend="cpu_fused")
    err = ""
except ScanBackendError as exc:
    err = str(exc)
notes = [str(w.message) for w in caught if "cpu_fused" in str(w.message)]
print(json.dumps({"backend": backend, "same": same, "notes": notes, "error": err}))
"""


def _run_fallback(tmp_path: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != BACKEND_ENV}
    full.update(env, DNADIFF_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True, text=True, env=full,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_no_compiler_falls_back_to_torch_with_one_notice(tmp_path: Path) -> None:
    """A compiler that fails (as on a machine without one that works): auto runs the torch scan,
    says so once in one line, and an explicit cpu_fused request raises a one-line error."""
    fake = tmp_path / "broken-c++"
    fake.write_text("#!/bin/sh\necho 'error: this compiler is broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = _run_fallback(tmp_path, CXX=str(fake))
    assert out["backend"] == "torch" and out["same"]
    assert len(out["notes"]) == 1 and "\n" not in out["notes"][0]
    assert "compiling cpu_kernels.cpp failed: error: this compiler is broken" in out["notes"][0]
    assert "scan backend 'cpu_fused' is unavailable" in out["error"] and "\n" not in out["error"]
    disabled = _run_fallback(tmp_path, DNADIFF_CPU_KERNELS="0")
    assert disabled["backend"] == "torch" and "disabled by DNADIFF_CPU_KERNELS=0" in disabled["notes"][0]
