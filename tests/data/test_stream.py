"""The noise the training stream and the evaluation windows carry: stratified (antithetic) times.

SPEC section 4: training times are stratified over each global batch (t_i = (u + i / B) mod 1),
and every held-out window gets ``eval.draws`` draws whose times are stratified over the draws,
with token uniforms of their own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnadiff.data.config import DataConfig
from dnadiff.data.datamodule import PretrainDataModule
from dnadiff.data.stream import EvalNoiseDataset

BATCH = 8


def strata(values: torch.Tensor, n: int) -> list[int]:
    """The sorted stratum indices floor(n * v) of uniforms v in [0, 1)."""
    return sorted(int(v) for v in torch.floor(values.double() * n))


def train_batches(antithetic: bool, n: int = 4) -> list[dict[str, torch.Tensor]]:
    """The first n batches of the pretraining data module (embedded hg38 sample, 64 bp windows)."""
    dm = PretrainDataModule(DataConfig(seq_len=64, batch_size=BATCH), seed=3, max_steps=n, antithetic=antithetic)
    return list(dm.train_dataloader())[:n]


def test_training_times_are_stratified_over_each_batch() -> None:
    batches = train_batches(antithetic=True)
    assert len(batches) == 4
    offsets = []
    for batch in batches:
        t_u = batch["t_u"]
        assert t_u.shape == (BATCH,) and bool(((t_u >= 0) & (t_u < 1)).all())
        assert strata(t_u, BATCH) == list(range(BATCH)), t_u
        gaps = torch.diff(torch.sort(t_u.double()).values)
        torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / BATCH), rtol=0, atol=1e-6)
        offsets.append(float(t_u.min()))
        # token uniforms: one fresh U[0, 1) per token, not shared between rows
        assert batch["uniforms"].shape == batch["input_ids"].shape
        assert len(torch.unique(batch["uniforms"])) == batch["uniforms"].numel()
    assert len(set(offsets)) == len(offsets), "every batch draws its own offset u"


def test_iid_times_when_antithetic_is_off() -> None:
    batches = train_batches(antithetic=False)
    assert any(strata(b["t_u"], BATCH) != list(range(BATCH)) for b in batches)


def windows(n: int, length: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(7, 11, (length,), generator=g)} for _ in range(n)]


@pytest.mark.parametrize("draws", [1, 2, 5, 8])
def test_evaluation_draws_have_stratified_times_of_their_own(draws: int) -> None:
    ds = EvalNoiseDataset(windows(6), seed=11, draws=draws)
    items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item["t_u"].shape == (draws,) and item["uniforms"].shape == (draws, 16)
        assert strata(item["t_u"], draws) == list(range(draws))
        if draws > 1:  # each draw has its own token uniforms
            assert not torch.equal(item["uniforms"][0], item["uniforms"][1])
    assert len({float(item["t_u"].min()) for item in items}) == len(items), "every window draws its own offset"
    again = EvalNoiseDataset(windows(6), seed=11, draws=draws)[3]
    other = EvalNoiseDataset(windows(6), seed=12, draws=draws)[3]
    assert torch.equal(again["t_u"], items[3]["t_u"]) and torch.equal(again["uniforms"], items[3]["uniforms"])
    assert not torch.equal(other["uniforms"], items[3]["uniforms"])


def test_evaluation_time_uniforms_cover_the_unit_interval() -> None:
    """Pooled over many windows the draws' times are uniform on [0, 1) (a KS check)."""
    from scipy import stats

    ds = EvalNoiseDataset(windows(400, 4), seed=5, draws=4)
    pooled = np.concatenate([ds[i]["t_u"].numpy() for i in range(len(ds))])
    assert stats.kstest(pooled, "uniform").pvalue > 1e-3
