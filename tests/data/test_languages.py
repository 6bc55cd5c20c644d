"""Checkable DNA languages (issue 16): exact log_prob against enumeration and direct formulas,
sample frequencies against exp(log_prob), is_valid against brute-force construction, and the
exact oracle's posterior marginals against brute-force conditioning."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dnadiff import Tokenizer
from dnadiff.data.languages import (
    HairpinLanguage,
    LanguageDenoiser,
    MarkovLanguage,
    MotifGrammarLanguage,
    OrfLanguage,
    codes_to_ids,
    ids_to_codes,
)
from dnadiff.data.languages.base import channel_evidence
from dnadiff.data.languages.orf import CODON_TABLE, STOPS, read_codon_counts

TOK = Tokenizer()
MASK = TOK.mask_id
BASES = "ACGT"
COMP = {"A": "T", "C": "G", "G": "C", "T": "A"}


@pytest.fixture(scope="module")
def background(hg38_fasta) -> MarkovLanguage:
    """An order-2 chain fitted on the real hg38 slice (both strands)."""
    return MarkovLanguage.fit(hg38_fasta, order=2)


def small_languages(bg: MarkovLanguage) -> dict:
    """(language, tiny length) pairs where 4^L sequences can be enumerated."""
    comp = bg.base_composition()
    return {
        "markov": (bg, 6),
        "hairpin": (HairpinLanguage(bg, loop_fraction=0.25, min_loop=2), 7),
        "orf_flank": (OrfLanguage(comp), 8),
        "orf": (OrfLanguage(comp), 9),
        "motifs": (MotifGrammarLanguage(comp, motifs=("AC", "G"), gaps=(1,), forbidden=("TT", "GCA")), 7),
    }


def all_sequences(length: int) -> list[str]:
    return ["".join(p) for p in itertools.product(BASES, repeat=length)]


def encode(seqs: list[str]) -> torch.Tensor:
    return TOK.encode_batch(seqs)


def valid_by_construction(name: str, lang, length: int) -> set[str]:
    """The language's valid set built from its definition, without its chain or its is_valid."""
    if name == "markov":
        return set(all_sequences(length))
    if name == "hairpin":
        arm, loop = lang.geometry(length)
        out = set()
        for head in all_sequences(arm + loop):
            out.add(head + "".join(COMP[c] for c in reversed(head[:arm])))
        return out
    if name.startswith("orf"):
        flank, n = length % 3, length // 3
        sense = ["".join(c) for c in itertools.product(BASES, repeat=3) if "".join(c) not in STOPS]
        out = set()
        for f in all_sequences(flank):
            for middle in itertools.product(sense, repeat=n - 2):
                for stop in STOPS:
                    out.add(f + "ATG" + "".join(middle) + stop)
        return out
    block = lang.block
    out = set()
    for seq in all_sequences(length):
        if any(k in seq for k in lang.forbidden):
            continue
        for o in range(length - len(block) + 1):
            if all(b == "N" or seq[o + i] == b for i, b in enumerate(block)):
                out.add(seq)
                break
    return out


def test_log_prob_sums_to_one_and_is_valid_agrees_with_brute_force(background: MarkovLanguage) -> None:
    for name, (lang, length) in small_languages(background).items():
        seqs = all_sequences(length)
        x = encode(seqs)
        lp = lang.log_prob(x)
        assert abs(float(torch.logsumexp(lp, 0))) < 1e-12, name
        valid = lang.is_valid(x)
        built = valid_by_construction(name, lang, length)
        assert valid.tolist() == [s in built for s in seqs], name
        assert torch.equal(valid, torch.isfinite(lp)), name
        if name != "markov":
            assert 0 < len(built) < len(seqs), name


def test_markov_fit_and_direct_formula(background: MarkovLanguage, hg38_fasta) -> None:
    bg = background
    seq = open(hg38_fasta).read().split("\n", 1)[1].replace("\n", "").upper()
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    counts = np.zeros((16, 4))
    for strand in (seq, rc):
        codes = np.frombuffer(strand.encode(), dtype=np.uint8)
        lut = np.full(256, -1)
        for i, c in enumerate(BASES):
            lut[ord(c)] = i
        c = lut[codes]
        ok = (c[:-2] >= 0) & (c[1:-1] >= 0) & (c[2:] >= 0)
        np.add.at(counts, ((c[:-2] * 4 + c[1:-1])[ok], c[2:][ok]), 1)
    counts += 1.0
    assert np.allclose(bg.transition, counts / counts.sum(1, keepdims=True), rtol=1e-12)
    full = np.zeros((16, 16))
    for u in range(16):
        for v in range(4):
            full[u, (u * 4 + v) % 16] = bg.transition[u, v]
    assert np.allclose(bg.pi @ full, bg.pi, atol=1e-15) and abs(bg.pi.sum() - 1) < 1e-12
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (50, 12), generator=gen)
    direct = []
    for row in x.tolist():
        lp = math.log(bg.pi[row[0] * 4 + row[1]])
        lp += sum(math.log(bg.transition[row[i - 2] * 4 + row[i - 1], row[i]]) for i in range(2, len(row)))
        direct.append(lp)
    assert torch.allclose(bg.log_prob(codes_to_ids(x)), torch.tensor(direct, dtype=torch.float64), atol=1e-10)
    h_exact = -(bg.pi * np.log(bg.pi)).sum() - 10 * (bg.pi[:, None] * bg.transition * np.log(bg.transition)).sum()
    mean, se = bg.entropy_rate(12, 4096, torch.Generator().manual_seed(1))
    assert abs(mean - h_exact / 12) < 5 * se, (mean, h_exact / 12, se)


@pytest.mark.parametrize("name", ["markov", "hairpin", "orf", "motifs"])
def test_sample_frequencies_match_exp_log_prob(background: MarkovLanguage, name: str) -> None:
    lang, length = small_languages(background)[name]
    if name == "markov":
        length = 4
    n = 30000
    x = lang.sample(n, length, torch.Generator().manual_seed(3))
    assert bool(lang.is_valid(x).all())
    seqs, counts = np.unique(np.array(TOK.decode(x)), return_counts=True)
    support = sorted(valid_by_construction(name, lang, length))
    assert set(seqs) <= set(support)
    observed = dict(zip(seqs, counts))
    p = lang.log_prob(encode(support)).exp().numpy()
    obs = np.array([observed.get(s, 0) for s in support], dtype=float)
    exp = p * n
    big = exp >= 5
    obs_b = np.append(obs[big], obs[~big].sum())
    exp_b = np.append(exp[big], exp[~big].sum())
    keep = exp_b > 0
    assert stats.chisquare(obs_b[keep], exp_b[keep]).pvalue > 1e-3
    shuffled = np.roll(p, 1) * n
    shuffled_b = np.append(shuffled[big], shuffled[~big].sum())
    assert stats.chisquare(obs_b[keep], shuffled_b[keep] * obs_b[keep].sum() / shuffled_b[keep].sum()).pvalue < 1e-6


def brute_posterior(lang, length: int, z_codes: torch.Tensor, rate: float | None = None) -> torch.Tensor:
    """p(x^l = v | z) by summing exp(log_prob) over all 4^L sequences (noisy channel when ``rate``)."""
    seqs = torch.tensor(list(itertools.product(range(4), repeat=length)))
    p = lang.log_prob(codes_to_ids(seqs)).exp()
    out = torch.zeros(z_codes.shape[0], length, 4, dtype=torch.float64)
    for b, z in enumerate(z_codes):
        seen = z >= 0
        if rate is None:
            w = p * (seqs[:, seen] == z[seen]).all(-1)
        else:
            match = (seqs[:, seen] == z[seen]).double()
            w = p * (match * (1 - rate) + (1 - match) * rate / 3).prod(-1)
        for pos in range(length):
            out[b, pos] = torch.zeros(4, dtype=torch.float64).index_add_(0, seqs[:, pos], w)
        out[b] /= w.sum()
    return out


def test_oracle_marginals_equal_brute_force(background: MarkovLanguage) -> None:
    gen = torch.Generator().manual_seed(7)
    for name, (lang, length) in small_languages(background).items():
        x = ids_to_codes(lang.sample(40, length, gen))
        hide = torch.rand(x.shape, generator=gen) < torch.rand(40, 1, generator=gen)
        z = torch.where(hide, torch.full_like(x, -1), x)
        got = lang.posterior_marginals(codes_to_ids(z.clamp(min=0)).masked_fill(hide, MASK), MASK)
        assert lang.last_fallback_rows == 0
        assert torch.allclose(got, brute_posterior(lang, length, z), atol=1e-12), name
    lang, length = small_languages(background)["hairpin"]
    arm, _ = lang.geometry(length)
    z = torch.full((2, length), -1)
    z[:, 0], z[:, length - 1] = 0, 0  # A paired with A: no hairpin explains it
    z[1, 2] = 2
    ids = codes_to_ids(z.clamp(min=0)).masked_fill(z < 0, MASK)
    got = lang.posterior_marginals(ids, MASK)
    assert lang.last_fallback_rows == 2
    assert torch.allclose(got, brute_posterior(lang, length, z, rate=lang.fallback_rate), atol=1e-12)
    assert torch.allclose(channel_evidence(torch.tensor([[0, -1]]), 0.3)[0, 0], torch.tensor([0.7, 0.1, 0.1, 0.1],
                                                                                              dtype=torch.float64))


def test_oracle_denoiser_is_subs() -> None:
    bg = MarkovLanguage.fit(order=1)
    den = LanguageDenoiser(HairpinLanguage(bg))
    z = torch.full((3, 12), MASK)
    z[:, 0] = TOK.token_to_id["G"]
    out = den(z, torch.ones(3))
    assert out.shape == (3, 12, len(TOK)) and den.calls == 1
    assert torch.equal(out[:, 0].argmax(-1), z[:, 0]) and bool((out[:, 0].exp().sum(-1) == 1).all())
    assert torch.allclose(out[:, 11].exp()[:, TOK.token_to_id["C"]], torch.ones(3, dtype=torch.float64))
    assert torch.allclose(out[:, 1:].exp().sum(-1), torch.ones(3, 11, dtype=torch.float64))
    assert bool(torch.isinf(out[..., [MASK, TOK.n_id]]).all())


def test_hairpin_rc_and_geometry(background: MarkovLanguage) -> None:
    lang = HairpinLanguage(background)
    assert lang.geometry(64) == (24, 16) and lang.geometry(256) == (96, 64) and lang.geometry(65) == (24, 17)
    x = lang.sample(20, 64, torch.Generator().manual_seed(0))
    assert bool(lang.is_valid(TOK.reverse_complement(x)).all())
    broken = x.clone()
    broken[:, 0] = torch.where(broken[:, 0] == TOK.token_to_id["A"], TOK.token_to_id["C"], TOK.token_to_id["A"])
    assert not bool(lang.is_valid(broken).any()) and bool(torch.isinf(lang.log_prob(broken)).all())


def test_codon_table_and_orf_rules() -> None:
    counts = read_codon_counts()
    header = CODON_TABLE.read_text().splitlines()[0]
    assert "93487" in header and sum(counts.values()) == 40662582
    lang = OrfLanguage(np.full(4, 0.25))
    assert len(lang.sense) == 61 and abs(lang.sense_probs.sum() - 1) < 1e-12
    assert abs(lang.sense_probs[lang.sense.index("CTG")] - 1611801 / (40662582 - 40285 - 32109 - 63237)) < 1e-12
    good = encode(["CATGGCCCTGTAA", "CATGTAATGATAA", "CATGGCCCTGTGG"])
    assert lang.is_valid(good).tolist() == [True, False, False]


def test_bad_input_is_one_line_error(background: MarkovLanguage) -> None:
    with pytest.raises(ValueError, match="position 3"):
        background.log_prob(encode(["ACGNA"]))
    with pytest.raises(ValueError, match="length must be"):
        OrfLanguage(np.full(4, 0.25)).sample(2, 5)
    with pytest.raises(ValueError, match="empty"):
        MotifGrammarLanguage(np.full(4, 0.25), motifs=("GAATTC",), gaps=()).chain(10)
