"""The Genomic Benchmarks paper's baseline CNN (Gresova et al., BMC Genomic Data 2023).

Architecture as in the genomic-benchmarks package (``genomic_benchmarks/models/torch.py``):
embedding (dim 100) -> three blocks of [Conv1d(kernel 8) -> BatchNorm -> ReLU -> MaxPool(2)]
with 16, 8 and 4 channels -> flatten -> Linear(512) -> Linear(out). The input length is fixed
(the flatten size depends on it), so batches are padded or cut to ``input_len``.

One difference, documented: the package's binary model has one sigmoid output trained with
binary cross-entropy; here every task uses ``num_classes`` logits with softmax cross-entropy,
which for two classes is the same model family (the sigmoid of the logit difference) and lets
the same code run the 3-class human_ensembl_regulatory task. The paper trains with Adam
(lr 1e-3), batch size 32-64, for about 10-15 epochs (the package's experiment notebooks).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dnadiff.tokenizer import Tokenizer

CONV_CHANNELS: tuple[int, ...] = (16, 8, 4)
KERNEL_SIZE = 8
HIDDEN = 512


def _conv_out_len(length: int) -> int:
    """Length after one conv (no padding) + max-pool(2) block."""
    return (length - KERNEL_SIZE + 1) // 2


class GenomicBenchmarksCNN(nn.Module):
    """Baseline CNN on token ids (B, input_len) -> logits (B, num_classes)."""

    def __init__(self, num_classes: int, input_len: int, vocab_size: int | None = None, embedding_dim: int = 100) -> None:
        super().__init__()
        length = input_len
        for _ in CONV_CHANNELS:
            length = _conv_out_len(length)
        if length < 1:
            raise ValueError(
                f"input_len={input_len} is too short for the Genomic Benchmarks CNN "
                f"(three conv(8)+pool(2) blocks need at least {self.min_input_len()} positions)"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.input_len = int(input_len)
        self.pad_id = Tokenizer().pad_id
        self.embeddings = nn.Embedding(vocab_size or len(Tokenizer()), embedding_dim)
        blocks: list[nn.Module] = []
        c_in = embedding_dim
        for c_out in CONV_CHANNELS:
            blocks += [nn.Conv1d(c_in, c_out, KERNEL_SIZE), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, HIDDEN), nn.Linear(HIDDEN, num_classes))

    @staticmethod
    def min_input_len() -> int:
        """Shortest input that leaves at least one position after the three blocks."""
        n = 1
        while True:
            length = n
            for _ in CONV_CHANNELS:
                length = _conv_out_len(length)
            if length >= 1:
                return n
            n += 1

    def fit_length(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Right-pad with pad ids, or cut, to ``input_len``."""
        length = input_ids.shape[1]
        if length >= self.input_len:
            return input_ids[:, : self.input_len]
        pad = input_ids.new_full((input_ids.shape[0], self.input_len - length), self.pad_id)
        return torch.cat([input_ids, pad], dim=1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of right-padded ids of any length (fitted to ``input_len``)."""
        x = self.embeddings(self.fit_length(input_ids)).transpose(1, 2)
        return self.classifier(self.convs(x))
