"""Confidence-ordered and ReMDM samplers, and float64 draws (issue 16): whole-chain output
distributions against an exact recursion with a z-dependent exact oracle, one-step marginals,
the forward-process masked fraction, carry-over, cached = uncached, and the CLI."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from dnadiff import Tokenizer, build_model
from dnadiff.data.languages import HairpinLanguage, Language, LanguageDenoiser, MarkovLanguage, Site, SiteChain
from dnadiff.data.languages import codes_to_ids, ids_to_codes
from dnadiff.data.languages.chain import DTYPE
from dnadiff.objectives.schedules import build_schedule
from dnadiff.sampling import (
    MDLM_SAMPLERS,
    all_mask,
    ancestral_sample,
    confidence_sample,
    make_generator,
    remask_sample,
    sample_categorical,
)
from dnadiff.sampling.common import draw_uniforms
from dnadiff.sampling.confidence import confidence_scores, select_spaced, select_top

TOK = Tokenizer()
MASK = TOK.mask_id
SCHED = build_schedule("loglinear")
L4 = 4


class PairChain(Language):
    """A random 4-position language: sites (0, 3) and (1, 2) with random weights, the second
    depending on x_0; a few zero weights make some sequences impossible. No two positions have
    tied marginals, so confidence orders are unambiguous."""

    name = "pairs"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w1 = torch.rand(4, 4, generator=gen, dtype=DTYPE) ** 2
        self.w2 = torch.rand(4, 4, 4, generator=gen, dtype=DTYPE) ** 2
        self.w1[0, 0] = 0.0
        self.w2[1, 2, 3] = 0.0

    def build_chain(self, length: int) -> SiteChain:
        if length != L4:
            raise ValueError("PairChain has length 4")
        pairs = torch.tensor(list(itertools.product(range(4), repeat=2)))
        site1 = Site((0, 3), [0] * 16, pairs[:, 0], pairs, self.w1.reshape(-1), 1, 4)
        trip = torch.tensor(list(itertools.product(range(4), repeat=3)))
        site2 = Site((1, 2), trip[:, 0], [0] * 64, trip[:, 1:], self.w2.reshape(-1), 4, 1)
        return SiteChain(length, torch.ones(1, dtype=DTYPE), [site1, site2], torch.ones(1, dtype=DTYPE))

    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return (self.w1[codes[:, 0], codes[:, 3]] > 0) & (self.w2[codes[:, 0], codes[:, 1], codes[:, 2]] > 0)


def marginals_of(den: LanguageDenoiser, z: tuple[int, ...]) -> np.ndarray:
    """The oracle's x_theta for one z (codes, -1 = mask), as (L, 4) probabilities."""
    ids = codes_to_ids(torch.tensor([[max(c, 0) for c in z]])).masked_fill(torch.tensor([[c < 0 for c in z]]), MASK)
    return den(ids)[0][:, list(TOK.nucleotide_ids)].exp().numpy()


def alpha(t: float) -> float:
    return float(SCHED.alpha(torch.tensor(t, dtype=torch.float64)))


def ancestral_kernel(den, steps):
    def kernel(z, i):
        t, s = i / steps, (i - 1) / steps
        p_u = (alpha(s) - alpha(t)) / (1 - alpha(t)) if i > 1 else 1.0
        marg = marginals_of(den, z)
        options = []
        for pos, c in enumerate(z):
            if c >= 0:
                options.append([(c, 1.0)])
            else:
                options.append([(-1, 1 - p_u)] + [(v, p_u * marg[pos, v]) for v in range(4)])
        return options
    return kernel


def remask_kernel(den, steps, sigma_fn):
    def kernel(z, i):
        t, s = i / steps, (i - 1) / steps
        a_t, a_s, sigma, p_u = sigma_fn(t, s, i)
        marg = marginals_of(den, z)
        options = []
        for pos, c in enumerate(z):
            if c >= 0:
                options.append([(c, 1 - sigma), (-1, sigma)])
            else:
                options.append([(-1, 1 - p_u)] + [(v, p_u * marg[pos, v]) for v in range(4)])
        return options
    return kernel


def rescale_sigma(eta):
    def fn(t, s, i):
        a_t, a_s = alpha(t), alpha(s)
        if i == 1:
            return a_t, a_s, 0.0, 1.0
        sigma = eta * min(1.0, (1 - a_s) / a_t)
        return a_t, a_s, sigma, (a_s - (1 - sigma) * a_t) / (1 - a_t)
    return fn


def loop_sigma(eta, t_on, t_off, a_on):
    def path(t):
        if t > t_on:
            return a_on * (1 - t) / (1 - t_on)
        if t >= t_off:
            return a_on
        return 1 - (1 - a_on) * t / t_off

    def fn(t, s, i):
        a_t, a_s = path(t), path(s)
        if i == 1:
            return a_t, a_s, 0.0, 1.0
        if t <= t_on and s >= t_off:
            return a_t, a_s, eta, eta * a_on / (1 - a_on)
        return a_t, a_s, 0.0, (a_s - a_t) / (1 - a_t)
    return fn


def confidence_kernel(den, steps, length):
    def kernel(z, i):
        masked = [p for p, c in enumerate(z) if c < 0]
        target = 0 if i == 1 else int(np.floor(length * (i - 1) / steps + 0.5))
        k = max(0, len(masked) - target)
        marg = marginals_of(den, z)
        ranked = sorted(masked, key=lambda p: (-marg[p].max(), p))[:k]
        options = []
        for pos, c in enumerate(z):
            if pos in ranked:
                options.append([(v, marg[pos, v]) for v in range(4)])
            else:
                options.append([(c, 1.0)])
        return options
    return kernel


def exact_output(kernel, length: int, steps: int) -> dict[tuple[int, ...], float]:
    """Distribution of the final sequence: propagate the law of z through the per-position kernels."""
    dist = {(-1,) * length: 1.0}
    for i in range(steps, 0, -1):
        new: dict[tuple[int, ...], float] = defaultdict(float)
        for z, p in dist.items():
            for combo in itertools.product(*kernel(z, i)):
                q = p * float(np.prod([w for _, w in combo]))
                if q > 0:
                    new[tuple(c for c, _ in combo)] += q
        dist = new
    assert all(-1 not in z for z in dist) and abs(sum(dist.values()) - 1) < 1e-9
    return dist


def chi2_pvalue(samples: torch.Tensor, dist: dict) -> float:
    keys = sorted(dist)
    index = {k: j for j, k in enumerate(keys)}
    obs = np.zeros(len(keys))
    for row in ids_to_codes(samples).tolist():
        obs[index[tuple(row)]] += 1
    exp = np.array([dist[k] for k in keys]) * len(samples)
    big = exp >= 5
    obs_b, exp_b = np.append(obs[big], obs[~big].sum()), np.append(exp[big], exp[~big].sum())
    keep = exp_b > 0
    return stats.chisquare(obs_b[keep], exp_b[keep] * obs_b[keep].sum() / exp_b[keep].sum()).pvalue


def language_dist(lang: Language, length: int) -> dict:
    seqs = torch.tensor(list(itertools.product(range(4), repeat=length)))
    p = lang.log_prob(codes_to_ids(seqs)).exp()
    return {tuple(s): float(q) for s, q in zip(seqs.tolist(), p) if q > 0}


@pytest.mark.parametrize("sampler", ["ancestral", "confidence", "remask_rescale", "remask_loop", "remask_loop_2_steps"])
def test_whole_chain_matches_exact_recursion_with_oracle(sampler: str) -> None:
    lang = PairChain()
    den = LanguageDenoiser(lang)
    steps, n = 3, 20000
    if sampler == "ancestral":
        kernel, run = ancestral_kernel(den, steps), lambda g: ancestral_sample(den, all_mask(n, L4, MASK), steps,
                                                                               SCHED, MASK, generator=g)
    elif sampler == "confidence":
        steps = 2
        kernel = confidence_kernel(den, steps, L4)
        run = lambda g: confidence_sample(den, all_mask(n, L4, MASK), steps, SCHED, MASK, generator=g,  # noqa: E731
                                          precision="float64")
    elif sampler == "remask_rescale":
        kernel = remask_kernel(den, steps, rescale_sigma(0.6))
        run = lambda g: remask_sample(den, all_mask(n, L4, MASK), steps, SCHED, MASK, strategy="rescale",  # noqa: E731
                                      eta=0.6, generator=g)
    elif sampler == "remask_loop_2_steps":  # no grid step inside the loop: MDLM's ancestral chain on the schedule
        steps = 2
        kernel = ancestral_kernel(den, steps)
        run = lambda g: remask_sample(den, all_mask(n, L4, MASK), steps, SCHED, MASK, strategy="loop",  # noqa: E731
                                      generator=g)
    else:
        steps = 5
        kernel = remask_kernel(den, steps, loop_sigma(0.5, 0.7, 0.3, 0.6))
        run = lambda g: remask_sample(den, all_mask(n, L4, MASK), steps, SCHED, MASK, strategy="loop",  # noqa: E731
                                      eta=0.5, t_on=0.7, t_off=0.3, alpha_on=0.6, generator=g)
    exact = exact_output(kernel, L4, steps)
    truth = language_dist(lang, L4)
    tv = 0.5 * sum(abs(exact.get(k, 0) - truth.get(k, 0)) for k in set(exact) | set(truth))
    assert tv > 0.02, tv  # the few-step sampler is not the language: the test can tell them apart
    out = run(make_generator(11, "cpu"))
    assert chi2_pvalue(out.ids, exact) > 1e-3
    assert chi2_pvalue(out.ids, {**{k: 1e-12 for k in exact}, **truth}) < 1e-6


def test_one_token_per_step_confidence_is_exact() -> None:
    bg = MarkovLanguage.fit(order=2)
    lang = HairpinLanguage(bg, min_loop=2)
    den = LanguageDenoiser(lang)
    out = confidence_sample(den, all_mask(20000, 7, MASK), 7, SCHED, MASK, generator=make_generator(2, "cpu"),
                            precision="float64", score="margin")
    assert bool(lang.is_valid(out.ids).all()) and out.nfe == 7
    assert chi2_pvalue(out.ids, language_dist(lang, 7)) > 1e-3
    one = ancestral_sample(den, all_mask(20000, 7, MASK), 1, SCHED, MASK, generator=make_generator(3, "cpu"))
    assert 0.5 < float((~lang.is_valid(one.ids)).float().mean()) < 0.95  # one step: pairs drawn independently


class Recorder:
    """Wraps a denoiser and keeps every z it is called with."""

    time_conditioned = False

    def __init__(self, base) -> None:
        self.base = base
        self.seen: list[torch.Tensor] = []

    def __call__(self, z, t, rows=None):
        self.seen.append(z.clone())
        return self.base(z, t, rows)


def test_confidence_first_step_picks_top_k_and_gumbel_is_plackett_luce() -> None:
    lang = PairChain(seed=1)
    den = Recorder(LanguageDenoiser(lang))
    n = 6000
    confidence_sample(den, all_mask(n, L4, MASK), 2, SCHED, MASK, generator=make_generator(0, "cpu"))
    conf = confidence_scores(den.base(all_mask(1, L4, MASK), torch.ones(1))[0], "max_prob")
    top2 = set(torch.argsort(conf, descending=True)[:2].tolist())
    first = den.seen[1] != MASK
    assert bool((first.sum(-1) == 2).all()) and set(first[0].nonzero().squeeze(-1).tolist()) == top2
    assert bool((first == first[0]).all())
    tau = 0.05
    den = Recorder(LanguageDenoiser(lang))
    confidence_sample(den, all_mask(n, L4, MASK), 2, SCHED, MASK, gumbel=tau, generator=make_generator(1, "cpu"))
    chosen = [tuple(r.nonzero().squeeze(-1).tolist()) for r in den.seen[1] != MASK]
    w = torch.softmax(conf.double() / tau, 0).numpy()
    pairs = list(itertools.combinations(range(L4), 2))
    expected = np.array([w[a] * w[b] / (1 - w[a]) + w[b] * w[a] / (1 - w[b]) for a, b in pairs]) * n
    observed = np.array([chosen.count(p) for p in pairs])
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    uniform = np.full(len(pairs), n / len(pairs))
    assert stats.chisquare(observed, uniform).pvalue < 1e-6


def test_selection_helpers() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.95, 0.1, 0.85], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    eligible = torch.tensor([[True] * 6, [True, True, False, True, True, True]])
    assert select_top(scores, eligible, torch.tensor([2, 3])).tolist() == [
        [True, False, False, True, False, False], [True, True, False, True, False, False]]
    spaced = select_spaced(scores, eligible, torch.tensor([3, 3]), 3)
    assert spaced.tolist() == [[True, False, False, True, False, False], [True, False, False, True, False, False]]
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    lp = probs.log()
    assert torch.allclose(confidence_scores(lp, "max_prob"), torch.tensor([0.7]))
    assert torch.allclose(confidence_scores(lp, "margin"), torch.tensor([0.5]))
    assert torch.allclose(confidence_scores(lp, "neg_entropy"), (probs[:, :3] * probs[:, :3].log()).sum(-1))


def test_tied_scores_are_broken_at_random() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.9, 0.5, 0.5]])
    eligible = torch.ones(1, 5, dtype=torch.bool)
    tiebreak = torch.tensor([[0.4, 0.3, 0.9, 0.1, 0.2]])
    assert select_top(scores, eligible, torch.tensor([3]), tiebreak).tolist() == [[False, False, True, True, True]]
    spaced = select_spaced(scores, eligible, torch.tensor([3]), 2, tiebreak)
    assert spaced.tolist() == [[True, False, True, False, True]]

    class Uniform:
        """x_theta uniform over the four nucleotides at every position: every confidence score ties."""

        time_conditioned = False

        def __call__(self, z, t, rows=None):
            log_x = torch.full((*z.shape, len(TOK)), float("-inf"))
            log_x[..., list(TOK.nucleotide_ids)] = -np.log(4.0)
            return log_x

    den = Recorder(Uniform())
    n, length, steps = 4000, 16, 4
    confidence_sample(den, all_mask(n, length, MASK), steps, SCHED, MASK, cache=False,
                      generator=make_generator(4, "cpu"))
    first = (den.seen[1] != MASK).sum(0).numpy()  # how often each position was unmasked at the first step
    assert first.sum() == n * length // steps
    assert stats.chisquare(first).pvalue > 1e-3  # uniform over positions, not the first L / T


def test_min_gap_never_draws_close_positions_together() -> None:
    bg = MarkovLanguage.fit(order=2)
    den = Recorder(LanguageDenoiser(bg))
    out = confidence_sample(den, all_mask(8, 40, MASK), 6, SCHED, MASK, min_gap=3, block_length=16, cache=False,
                            generator=make_generator(0, "cpu"))
    assert not bool((out.ids == MASK).any())
    zs = den.seen + [out.ids]
    for before, after in zip(zs, zs[1:]):
        for row in (before != after):
            pos = row.nonzero().squeeze(-1)
            assert bool((pos.diff() >= 3).all())
    assert out.steps >= 6 and out.nfe == len(den.seen) and int(out.nfe_per_sequence.max()) == out.nfe


def test_templates_are_carried_over_and_completed_consistently() -> None:
    bg = MarkovLanguage.fit(order=2)
    lang = HairpinLanguage(bg)
    den = LanguageDenoiser(lang)
    length = 32
    arm, _ = lang.geometry(length)
    template = torch.full((length,), MASK)
    template[:arm] = lang.sample(1, length, torch.Generator().manual_seed(0))[0, :arm]
    z = template.expand(64, -1).contiguous()
    fixed = template != MASK
    runs = {
        "confidence": confidence_sample(den, z, 8, SCHED, MASK, generator=make_generator(1, "cpu")),
        "remask_conf": remask_sample(den, z, 8, SCHED, MASK, strategy="conf", generator=make_generator(1, "cpu")),
        "remask_loop": remask_sample(den, z, 12, SCHED, MASK, strategy="loop", eta=0.1,
                                     generator=make_generator(1, "cpu")),
        "remask_cap": remask_sample(den, z, 8, SCHED, MASK, strategy="cap", eta=0.5,
                                    generator=make_generator(1, "cpu")),
    }
    for name, out in runs.items():
        assert torch.equal(out.ids[:, fixed], template[fixed].expand(64, -1)), name
        assert bool(lang.is_valid(out.ids).all()), name  # the second arm is determined by the fixed first arm


def test_cached_equals_uncached() -> None:
    den = LanguageDenoiser(HairpinLanguage(MarkovLanguage.fit(order=2)))
    for fn, kw in ((confidence_sample, {}), (confidence_sample, {"min_gap": 2, "gumbel": 0.3}),
                   (remask_sample, {"strategy": "rescale", "eta": 0.3}), (remask_sample, {"strategy": "loop"})):
        steps = 40
        plain = fn(den, all_mask(6, 16, MASK), steps, SCHED, MASK, cache=False, generator=make_generator(4, "cpu"), **kw)
        cached = fn(den, all_mask(6, 16, MASK), steps, SCHED, MASK, cache=True, generator=make_generator(4, "cpu"), **kw)
        assert torch.equal(plain.ids, cached.ids), (fn.__name__, kw)
        assert plain.nfe >= steps and bool((plain.nfe_per_sequence == plain.nfe).all())
        assert int(cached.nfe_per_sequence.sum()) <= int(plain.nfe_per_sequence.sum())
        if fn is confidence_sample:
            assert cached.nfe < plain.nfe
    conf = confidence_sample(den, all_mask(6, 16, MASK), 40, SCHED, MASK, generator=make_generator(4, "cpu"))
    assert bool((conf.nfe_per_sequence == 16).all())


@pytest.mark.parametrize("strategy,eta", [("cap", 0.3), ("rescale", 0.5), ("loop", 0.05)])
def test_remask_keeps_the_forward_marginal(strategy: str, eta: float) -> None:
    den = LanguageDenoiser(MarkovLanguage.fit(order=2))
    steps, batch, length = 10, 600, 16
    out = remask_sample(den, all_mask(batch, length, MASK), steps, SCHED, MASK, strategy=strategy, eta=eta,
                        generator=make_generator(5, "cpu"))
    counts = out.masked_counts.double()
    n = batch * length
    assert counts[0] == n and counts[-1] == 0
    path = loop_sigma(eta, 0.55, 0.05, 0.9)
    for k, i in enumerate(range(steps, 1, -1)):
        a_s = path((i) / steps, (i - 1) / steps, i)[1] if strategy == "loop" else alpha((i - 1) / steps)
        expected = n * (1 - a_s)
        assert abs(counts[k + 1] - expected) < 6 * np.sqrt(n * 0.25) + 1, (i, float(counts[k + 1]), expected)


def test_float64_draws_are_exact_where_float32_distorts() -> None:
    rare = 3.0e-8
    probs = torch.tensor([1.0 - 3 * rare, rare, rare, rare], dtype=torch.float64)
    lp = probs.log().unsqueeze(0)

    def width64(token: int) -> float:
        """P(draw == token) in float64: the measure of uniforms mapping to it (bisection on u)."""

        def first_u_at_least(j: int) -> float:
            lo, hi = 0.0, 1.0
            for _ in range(80):
                mid = (lo + hi) / 2
                if int(sample_categorical(lp, torch.tensor([mid], dtype=torch.float64), "float64")) >= j:
                    hi = mid
                else:
                    lo = mid
            return hi

        upper = first_u_at_least(token + 1) if token + 1 < 4 else 1.0
        return upper - first_u_at_least(token)

    # float32 uniforms are 1 - k 2^-24 (k = 0 .. 2^24 - 1); the rare tokens sit at the top of the CDF,
    # so the first 64 grid points decide them: their exact float32 probabilities are counts / 2^24.
    top = torch.tensor([1.0 - k * 2.0**-24 for k in range(64)], dtype=torch.float32)
    assert torch.equal(top.double(), torch.tensor([1.0 - k * 2.0**-24 for k in range(64)], dtype=torch.float64))
    fp32_hits = torch.bincount(sample_categorical(lp.expand(64, -1), top, "float32"), minlength=4)
    for token in (1, 2, 3):
        assert abs(width64(token) / rare - 1) < 1e-6
        p32 = float(fp32_hits[token]) * 2.0**-24
        assert abs(p32 / rare - 1) > 0.9, (token, p32)  # fp32: never drawn, or twice as often as it should be
    assert abs(width64(0) - (1 - 3 * rare)) < 1e-12
    n = 2_000_000
    probs = torch.tensor([0.5, 0.4998, 1e-4, 1e-4], dtype=torch.float64)
    u = draw_uniforms((n,), torch.Generator().manual_seed(0), torch.device("cpu"), "float64")
    draws = sample_categorical(probs.log().expand(n, -1), u, "float64")
    observed = torch.bincount(draws, minlength=4).numpy()
    assert stats.chisquare(observed, probs.numpy() * n).pvalue > 1e-3
    with pytest.raises(ValueError, match="precision"):
        sample_categorical(lp, torch.ones(1), "float16")


def test_argument_errors() -> None:
    den = LanguageDenoiser(MarkovLanguage.fit(order=1))
    z = all_mask(1, 6, MASK)
    for kw, msg in (({"score": "best"}, "score must be"), ({"min_gap": 0}, "min_gap"), ({"gumbel": -1.0}, "gumbel"),
                    ({"block_length": 0}, "block_length")):
        with pytest.raises(ValueError, match=msg):
            confidence_sample(den, z, 3, SCHED, MASK, **kw)
    for kw, msg in (({"strategy": "random"}, "strategy"), ({"eta": 2.0}, "eta"),
                    ({"strategy": "loop", "t_on": 0.1, "t_off": 0.2}, "t_off < t_on"),
                    ({"strategy": "loop", "eta": 0.5, "alpha_on": 0.9}, "too large")):
        with pytest.raises(ValueError, match=msg):
            remask_sample(den, z, 3, SCHED, MASK, **kw)


def test_generate_cli_with_new_samplers(tmp_path: Path) -> None:
    from dnadiff.data.fasta import read_fasta
    from dnadiff.generate import generate
    from dnadiff.sampling.registry import SAMPLERS
    from tests.sampling.test_sampling import MDLM_OBJ, _export, compose_config

    torch.manual_seed(0)
    folder = _export(build_model("bimamba", d_model=16, n_layer=1).eval(), tmp_path / "mdlm", MDLM_OBJ)
    base = compose_config("generate", [
        "num_samples=3", "length=18", "steps=5", "device=cpu", f"ckpt={folder}", "out=unset",
        "confidence.min_gap=2", "remask.strategy=rescale", "precision=float64"])
    assert {"confidence", "remask"} <= set(SAMPLERS) and set(MDLM_SAMPLERS) <= set(SAMPLERS)
    for sampler in ("confidence", "remask"):
        out = tmp_path / f"{sampler}.fa"
        generate({**base, "sampler": sampler, "out": str(out)})
        recs = read_fasta(out)
        assert len(recs) == 3
        for header, seq in recs:
            fields = dict(f.split("=", 1) for f in header.split()[1:])
            assert fields["sampler"] == sampler and int(fields["nfe"]) >= 1 and len(seq) == 18
            assert set(seq) <= set("ACGT")
    template = tmp_path / "motif.fa"
    generate({**base, "sampler": "confidence", "out": str(template),
              "infill": {**base["infill"], "motif": "GAATTC", "motif_position": 4}})
    assert all(seq[3:9] == "GAATTC" for _, seq in read_fasta(template))


@pytest.mark.parametrize("override,message", [
    ("confidence.score=entropy", "confidence.score must be one of"),
    ("confidence.min_gap=0", "confidence.min_gap must be an integer >= 1"),
    ("confidence.gumbel=-1", "confidence.gumbel must be in"),
    ("remask.strategy=random", "remask.strategy must be one of"),
    ("remask.eta=1.5", "remask.eta must be in"),
    ("remask.t_on=0.01", "remask.t_on must be in"),
    ("remask.eta=0.5", "remask.eta=0.5 is too large"),
    ("precision=float16", "precision must be one of"),
])
def test_generate_config_refuses_bad_sampler_options(override: str, message: str) -> None:
    from dnadiff import cli
    from dnadiff.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        cli.load_config("generate", ["ckpt=x", "out=y.fa", override])


def test_guidance_plugs_into_the_new_samplers() -> None:
    from dnadiff.sampling import ClassifierFreeGuidance, Denoiser

    torch.manual_seed(0)
    model = build_model("bimamba", d_model=16, n_layer=1, n_classes=2).eval()
    target = torch.ones(4, dtype=torch.long)
    for fn, kw in ((confidence_sample, {"min_gap": 2}), (remask_sample, {"strategy": "cap", "eta": 0.2})):
        plain = fn(Denoiser(model, MASK), all_mask(4, 12, MASK), 6, SCHED, MASK, generator=make_generator(8, "cpu"),
                   **kw)
        null = fn(ClassifierFreeGuidance(Denoiser(model, MASK), target, 0.0), all_mask(4, 12, MASK), 6, SCHED, MASK,
                  generator=make_generator(8, "cpu"), **kw)
        cond = fn(Denoiser(model, MASK, cond=target), all_mask(4, 12, MASK), 6, SCHED, MASK,
                  generator=make_generator(8, "cpu"), **kw)
        one = fn(ClassifierFreeGuidance(Denoiser(model, MASK), target, 1.0), all_mask(4, 12, MASK), 6, SCHED, MASK,
                 generator=make_generator(8, "cpu"), **kw)
        assert torch.equal(plain.ids, null.ids) and torch.equal(cond.ids, one.ids)
        assert not torch.equal(plain.ids, cond.ids)
