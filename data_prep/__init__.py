"""Data preparation: downloads (hg38, the HG38 split BED, Genomic Benchmarks) and offline window BEDs.

Entry points: ``python -m data_prep.download`` and ``python -m data_prep.make_windows``
(see data_prep/README.md).
"""
