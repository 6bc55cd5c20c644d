"""The DNA language model: token (+ class) embedding, a stack of Mamba / BiMamba blocks (RCPS-
wrapped for Caduceus-PS), final RMSNorm and an LM head over the 12-token vocabulary.

One class serves every arch (``model_config.ARCHS``):

- ``mamba``: causal; ``step`` decodes one token at a time with O(1) recurrent state.
- ``bimamba`` / ``caduceus_ph``: bidirectional; ``conjoined_logits`` (or ``conjoin: true`` in
  the config) averages the logits of x and of rc(x) mapped back (Caduceus' post-hoc conjoining).
- ``caduceus_ps``: hidden width 2 * d_model, embedding [E(x), flipSC(E(rc(x)))], RCPS-wrapped
  blocks (reading their halves swapped when ``rcps_swap_halves``, the wiring of the Caduceus
  authors' fused_add_norm checkpoints) and norm, and the head

      logits = h[..., :D] W^T + flip_channels(h[..., D:]) W[comp]^T

  (W: the embedding/head matrix, comp: the complement map on token ids), which makes
  logits(rc(x)) = flip_seq(logits(x))[..., comp] exactly, for any weights.

Class conditioning (``n_classes > 0``): a learned embedding of the label, index n_classes being
the null label (used when ``cond`` is None), is added to the token embedding; for PS it is
added to E(x) and E(rc(x)) alike before the RCPS flip, which keeps exact equivariance.
Time conditioning (``time_conditioning: true``, optional: MDLM found it makes little difference,
and without it samplers can cache x_theta): sinusoidal features of the diffusion time t in [0, 1]
through a 2-layer MLP, added to the token embedding like the class vector (so PS stays exactly
equivariant); such a model must be called with ``t`` (batch,).
The embedding and head are padded to a multiple of ``pad_vocab_multiple``; logits are sliced
back to the real vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnadiff.models.caduceus import BiMamba, RCPSWrapper
from dnadiff.models.mamba import Block, Mamba, RMSNorm, ssm_kwargs
from dnadiff.models.model_config import validate_config
from dnadiff.tokenizer import Tokenizer, reverse_complement_ids

InferenceState = list[tuple[torch.Tensor, torch.Tensor]]


class TimeEmbedding(nn.Module):
    """t (batch,) -> (batch, 1, d): sinusoidal features at geometric frequencies, then an MLP."""

    def __init__(self, d: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        half = d // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None] * 1000.0
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1)).unsqueeze(1)


class DNALM(nn.Module):
    """Mamba / BiMamba / Caduceus-PH / Caduceus-PS language model built from a config dict."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        cfg = validate_config(config)
        self._config = cfg
        self.arch: str = cfg["arch"]
        self.causal: bool = not cfg["bidirectional"]
        self.rc_equivariant: bool = cfg["rcps"]
        self.vocab_size: int = cfg["vocab_size"]
        self.n_classes: int = cfg["n_classes"]
        d = cfg["d_model"]
        self.d_model = d
        self.d_hidden: int = 2 * d if self.rc_equivariant else d
        mult = cfg["pad_vocab_multiple"]
        self.padded_vocab_size = math.ceil(self.vocab_size / mult) * mult

        comp = torch.arange(self.padded_vocab_size)
        comp[: self.vocab_size] = Tokenizer().complement_map
        self.register_buffer("complement_map", comp, persistent=False)

        self.embedding = nn.Embedding(self.padded_vocab_size, d)
        self.class_embedding = nn.Embedding(self.n_classes + 1, d) if self.n_classes > 0 else None
        self.time_conditioned: bool = cfg["time_conditioning"]
        self.time_embedding = TimeEmbedding(d) if self.time_conditioned else None
        ssm = ssm_kwargs(cfg, d)
        blocks = []
        for _ in range(cfg["n_layer"]):
            if self.causal:
                mixer: nn.Module = Mamba(d, bias=cfg["bias"], **ssm)
            else:
                mixer = BiMamba(d, bias=cfg["bias"], weight_tie=cfg["weight_tie"], **ssm)
            block: nn.Module = Block(d, mixer, norm_eps=cfg["norm_eps"], scan_backend=cfg["scan_backend"])
            blocks.append(RCPSWrapper(block, cfg["rcps_swap_halves"]) if self.rc_equivariant else block)
        self.blocks = nn.ModuleList(blocks)
        norm_f: nn.Module = RMSNorm(d, eps=cfg["norm_eps"], scan_backend=cfg["scan_backend"])
        self.norm_f = RCPSWrapper(norm_f) if self.rc_equivariant else norm_f
        self.lm_head = None if cfg["tie_embeddings"] else nn.Linear(d, self.padded_vocab_size, bias=False)
        self._init_weights()

    # ------------------------------------------------------------------ config and init
    @property
    def config(self) -> dict:
        """The full, validated config (a JSON-serialisable copy): ``model_from_config`` rebuilds the model."""
        return dict(self._config)

    @property
    def scan_backend(self) -> str:
        return self._config["scan_backend"]

    @scan_backend.setter
    def scan_backend(self, backend: str) -> None:
        """Switch the selective-scan backend of every layer (e.g. ``ref`` to check ``torch``)."""
        self._config = validate_config({**self._config, "scan_backend": backend})
        for module in self.modules():
            if hasattr(module, "scan_backend") and module is not self:
                module.scan_backend = backend

    def _init_weights(self) -> None:
        """mamba-ssm's ``_init_weights``: zero linear biases (except dt_proj's), N(0, 0.02) embeddings,
        and out_proj weights rescaled by 1/sqrt(n_layer) after kaiming init (GPT-2 style)."""
        std = self._config["initializer_range"]
        n_layer = self._config["n_layer"]
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "out_proj_rev.weight")):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(n_layer)

    # ------------------------------------------------------------------ inputs
    def _check_ids(self, input_ids: torch.Tensor, ndim: int) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long:
            got = input_ids.dtype if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be a LongTensor, got {got}")
        if input_ids.dim() != ndim:
            raise ValueError(f"input_ids must have {ndim} dims, got shape {tuple(input_ids.shape)}")
        if input_ids.numel():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            if lo < 0 or hi >= self.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token id {bad} is outside the vocabulary 0..{self.vocab_size - 1}")

    def _class_vector(self, cond: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        """(batch, 1, d) class embedding (null label when cond is None), or None without classes."""
        if self.class_embedding is None:
            if cond is not None:
                raise ValueError("cond was given but this model has n_classes=0 (no class conditioning)")
            return None
        if cond is None:
            cond = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
        if not isinstance(cond, torch.Tensor) or cond.dtype != torch.long or cond.shape != (batch,):
            shape = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a LongTensor of shape ({batch},), got {shape}")
        lo, hi = int(cond.min()), int(cond.max())
        if lo < 0 or hi > self.n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"class label {bad} is outside 0..{self.n_classes} ({self.n_classes} = null label)")
        return self.class_embedding(cond).unsqueeze(1).float()

    def reverse_complement(self, input_ids: torch.Tensor) -> torch.Tensor:
        """rc(x) = complement(flip(x)) on (batch, length) ids."""
        return reverse_complement_ids(input_ids, self.complement_map)

    def _time_vector(self, t: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(batch, 1, d) time embedding for time-conditioned models, else None."""
        if self.time_embedding is None:
            if t is not None:
                raise ValueError("t was given but this model has time_conditioning=false")
            return None
        if t is None:
            raise ValueError("this model is time-conditioned (time_conditioning=true): pass t of shape (batch,)")
        t = t.reshape(-1) if t.numel() == batch else t
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        return self.time_embedding(t)

    def _embed(self, input_ids: torch.Tensor, cond: torch.Tensor | None, t: torch.Tensor | None = None) -> torch.Tensor:
        c = self._class_vector(cond, input_ids.shape[0], input_ids.device)
        tv = self._time_vector(t, input_ids.shape[0])
        if tv is not None:
            c = tv if c is None else c + tv
        h = self.embedding(input_ids).float()
        if c is not None:
            h = h + c
        if not self.rc_equivariant:
            return h
        h_rc = self.embedding(self.reverse_complement(input_ids)).float()
        if c is not None:
            h_rc = h_rc + c
        return torch.cat([h, h_rc], dim=0)  # the strands stacked (see _hidden)

    # ------------------------------------------------------------------ forward
    def hidden_states(
        self, input_ids: torch.Tensor, cond: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(batch, length, d_hidden) after the final norm.

        For Caduceus-PS (d_hidden = 2 * d_model) hidden(rc(x)) = flip over sequence and channels
        of hidden(x); pool RC-invariantly with ``dnadiff.models.rc_invariant_pool``.
        """
        h = self._hidden(input_ids, cond, t)
        return RCPSWrapper.unstack(h, input_ids.shape[0]) if self.rc_equivariant else h

    def _hidden(self, input_ids: torch.Tensor, cond: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor:
        """Hidden states after the final norm; for Caduceus-PS in the stacked layout (2 * batch,
        length, d_model) that RCPSWrapper runs its module on: [h[..., :D]; flipSC(h[..., D:])].
        Between two RCPS blocks the unstack/stack pair is the identity (flipSC twice), so the
        stack runs in that layout from the embedding (E(x) + c on top of E(rc(x)) + c) to the
        head, the same numbers without the per-layer flips and concatenations."""
        self._check_ids(input_ids, 2)
        h = self._embed(input_ids, cond, t)
        for block in self.blocks:
            h = block.run_stacked(h) if self.rc_equivariant else block(h)
        return self.norm_f.run_stacked(h) if self.rc_equivariant else self.norm_f(h)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from hidden states; for Caduceus-PS from the stacked layout of ``_hidden``:
        h[..., :D] W^T + flip_channels(h[..., D:]) W[comp]^T, where h[..., D:] is flipSC of the
        second strand, is that strand's logits under W[comp] flipped along the sequence."""
        w = self.embedding.weight if self.lm_head is None else self.lm_head.weight
        if self.rc_equivariant:
            b = h.shape[0] // 2
            logits = F.linear(h[:b], w) + F.linear(h[b:], w[self.complement_map]).flip(1)
        else:
            logits = F.linear(h, w)
        return logits[..., : self.vocab_size].float()

    def forward(
        self, input_ids: torch.Tensor, cond: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (batch, length, vocab_size); conjoined over x and rc(x) when config ``conjoin``."""
        if self._config["conjoin"]:
            return self.conjoined_logits(input_ids, cond, t)
        return self._head(self._hidden(input_ids, cond, t))

    def conjoined_logits(
        self, input_ids: torch.Tensor, cond: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Post-hoc conjoining: (logits(x) + flip_seq(logits(rc(x)))[..., comp]) / 2, RC-invariant.

        With this, logits(rc(x)) = flip_seq(logits(x))[..., comp] holds exactly, as for PS.
        """
        if self.causal:
            raise ValueError("conjoining needs a bidirectional model; this one is causal (arch='mamba')")
        fwd = self._head(self._hidden(input_ids, cond, t))
        rev = self._head(self._hidden(self.reverse_complement(input_ids), cond, t))
        comp = self.complement_map[: self.vocab_size]
        return 0.5 * (fwd + rev.flip(1)[..., comp])

    # ------------------------------------------------------------------ recurrent decoding
    def allocate_inference_state(self, batch_size: int, device: torch.device | None = None) -> InferenceState:
        """Zero per-layer (conv_state, ssm_state) for :meth:`step` (causal models only)."""
        self._require_causal("allocate_inference_state")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [blk.mixer.allocate_state(batch_size, device) for blk in self.blocks]

    def step(
        self, token_ids: torch.Tensor, state: InferenceState, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, InferenceState]:
        """Feed one token per sequence (batch,) -> (logits (batch, vocab_size), new state).

        Feeding x_1..x_L one at a time gives the same logits as ``forward`` on x_1..x_L.
        """
        self._require_causal("step")
        self._check_ids(token_ids, 1)
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} layers, the model has {len(self.blocks)}")
        h = self._embed(token_ids.unsqueeze(1), cond).squeeze(1)
        new_state = []
        for block, layer_state in zip(self.blocks, state):
            h, layer_state = block.step(h, layer_state)
            new_state.append(layer_state)
        return self._head(self.norm_f(h)), new_state

    def _require_causal(self, what: str) -> None:
        if not self.causal:
            raise ValueError(f"{what} needs a causal model (arch='mamba'); this one is arch={self.arch!r}")
