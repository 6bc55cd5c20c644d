"""Tokenizer: Caduceus ids, complement map, strict/lenient modes, batching, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from Bio.Seq import Seq

from dnadiff import Tokenizer
from dnadiff.data.genome import Genome
from dnadiff.tokenizer import TokenizerError


def test_caduceus_vocabulary_ids(tokenizer: Tokenizer) -> None:
    expected = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N"]
    assert list(tokenizer.vocab) == expected
    assert len(tokenizer) == 12 and tokenizer.mask_id == 3 and tokenizer.pad_id == 4
    assert tokenizer.encode("ACGTN").tolist() == [7, 8, 9, 10, 11]


def test_soft_masked_lower_case_is_sequence(tokenizer: Tokenizer) -> None:
    assert torch.equal(tokenizer.encode("acgtn"), tokenizer.encode("ACGTN"))


def test_lenient_maps_iupac_and_garbage_to_n_and_says_so_in_repr() -> None:
    tok = Tokenizer()
    assert tok.encode("ARYx-").tolist() == [7, 11, 11, 11, 11]
    assert "lenient" in repr(tok) and "-> N" in repr(tok)


def test_strict_names_character_and_position() -> None:
    tok = Tokenizer(strict=True)
    assert "strict" in repr(tok)
    assert tok.encode("acgtNN").tolist() == [7, 8, 9, 10, 11, 11]
    with pytest.raises(TokenizerError, match=r"'R' at position 3"):
        tok.encode("ACGRTY")
    with pytest.raises(TokenizerError, match=r"position 2"):
        tok.encode("AC\u00e9")


def test_complement_map_and_reverse_complement(tokenizer: Tokenizer) -> None:
    comp = tokenizer.complement_map
    assert comp.shape == (len(tokenizer),)
    pairs = {"A": "T", "C": "G", "G": "C", "T": "A"}
    for a, b in pairs.items():
        assert comp[tokenizer.token_to_id[a]] == tokenizer.token_to_id[b]
    for tok in ("N", "[MASK]", "[PAD]", "[CLS]", "[SEP]", "[BOS]", "[RESERVED]", "[UNK]"):
        assert comp[tokenizer.token_to_id[tok]] == tokenizer.token_to_id[tok]
    seq = "AACGTTNGC"
    rc = tokenizer.decode(tokenizer.reverse_complement(tokenizer.encode(seq)))
    assert rc == str(Seq(seq).reverse_complement())


def test_rc_is_involution_and_matches_biopython_on_real_windows(tokenizer: Tokenizer, hg38_fasta) -> None:
    genome = Genome(hg38_fasta)
    rng = np.random.default_rng(0)
    starts = rng.integers(10_000, 1_990_000, size=200)
    seqs = [genome.fetch("chr2", int(s), int(s) + 256) for s in starts]
    ids = tokenizer.encode_batch(seqs)
    rc = tokenizer.reverse_complement(ids)
    assert torch.equal(tokenizer.reverse_complement(rc), ids)
    for s, row in zip(seqs[:50], rc[:50]):
        assert tokenizer.decode(row) == str(Seq(s.upper()).reverse_complement())
    np_rc = tokenizer.reverse_complement(ids.numpy())
    assert np.array_equal(np_rc, rc.numpy())


def test_encode_batch_pads_and_truncates(tokenizer: Tokenizer) -> None:
    batch = tokenizer.encode_batch(["ACGT", "AC"])
    assert batch.tolist() == [[7, 8, 9, 10], [7, 8, 4, 4]]
    assert tokenizer.encode_batch(["ACGT", "AC"], length=3).tolist() == [[7, 8, 9], [7, 8, 4]]
    assert tokenizer.decode(batch) == ["ACGT", "AC"]
    with pytest.raises(TokenizerError, match="list of sequences"):
        tokenizer.encode_batch("ACGT")


def test_decode_keeps_mask_visible_and_rejects_bad_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.decode([7, 3, 8, 4]) == "A[MASK]C"
    with pytest.raises(TokenizerError, match="token id 12"):
        tokenizer.decode([7, 12])


def test_save_load_and_vocabulary_mismatch(tmp_path, tokenizer: Tokenizer) -> None:
    path = tmp_path / "tok.json"
    Tokenizer(strict=True).save(path)
    loaded = Tokenizer.load(path)
    assert loaded.strict and list(loaded.vocab) == list(tokenizer.vocab)
    bad = tmp_path / "bad.json"
    bad.write_text('{"vocab": ["A", "C", "G", "T"]}')
    with pytest.raises(TokenizerError, match="does not match"):
        Tokenizer.load(bad)
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")
