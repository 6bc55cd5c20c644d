"""Restrict a mamba-ssm / causal-conv1d setup.py to one GPU architecture (default sm_90).

The stock setup.py compiles every kernel for ~9 architectures, which takes far too long on a
lent machine; an H100 only needs sm_90. Usage: python patch_gencode.py setup.py [90]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PAIR = re.compile(r'cc_flag\.append\("-gencode"\)\n(\s*)cc_flag\.append\("arch=compute_\w+,code=sm_\w+"\)')


def patch(text: str, arch: str) -> str:
    """Keep the first -gencode pair, retargeted to ``arch``; turn the others into ``pass``."""
    count = 0

    def repl(m: re.Match) -> str:
        nonlocal count
        count += 1
        if count == 1:
            return f'cc_flag.append("-gencode")\n{m.group(1)}cc_flag.append("arch=compute_{arch},code=sm_{arch}")'
        return f"pass\n{m.group(1)}pass"

    out = PAIR.sub(repl, text)
    if count == 0:
        raise SystemExit("no -gencode pairs found: setup.py layout changed, patch by hand")
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1])
    arch = sys.argv[2] if len(sys.argv) > 2 else "90"
    path.write_text(patch(path.read_text(), arch))
    print(f"{path}: gencode restricted to sm_{arch}")
