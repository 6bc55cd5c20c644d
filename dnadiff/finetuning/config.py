"""The ``python -m dnadiff.finetune`` config: the task, the backbone, the head, the fit and the
cross-validation protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dnadiff.config import in_range, is_int, key, one_of, optional_positive_int, positive_int, require
from dnadiff.models.cnn import LOSSES as CNN_LOSSES
from dnadiff.models.heads import HEAD_TYPES, POOLING_MODES
from dnadiff.models.model_config import ModelConfig

AUTO_BOOL: tuple[Any, ...] = ("auto", True, False)


@dataclass
class FitConfig:
    """Optimisation of one fit (AdamW, epochs with per-epoch selection on the held-out fold)."""

    max_epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_batch_size: int = 128
    grad_clip: float = 1.0  # 0 = no clipping

    def validate(self, prefix: str = "trainer") -> None:
        for name in ("max_epochs", "batch_size", "eval_batch_size"):
            positive_int(getattr(self, name), key(prefix, name))
        require(self.lr > 0, f"{key(prefix, 'lr')} must be > 0, got {self.lr!r}")
        require(self.weight_decay >= 0, f"{key(prefix, 'weight_decay')} must be >= 0, got {self.weight_decay!r}")
        require(self.grad_clip >= 0, f"{key(prefix, 'grad_clip')} must be >= 0, got {self.grad_clip!r}")


@dataclass
class CNNConfig(FitConfig):
    """The Genomic Benchmarks CNN baseline and its fit, as the package trains it (Adam lr 1e-3, batch 64,
    embedding 100, its loss; see :mod:`dnadiff.models.cnn`). The package trains 10 epochs."""

    embedding_dim: int = 100
    batch_size: int = 64
    grad_clip: float = 0.0
    loss: str = "package"  # package (its BCE-with-logits of the sigmoid output, 2 classes) | cross_entropy

    def validate(self, prefix: str = "baseline_cnn") -> None:
        super().validate(prefix)
        positive_int(self.embedding_dim, key(prefix, "embedding_dim"))
        one_of(self.loss, key(prefix, "loss"), CNN_LOSSES)


@dataclass
class FinetuneDataConfig:
    """Where the task's sequences are and how many of them to use."""

    root: Optional[str] = None  # genomic-benchmarks layout folder; null = ~/.genomic_benchmarks (downloads)
    max_per_class: Optional[int] = None  # stratified subsample of the CV pool (CPU-sized runs)
    max_test_per_class: Optional[int] = None  # stratified subsample of the test split, when the task has one
    max_len: int = 1024  # longer sequences are centre-cropped

    def validate(self, prefix: str = "data") -> None:
        optional_positive_int(self.max_per_class, key(prefix, "max_per_class"))
        optional_positive_int(self.max_test_per_class, key(prefix, "max_test_per_class"))
        positive_int(self.max_len, key(prefix, "max_len"))


CV_PROTOCOLS: tuple[str, ...] = ("kfold", "seeds")
DEFAULT_SEEDS: dict[str, int] = {"kfold": 1, "seeds": 5}  # cv.seeds=null: runs per protocol (the papers: 5)


@dataclass
class CVConfig:
    """The evaluation protocol (see :mod:`dnadiff.finetuning.cv`): true K-fold cross-validation
    (``kfold``), or the Caduceus/MDLM papers' seeded 90/10 train/validation splits (``seeds``)."""

    protocol: str = "kfold"  # kfold | seeds
    folds: int = 5  # kfold: number of folds
    seeds: Any = None  # a count N (seeds seed .. seed+N-1), a list of seeds, or null = 1 (kfold) / 5 (seeds)
    seed: int = 0
    select_fraction: float = 0.1  # kfold, one-split tasks: slice of the training folds that selects the epoch
    valid_fraction: float = 0.1  # seeds: random share of the train split that selects the epoch (the papers: 0.1)
    test_fraction: float = 0.2  # seeds, one-split tasks: stratified share held out in place of the test split

    def validate(self, prefix: str = "cv") -> None:
        one_of(self.protocol, key(prefix, "protocol"), CV_PROTOCOLS)
        positive_int(self.folds, key(prefix, "folds"), minimum=2)
        seeds = self.seeds
        require(seeds is None or (is_int(seeds) and seeds >= 1)
                or (isinstance(seeds, (list, tuple)) and seeds and all(map(is_int, seeds))),
                f"{key(prefix, 'seeds')} must be null, a positive count or a non-empty list of integer seeds, "
                f"got {seeds!r}")
        for name in ("select_fraction", "valid_fraction", "test_fraction"):
            in_range(getattr(self, name), key(prefix, name), 0.0, 0.5, low_open=True, high_open=True)

    def seed_list(self) -> list[int]:
        """The seeds to run: ``seed .. seed + seeds - 1`` for a count (null: the protocol's default), else the list."""
        count = DEFAULT_SEEDS[self.protocol] if self.seeds is None else self.seeds
        if is_int(count):
            return [self.seed + i for i in range(count)]
        return [int(s) for s in count]


@dataclass
class HeadConfig:
    """Pooling and head on the backbone (see :class:`dnadiff.models.heads.SequenceClassifier`)."""

    pooling: str = "auto"  # auto (last for causal, else mean) | mean | last | max
    type: str = "linear"  # linear | mlp
    mlp_hidden: int = 64
    dropout: float = 0.1
    rc_invariant: Any = "auto"  # auto = true for Caduceus-PS (RC-invariant pooled features)
    conjoin: Any = "auto"  # auto = true for Caduceus-PH (average the logits of x and rc(x))
    freeze_backbone: bool = False  # true = linear probe

    def validate(self, prefix: str = "head") -> None:
        one_of(self.pooling, key(prefix, "pooling"), POOLING_MODES)
        one_of(self.type, key(prefix, "type"), HEAD_TYPES)
        positive_int(self.mlp_hidden, key(prefix, "mlp_hidden"))
        in_range(self.dropout, key(prefix, "dropout"), 0.0, 1.0, high_open=True)
        one_of(self.rc_invariant, key(prefix, "rc_invariant"), AUTO_BOOL)
        one_of(self.conjoin, key(prefix, "conjoin"), AUTO_BOOL)


@dataclass
class FinetuneConfig:
    """``python -m dnadiff.finetune``: fine-tune a backbone on a Genomic Benchmarks task, evaluated by
    K-fold CV (``cv.protocol=kfold``) or the papers' seeded splits (``cv.protocol=seeds``)."""

    task: str = "human_enhancers_cohn"  # a task name, an alias (enhancers, promoters, ...), or all
    ckpt: Optional[str] = None  # pretraining checkpoint or export; null = a fresh `model` (from scratch)
    model: ModelConfig = field(default_factory=ModelConfig)
    out_dir: str = "outputs/finetune"  # results go to out_dir/<task>/cv.json and cv.md
    baseline: bool = True  # also train the Genomic Benchmarks CNN on the same folds
    device: str = "cpu"
    progress: bool = True
    save_classifier: Optional[str] = None  # DIR: keep the best fold's classifier (safetensors + config.json)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    trainer: FitConfig = field(default_factory=FitConfig)
    baseline_cnn: CNNConfig = field(default_factory=CNNConfig)

    def validate(self, prefix: str = "") -> None:
        require(not (self.save_classifier and self.task == "all"),
                "save_classifier=DIR keeps one task's classifier; give a single task, not task=all")
