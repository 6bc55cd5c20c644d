"""Nucleotide tokenizer: characters <-> token ids, and the complement map on ids.

The vocabulary is the Caduceus character tokenizer's, so that ids line up
with Caduceus-style checkpoints: seven special tokens, then A, C, G, T, N. The vocabulary
order is part of every dnadiff checkpoint; :meth:`Tokenizer.check_vocab` refuses a mismatch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

SPECIAL_TOKENS: tuple[str, ...] = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
NUCLEOTIDES: tuple[str, ...] = ("A", "C", "G", "T", "N")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + NUCLEOTIDES
COMPLEMENT: dict[str, str] = {"A": "T", "C": "G", "G": "C", "T": "A"}
# IUPAC ambiguity codes (and U, RNA's T-equivalent, which is kept ambiguous rather than guessed).
IUPAC_AMBIGUOUS = "RYSWKMBDHVU"
# What a sequence line of a DNA FASTA may hold (NCBI's FASTA rules for nucleotides): the IUPAC
# codes in either case and '-' (a gap). The tokenizer reads all but ACGTN as N. Anything else
# (digits, '*', '.', other letters, non-ASCII bytes) means the file is not DNA FASTA (numbered
# GenBank-style lines, a protein with its '*' stop): the readers refuse it, naming the file and
# the contig (see :func:`non_nucleotide`).
SEQUENCE_CODES = "".join(NUCLEOTIDES) + IUPAC_AMBIGUOUS + "-"
_SEQUENCE_BYTES = (SEQUENCE_CODES + SEQUENCE_CODES.lower()).encode("ascii")


_COMPLEMENT_TEXT = str.maketrans("ACGTacgt", "TGCAtgca")


def reverse_complement_ids(ids: torch.Tensor | np.ndarray, complement_map: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """complement(flip(ids)) along the last axis, for torch or numpy ids and a complement map of ids."""
    if isinstance(ids, np.ndarray):
        comp = complement_map.numpy() if isinstance(complement_map, torch.Tensor) else complement_map
        return comp[ids[..., ::-1]]
    return complement_map.to(ids.device)[torch.flip(ids, dims=(-1,))]


def reverse_complement_text(seq: str) -> str:
    """Reverse complement of a DNA string: A<->T, C<->G (case kept); every other letter (N, IUPAC) kept."""
    return seq[::-1].translate(_COMPLEMENT_TEXT)


def non_nucleotide(seq: bytes | str) -> tuple[int, int, str] | None:
    """Characters of a sequence that are not nucleotide codes (:data:`SEQUENCE_CODES`): ``(count,
    first position (0-based), first character)``, or None when every character is one."""
    data = seq.encode("ascii", errors="replace") if isinstance(seq, str) else bytes(seq)
    leftover = data.translate(None, _SEQUENCE_BYTES)  # one C pass; the usual answer is b""
    if not leftover:
        return None
    first = next(i for i, byte in enumerate(data) if byte not in _SEQUENCE_BYTES)
    char = seq[first] if isinstance(seq, str) else chr(data[first])
    return len(leftover), first, char


class TokenizerError(ValueError):
    """Bad input to the tokenizer: an invalid character, or a vocabulary that does not match."""


class Tokenizer:
    """Caduceus-compatible character tokenizer for DNA.

    Upper- and lower-case letters map to the same ids (soft-masked lower case is repeat
    sequence, not missing data). ``strict=False`` (default) maps every other character
    (IUPAC ambiguity codes such as R or Y, and anything else) to N; ``strict=True`` raises a
    :class:`TokenizerError` naming the first character outside ACGTN and its position.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = bool(strict)
        self.vocab: tuple[str, ...] = VOCAB
        self.token_to_id: dict[str, int] = {tok: i for i, tok in enumerate(VOCAB)}
        self.cls_id = self.token_to_id["[CLS]"]
        self.sep_id = self.token_to_id["[SEP]"]
        self.bos_id = self.token_to_id["[BOS]"]
        self.mask_id = self.token_to_id["[MASK]"]
        self.pad_id = self.token_to_id["[PAD]"]
        self.unk_id = self.token_to_id["[UNK]"]
        self.n_id = self.token_to_id["N"]
        self.nucleotide_ids: tuple[int, ...] = tuple(self.token_to_id[c] for c in "ACGT")
        self._valid = np.zeros(256, dtype=bool)
        self._table = np.full(256, self.n_id, dtype=np.int64)
        for c in NUCLEOTIDES:
            for byte in (ord(c), ord(c.lower())):
                self._table[byte] = self.token_to_id[c]
                self._valid[byte] = True
        comp = torch.arange(len(VOCAB), dtype=torch.long)
        for a, b in COMPLEMENT.items():
            comp[self.token_to_id[a]] = self.token_to_id[b]
        self.complement_map: torch.Tensor = comp
        self._id_to_char = np.array(list(VOCAB), dtype=object)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        mode = "strict: characters outside ACGTN raise" if self.strict else "lenient: characters outside ACGTN -> N"
        return f"Tokenizer(vocab_size={len(self)}, {mode})"

    def encode(self, seq: str | bytes) -> torch.LongTensor:
        """Encode one sequence to a 1-D LongTensor of ids (no special tokens added)."""
        return torch.from_numpy(self.encode_numpy(seq))

    def encode_numpy(self, seq: str | bytes) -> np.ndarray:
        """Encode one sequence to an int64 numpy array (the fast path used by data loaders)."""
        if isinstance(seq, str):
            try:
                raw = seq.encode("ascii")
            except UnicodeEncodeError as err:
                raise TokenizerError(
                    f"invalid character {seq[err.start]!r} at position {err.start}: sequences must be ASCII"
                ) from None
        elif isinstance(seq, (bytes, bytearray, memoryview)):
            raw = bytes(seq)
        else:
            raise TokenizerError(f"expected a str or bytes sequence, got {type(seq).__name__}")
        codes = np.frombuffer(raw, dtype=np.uint8)
        if self.strict:
            bad = np.flatnonzero(~self._valid[codes])
            if bad.size:
                pos = int(bad[0])
                raise TokenizerError(
                    f"invalid character {chr(codes[pos])!r} at position {pos} "
                    f"(strict mode accepts only A, C, G, T, N in either case; {bad.size} invalid in total)"
                )
        return self._table[codes]

    def encode_batch(self, seqs: Sequence[str], length: int | None = None) -> torch.LongTensor:
        """Encode sequences to a (batch, length) LongTensor, right-padded with ``pad_id``.

        ``length=None`` pads to the longest sequence; a given ``length`` also truncates longer
        sequences (keeping their start).
        """
        if isinstance(seqs, (str, bytes)):
            raise TokenizerError("encode_batch expects a list of sequences; use encode() for one sequence")
        encoded = [self.encode_numpy(s) for s in seqs]
        if length is None:
            length = max((len(e) for e in encoded), default=0)
        if length < 0:
            raise TokenizerError(f"length must be >= 0, got {length}")
        out = np.full((len(encoded), length), self.pad_id, dtype=np.int64)
        for row, e in zip(out, encoded):
            n = min(len(e), length)
            row[:n] = e[:n]
        return torch.from_numpy(out)

    def decode(self, ids: torch.Tensor | np.ndarray | Sequence[int], skip_special: bool = True) -> str | list[str]:
        """Decode 1-D ids to a string (2-D ids to a list of strings).

        ``skip_special=True`` drops pad, CLS, SEP, BOS and reserved tokens; mask and unk are
        kept as ``[MASK]`` / ``[UNK]`` so that a partly generated sequence keeps its length visible.
        """
        arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        if arr.ndim == 2:
            return [self.decode(row, skip_special) for row in arr]
        if arr.ndim != 1:
            raise TokenizerError(f"decode expects 1-D or 2-D ids, got shape {tuple(arr.shape)}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = int(arr[(arr < 0) | (arr >= len(self))][0])
            raise TokenizerError(f"token id {bad} is outside the vocabulary (0..{len(self) - 1})")
        if skip_special:
            drop = np.isin(arr, [self.pad_id, self.cls_id, self.sep_id, self.bos_id, self.token_to_id["[RESERVED]"]])
            arr = arr[~drop]
        return "".join(self._id_to_char[arr].tolist())

    def complement(self, ids: torch.Tensor) -> torch.Tensor:
        """Complement every id (A<->T, C<->G; other tokens map to themselves)."""
        return self.complement_map.to(ids.device)[ids]

    def reverse_complement(self, ids: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Reverse complement along the last axis: complement(flip(ids)). Works on 1-D and batched ids.

        Padding is reversed too (right padding becomes left padding), so reverse-complement
        unpadded windows, as the data loaders do.
        """
        return reverse_complement_ids(ids, self.complement_map)

    def state_dict(self) -> dict:
        """What a checkpoint stores to pin the vocabulary."""
        return {"vocab": list(self.vocab), "strict": self.strict}

    def check_vocab(self, vocab: Sequence[str], source: str = "checkpoint") -> None:
        """Raise :class:`TokenizerError` if ``vocab`` differs from this tokenizer's vocabulary."""
        vocab = list(vocab)
        if vocab == list(self.vocab):
            return
        diffs = [
            f"id {i}: {a!r} != {b!r}"
            for i, (a, b) in enumerate(zip(vocab, self.vocab))
            if a != b
        ]
        if len(vocab) != len(self.vocab):
            diffs.append(f"size {len(vocab)} != {len(self.vocab)}")
        raise TokenizerError(
            f"vocabulary of {source} does not match dnadiff's tokenizer ({'; '.join(diffs[:4])}); "
            "token ids would be misread, refusing to load"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary and mode as JSON."""
        from dnadiff.atomic import atomic_write_text

        atomic_write_text(json.dumps(self.state_dict(), indent=1), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer saved by :meth:`save`, refusing a different vocabulary."""
        try:
            state = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise TokenizerError(f"{path}: not a tokenizer JSON file ({err})") from None
        if not isinstance(state, dict) or "vocab" not in state:
            raise TokenizerError(f"{path}: missing 'vocab' entry")
        tok = cls(strict=bool(state.get("strict", False)))
        tok.check_vocab(state["vocab"], source=str(path))
        return tok
