"""Paper-style experiments: each module is a ``python -m dnadiff.experiments.NAME`` script that runs
a comparison end to end and writes its table (JSON + Markdown) and plots, with the machine it ran
on, under ``bench/results/`` (:mod:`dnadiff.experiments.record`).

- :mod:`~dnadiff.experiments.hg38_table`: objectives compared on held-out hg38 windows;
- :mod:`~dnadiff.experiments.finetune_cv`: fine-tuning cross-validation tables;
- :mod:`~dnadiff.experiments.sampling`: sample quality and cost of the samplers.

Speed benchmarks live in ``bench/`` and share :mod:`~dnadiff.experiments.record` for the machine
description and result writing.
"""
