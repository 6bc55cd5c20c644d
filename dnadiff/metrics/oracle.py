"""Model-based sample metrics: generative perplexity under an AR model, and a classifier's view
(oracle class probabilities, embeddings for a Frechet distance).

Generative perplexity = exp(mean over all tokens of -log p_AR(x_i | [BOS] x_<i)), the AR
convention of :mod:`dnadiff.sampling.ar`. The classifier is any module ``f(input_ids) -> class
logits``; its embedding is ``f.features(input_ids)`` when it has that method (dnadiff's
``SequenceClassifier``), else the input of its last ``nn.Linear`` layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from dnadiff.device import model_device
from dnadiff.sampling.ar import ar_log_likelihood
from dnadiff.tokenizer import Tokenizer


def _batches(seqs: Sequence[str], batch_size: int, device: torch.device):
    tok = Tokenizer()
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        yield chunk, tok.encode_batch(chunk).to(device)


@torch.no_grad()
def generative_perplexity(model: nn.Module, seqs: Sequence[str], batch_size: int = 32) -> float:
    """exp(mean NLL per token) of ``seqs`` under a causal model (sequences batched by equal length)."""
    if not seqs:
        raise ValueError("generative perplexity needs at least one sequence")
    device = model_device(model)
    by_len: dict[int, list[str]] = {}
    for s in seqs:
        by_len.setdefault(len(s), []).append(s)
    total, n_tokens = 0.0, 0
    for group in by_len.values():
        for chunk, ids in _batches(group, batch_size, device):
            total -= float(ar_log_likelihood(model, ids).sum())
            n_tokens += ids.numel()
    return float(np.exp(total / n_tokens))


@torch.no_grad()
def classifier_outputs(
    classifier: nn.Module, seqs: Sequence[str], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (N, C), embeddings (N, D)) of ``seqs`` (batched by equal length)."""
    device = model_device(classifier)
    last_linear = None
    if not hasattr(classifier, "features"):
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "classifier has neither a features() method nor an nn.Linear layer to take embeddings from"
            )
        last_linear = linears[-1]
    probs, feats = [None] * len(seqs), [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        lengths = {len(seqs[i]) for i in idx}
        groups = [[i for i in idx if len(seqs[i]) == n] for n in sorted(lengths)]
        for group in groups:
            ids = Tokenizer().encode_batch([seqs[i] for i in group]).to(device)
            captured: list[torch.Tensor] = []
            handle = None
            if last_linear is not None:
                handle = last_linear.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
            try:
                logits = classifier(ids)
                emb = classifier.features(ids) if last_linear is None else captured[0]
            finally:
                if handle is not None:
                    handle.remove()
            p = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            e = emb.float().reshape(len(group), -1).cpu().numpy()
            for j, i in enumerate(group):
                probs[i], feats[i] = p[j], e[j]
    return np.stack(probs), np.stack(feats)
