"""Compute kernels behind the layers: the selective-scan backends and the causal convolution.

- ``scan.py``: ``selective_scan`` and its backends (``ref``, ``torch``, ``cuda``, ``cpu_fused``),
  the causal conv, and the choice of ``auto``.
- ``cpu_kernels.cpp``: fused CPU kernels, the selective scan (forward, and backward as a
  reverse-time scan per segment that recomputes the segment's states from a stored one) and the
  depthwise causal conv + SiLU, vectorised over channels and threaded with ``at::parallel_for``.
- ``build.py``: compiles that file just in time on first use with the system C++ compiler (no
  compiler is needed to install dnadiff) and caches it per machine; when it cannot, ``auto``
  falls back to the pure-PyTorch scan with a one-line notice.
- ``cpu_fused.py``: the autograd functions: ``selective_scan_cpu_fused`` (the scan alone, behind
  ``selective_scan(..., backend="cpu_fused")``) and ``fused_mixer_cpu`` (conv, projections, scan
  and gate of one or both directions of a mixer as one node, used by ``Mamba`` / ``BiMamba``).

The kernels run on torch's OpenMP runtime and thread count; in a forked data-loader worker they
follow torch's own rule (the worker's single intra-op thread).
"""
