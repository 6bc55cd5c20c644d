"""Compute kernels behind the layers: the selective-scan backends and the causal convolution."""
