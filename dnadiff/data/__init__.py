"""The data path: genome -> intervals -> windows -> token ids, and the Genomic Benchmarks reader.

- :mod:`dnadiff.data.genome`: :class:`Genome`, lazy pyfaidx access to plain/bgzip FASTA.
- :mod:`dnadiff.data.windows`: intervals with splits (BED, chromosome lists, block rule) and
  the :class:`GenomeWindows` dataset (random shift, RC augmentation, N filter).
- :mod:`dnadiff.data.datamodule`: :class:`GenomeDataModule`, built from the ``data`` config.
- :mod:`dnadiff.data.benchmarks`: Genomic Benchmarks tasks and batching of variable lengths.
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
    "GenomeDataModule", "Genome", "GenomeError", "BedError", "GenomeWindows", "Interval",
    "WindowError", "collate_windows", "intervals_from_blocks", "intervals_from_chromosomes", "make_intervals",
    "read_bed", "write_bed",
]


def __getattr__(name: str):
    """Import the Lightning DataModule lazily: ``import dnadiff.data`` stays free of lightning."""
    if name == "GenomeDataModule":
        from dnadiff.data.datamodule import GenomeDataModule

        return GenomeDataModule
    raise AttributeError(f"module 'dnadiff.data' has no attribute {name!r}")
