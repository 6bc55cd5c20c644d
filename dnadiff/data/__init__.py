"""The data path: genome -> intervals -> windows -> token ids, and the Genomic Benchmarks reader.

- :mod:`dnadiff.data.genome`: :class:`Genome`, lazy pyfaidx access to plain/bgzip FASTA.
- :mod:`dnadiff.data.windows`: intervals with splits (BED, chromosome lists, block rule) and
  the :class:`GenomeWindows` dataset (random shift, RC augmentation, N filter).
- :mod:`dnadiff.data.benchmarks`: Genomic Benchmarks tasks and batching of variable lengths;
  :mod:`dnadiff.data.labelled`: a task as labelled pretraining sequences.
- :mod:`dnadiff.data.sources`: :func:`data_source`, the genome or task a ``data`` config
  (:mod:`dnadiff.data.config`) describes.
- :mod:`dnadiff.data.stream`: the deterministic training stream and the evaluation noise;
  :mod:`dnadiff.data.datamodule`: the Lightning DataModule that serves them.
- :mod:`dnadiff.data.fasta`: FASTA records in and out.
"""

from dnadiff.data.benchmarks import (
    TASK_ALIASES,
    TASKS,
    BenchmarkDataError,
    SequenceCollator,
    SequenceDataset,
    available_splits,
    collate_sequences,
    list_tasks,
    load_task,
    resolve_task,
)
from dnadiff.data.genome import Genome, GenomeError
from dnadiff.data.windows import (
    BedError,
    GenomeWindows,
    Interval,
    WindowError,
    collate_windows,
    intervals_from_blocks,
    intervals_from_chromosomes,
    make_intervals,
    read_bed,
    write_bed,
)

__all__ = [
    "TASKS", "TASK_ALIASES", "BenchmarkDataError", "SequenceCollator", "SequenceDataset",
    "available_splits", "collate_sequences", "list_tasks", "load_task", "resolve_task",
    "Genome", "GenomeError", "BedError", "GenomeWindows", "Interval",
    "WindowError", "collate_windows", "intervals_from_blocks", "intervals_from_chromosomes", "make_intervals",
    "read_bed", "write_bed",
]

