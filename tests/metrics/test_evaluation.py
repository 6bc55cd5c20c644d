"""``python -m dnadiff.evaluate``: the figure it reports and its standard errors.

- The figure is the EMA weights' bound averaged over all ``eval.draws`` draws of every window,
  checked against a computation from the windows, the noise and the weights themselves.
- The window-clustered standard error matches the spread of independent evaluations (fresh
  windows from the genome and fresh noise) and a jackknife over windows; the Monte Carlo standard
  error matches the spread of re-evaluations of the same windows with other noise seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from dnadiff import Tokenizer
from dnadiff.checkpoint import load_model, read_metadata
from dnadiff.config import to_typed
from dnadiff.data.config import DataConfig
from dnadiff.data.genome import Genome
from dnadiff.data.sources import data_source
from dnadiff.data.stream import EvalNoiseDataset
from dnadiff.data.windows import collate_windows
from dnadiff.metrics.config import EvaluateConfig
from dnadiff.metrics.likelihood import HeldoutNLL
from dnadiff.objectives import build_objective
from tests.train.test_pretrain import make_cfg, run_pretrain

TOK = Tokenizer()
DRAWS, WINDOWS = 3, 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, hg38_fasta: Path) -> Path:
    """A tiny MDLM trained for 6 steps with a large learning rate: its EMA and raw weights differ."""
    out = tmp_path_factory.mktemp("eval_ckpt")
    cfg = make_cfg(out, hg38_fasta, "trainer.max_steps=6", "trainer.val_check_interval=6",
                   "trainer.checkpoint_every=6", "optim.lr=1e-2", "optim.warmup_steps=1", "model.d_model=16",
                   "model.n_layer=1", "data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=4")
    run_pretrain(cfg)
    return out / "last.ckpt"


def eval_cfg(ckpt: Path, fasta: Path, out: Path, draws: int = DRAWS, seed: int = 99) -> EvaluateConfig:
    return to_typed({"ckpt": str(ckpt), "split": "test", "out": str(out), "device": "cpu",
                     "data": {"fasta": str(fasta), "seq_len": 64, "max_eval_windows": WINDOWS, "eval_batch_size": 5},
                     "eval": {"draws": draws, "seed": seed}}, EvaluateConfig)


def reference_nats(ckpt: Path, fasta: Path, use_ema: bool, draws: int, seed: int) -> float:
    """The bound per token computed here: the checkpoint's weights on the test windows, ``draws`` noise draws each."""
    meta = read_metadata(ckpt)
    objective = build_objective(meta["objective"], TOK)
    model = load_model(ckpt, use_ema=use_ema)
    windows = data_source(DataConfig(fasta=str(fasta), seq_len=64, max_eval_windows=WINDOWS)).dataset("test")
    noise = EvalNoiseDataset(windows, seed, draws)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(len(noise)):
            item = noise[i]
            assert item["t_u"].shape == (draws,)
            batch = {k: v.unsqueeze(0) for k, v in item.items() if torch.is_tensor(v)}
            out = objective.eval_batch(model, batch)
            total += float(out.per_sequence.sum())
            tokens += int(out.n_tokens)
    return total / tokens


def test_evaluate_reports_the_ema_bound_over_all_draws(checkpoint: Path, hg38_fasta: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from dnadiff.evaluate import evaluate

    report = evaluate(eval_cfg(checkpoint, hg38_fasta, tmp_path / "eval.json"))
    printed = capsys.readouterr().out
    ema = reference_nats(checkpoint, hg38_fasta, True, DRAWS, 99)
    assert report["nats_per_token"] == pytest.approx(ema, rel=1e-5)
    # the alternatives a bug would report are far from it (so the check above has power)
    raw = reference_nats(checkpoint, hg38_fasta, False, DRAWS, 99)
    one = reference_nats(checkpoint, hg38_fasta, True, 1, 99)
    se = report["nats_per_token_stderr"]
    assert abs(raw - ema) > 1e-3 * ema and abs(one - ema) > 1e-4 * ema, (raw, one, ema)
    assert report["n_windows"] == WINDOWS and report["n_tokens"] == WINDOWS * 64 and report["draws_per_window"] == DRAWS
    assert report["ema"] is True and report["is_bound"] is True
    # standard errors: in the JSON and on the printed line (nats/token and bits/base)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk["nats_per_token_stderr"] == se and 0 < on_disk["nats_per_token_mc_stderr"] and 0 < se < 0.5
    line = printed.strip().splitlines()[-1]
    assert f"+- {se:.4f} nats/token" in line and f"+- {se / math.log(2):.4f} bits/base" in line, line
    # the bound's parts add up to it; the prior term is alpha_1 = eps times an all-mask CE near log 4
    terms = report["bound_terms_nats_per_token"]
    assert sum(terms.values()) == pytest.approx(report["nats_per_token"], rel=1e-6)
    assert 1e-3 * 1.0 < terms["prior"] < 1e-3 * 2.0 and terms["reconstruction"] >= 0


class GCModel(nn.Module):
    """x_theta puts 0.49 on C and on G, 0.01 on A and on T whatever z is: windows differ a lot in difficulty."""

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.full((*z.shape, len(TOK)), -30.0)
        logits[..., [TOK.token_to_id["A"], TOK.token_to_id["T"]]] = math.log(0.01)
        logits[..., [TOK.token_to_id["C"], TOK.token_to_id["G"]]] = math.log(0.49)
        return logits


class WindowSampler:
    """i.i.d. windows of 32 bp (no N) at uniform positions of the real chr2 slice: the population."""

    def __init__(self, fasta: Path, seed: int) -> None:
        self.genome = Genome(fasta)
        self.size = self.genome.contigs["chr2"]
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int, length: int = 32) -> list[dict[str, torch.Tensor]]:
        out = []
        while len(out) < n:
            start = int(self.rng.integers(0, self.size - length))
            seq = self.genome.fetch("chr2", start, start + length)
            if "N" not in seq.upper():
                out.append({"input_ids": TOK.encode_batch([seq])[0]})
        return out


def heldout(model: nn.Module, windows: list[dict[str, torch.Tensor]], seed: int, draws: int) -> HeldoutNLL:
    objective = build_objective({"name": "mdlm"}, TOK)
    totals = HeldoutNLL()
    loader = DataLoader(EvalNoiseDataset(windows, seed, draws), batch_size=8, collate_fn=collate_windows)
    with torch.no_grad():
        for batch in loader:
            totals.add(objective.eval_batch(model, batch))
    return totals


def figure(totals: HeldoutNLL) -> float:
    y, n = totals.sums()
    return float(y / n)


def test_window_clustered_standard_error_matches_independent_evaluations(hg38_fasta: Path) -> None:
    model, windows, draws, repeats = GCModel(), 16, 16, 80
    sampler = WindowSampler(hg38_fasta, 0)
    runs = [heldout(model, sampler.draw(windows), 100 + r, draws) for r in range(repeats)]
    spread = float(np.std([figure(t) for t in runs], ddof=1))
    reported = math.sqrt(np.mean([t.standard_error() ** 2 for t in runs]))
    assert 0.75 < spread / reported < 1.33, (spread, reported)
    # power: the SE that treats every draw as an independent observation is far too small here
    naive = []
    for t in runs:
        draws_per_token = torch.cat(t._draws) / 32
        naive.append(float(draws_per_token.std() / math.sqrt(draws_per_token.numel())))
    assert spread / math.sqrt(np.mean(np.square(naive))) > 1.5


def test_window_clustered_standard_error_equals_the_jackknife(hg38_fasta: Path) -> None:
    totals = heldout(GCModel(), WindowSampler(hg38_fasta, 1).draw(64), 7, 4)
    y, n = (v.numpy() for v in totals.per_window())
    leave_out = (y.sum() - y) / (n.sum() - n)
    w = len(y)
    jackknife = math.sqrt((w - 1) / w * ((leave_out - leave_out.mean()) ** 2).sum())
    assert totals.standard_error() == pytest.approx(jackknife, rel=0.05)


def test_monte_carlo_standard_error_matches_re_evaluations_of_the_same_windows(hg38_fasta: Path) -> None:
    model, draws, repeats = GCModel(), 16, 80
    windows = WindowSampler(hg38_fasta, 2).draw(16)
    runs = [heldout(model, windows, 500 + r, draws) for r in range(repeats)]
    spread = float(np.std([figure(t) for t in runs], ddof=1))
    mc = math.sqrt(np.mean([t.mc_standard_error() ** 2 for t in runs]))
    clustered = math.sqrt(np.mean([t.standard_error() ** 2 for t in runs]))
    assert 0.7 < spread / mc < 1.4, (spread, mc)
    assert mc < 0.75 * clustered, (mc, clustered)  # the windows' own spread is part of the clustered SE
