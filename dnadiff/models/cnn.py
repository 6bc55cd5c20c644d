"""The Genomic Benchmarks paper's baseline CNN (Gresova et al., BMC Genomic Data 2023), exactly as
the genomic-benchmarks package defines it (``genomic_benchmarks/models/torch.py``, class ``CNN``).

Layers, with the package's module names (so its ``state_dict`` loads here unchanged):

- ``embeddings``: Embedding(vocab, embedding_dim=100);
- ``cnn_model``: Conv1d(emb, 16, 8) -> BatchNorm(16) -> ReLU -> MaxPool(2) -> Conv1d(16, 8, 8) ->
  BatchNorm(8) -> MaxPool(2) -> Conv1d(8, 4, 8) -> BatchNorm(4) -> MaxPool(2) -> Flatten. Only the
  first block has a ReLU (the second and third have none; the package is written that way);
- ``dense_model``: Linear(flatten, 512) -> Linear(512, outputs), no activation between them;
  outputs = 1 for two classes (the package applies a sigmoid to it), else ``num_classes``.

:meth:`forward` returns class logits (B, num_classes) so that the fine-tuning loop treats every
model alike: for two classes ``[0, z]``, whose softmax is ``[1 - sigmoid(z), sigmoid(z)]``, i.e.
class 1 gets the package's output probability. :meth:`package_output` is the package's own
output (sigmoid(z), or the raw logits for more classes).

Inputs are framed as the package's data pipeline frames them (``dataset_getters.utils``):
``<bos> sequence <eos>`` (dnadiff's [BOS] and [SEP]) and right padding, with the input length of
its ``check_seq_lengths`` (:func:`package_input_len`: longest + 2, or longest + 3 when lengths
vary). Token ids are dnadiff's (its vocabulary rows instead of a vocabulary built from the
training set: a relabelling of the embedding rows).

What dnadiff's CV adds around it (the same for every model it compares): the epoch is selected on
a validation set (the package trains a fixed number of epochs and keeps the last), and sequences
are centre-cropped to ``data.max_len``.

Training loss (:meth:`training_loss`): ``loss="package"`` is the package's, which for two classes
is ``binary_cross_entropy_with_logits`` applied to the sigmoid *output* (a sigmoid applied twice,
as in ``CNN.train_loop``); ``loss="cross_entropy"`` is the plain softmax cross-entropy of the
logits (for two classes, binary cross-entropy of z). For more classes both are the package's
``CrossEntropyLoss``. The package trains with Adam (lr 1e-3, no weight decay; dnadiff's AdamW with
weight_decay 0 is the same update), batch 64, 10 epochs (``experiments/utils``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnadiff.tokenizer import Tokenizer

CONV_CHANNELS: tuple[int, ...] = (16, 8, 4)
KERNEL_SIZE = 8
HIDDEN = 512
LOSSES: tuple[str, ...] = ("package", "cross_entropy")
FRAME_TOKENS = 2  # <bos> and <eos> around every sequence


def _conv_out_len(length: int) -> int:
    """Length after one conv (no padding) + max-pool(2) block."""
    return (length - KERNEL_SIZE + 1) // 2


def _flat_len(input_len: int) -> int:
    length = input_len
    for _ in CONV_CHANNELS:
        length = _conv_out_len(length)
    return length


def package_input_len(lengths: Sequence[int]) -> int:
    """The package's network input length for sequences of these lengths (``check_seq_lengths``):
    the longest plus <bos> and <eos>, plus one <pad> when the lengths vary."""
    longest = max(lengths)
    return longest + FRAME_TOKENS + (0 if min(lengths) == longest else 1)


class GenomicBenchmarksCNN(nn.Module):
    """The package's CNN on dnadiff token ids (B, L) -> class logits (B, num_classes); see the module doc."""

    def __init__(self, num_classes: int, input_len: int, vocab_size: int | None = None, embedding_dim: int = 100,
                 loss: str = "package") -> None:
        super().__init__()
        if _flat_len(input_len) < 1:
            raise ValueError(
                f"input_len={input_len} is too short for the Genomic Benchmarks CNN "
                f"(three conv(8)+pool(2) blocks need at least {self.min_input_len()} positions)"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if loss not in LOSSES:
            raise ValueError(f"unknown CNN loss {loss!r}; expected one of {', '.join(LOSSES)}")
        tok = Tokenizer()
        self.num_classes = int(num_classes)
        self.input_len = int(input_len)
        self.loss = loss
        self.pad_id, self.bos_id, self.eos_id = tok.pad_id, tok.bos_id, tok.sep_id
        self.embeddings = nn.Embedding(vocab_size or len(tok), embedding_dim)
        c1, c2, c3 = CONV_CHANNELS
        self.cnn_model = nn.Sequential(
            nn.Conv1d(embedding_dim, c1, KERNEL_SIZE, bias=True), nn.BatchNorm1d(c1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(c1, c2, KERNEL_SIZE, bias=True), nn.BatchNorm1d(c2), nn.MaxPool1d(2),
            nn.Conv1d(c2, c3, KERNEL_SIZE, bias=True), nn.BatchNorm1d(c3), nn.MaxPool1d(2),
            nn.Flatten(),
        )
        n_out = 1 if num_classes == 2 else num_classes
        self.dense_model = nn.Sequential(nn.Linear(c3 * _flat_len(input_len), HIDDEN), nn.Linear(HIDDEN, n_out))

    @staticmethod
    def min_input_len() -> int:
        """Shortest input that leaves at least one position after the three blocks."""
        n = 1
        while _flat_len(n) < 1:
            n += 1
        return n

    def frame(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``<bos> sequence <eos>`` per row of right-padded ids, padded (or cut) to ``input_len``."""
        body = input_ids[:, : self.input_len - FRAME_TOKENS]
        lengths = (body != self.pad_id).sum(dim=1)
        out = input_ids.new_full((input_ids.shape[0], self.input_len), self.pad_id)
        out[:, 0] = self.bos_id
        out[:, 1:1 + body.shape[1]] = body
        out[torch.arange(out.shape[0], device=out.device), 1 + lengths] = self.eos_id
        return out

    def raw(self, framed_ids: torch.Tensor) -> torch.Tensor:
        """The package's network before its output activation, on already framed ids (B, input_len)."""
        x = self.embeddings(framed_ids).transpose(1, 2)
        return self.dense_model(self.cnn_model(x))

    def package_output(self, framed_ids: torch.Tensor) -> torch.Tensor:
        """Exactly the package's ``CNN.forward``: sigmoid output (B, 1) for two classes, logits otherwise."""
        z = self.raw(framed_ids)
        return torch.sigmoid(z) if self.num_classes == 2 else z

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of right-padded dnadiff ids of any length."""
        z = self.raw(self.frame(input_ids))
        return torch.cat([torch.zeros_like(z), z], dim=1) if self.num_classes == 2 else z

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured training loss of :meth:`forward`'s logits (see the module doc)."""
        if self.num_classes == 2 and self.loss == "package":
            z = logits[:, 1] - logits[:, 0]
            return F.binary_cross_entropy_with_logits(torch.sigmoid(z), labels.float())
        return F.cross_entropy(logits.float(), labels)
