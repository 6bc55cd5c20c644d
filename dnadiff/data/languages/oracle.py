"""The exact-oracle denoiser: a language's true conditionals in place of the network.

``LanguageDenoiser(language)`` has the sampler call ``(z, t, rows) -> log x_theta`` of
:class:`dnadiff.sampling.Denoiser`: at a masked position it returns log p(x^l = v | unmasked
z) under the language (exact, by forward-backward; see
:meth:`Language.posterior_marginals` for a z no sequence explains), over the tokenizer's
A, C, G, T (every other token -inf), and carry-over (the one-hot of z) at unmasked positions,
the SUBS parameterisation (SPEC section 3). It does not depend on t, so the cached samplers
reuse it. Sampling with it isolates the sampler's error from the model's. ``dtype=torch.float32``
runs the forward-backward in float32 (about twice as fast; exact up to float32 rounding).
"""

from __future__ import annotations

import torch

from dnadiff.data.languages.base import ACGT_IDS, TOK, Language


class LanguageDenoiser:
    """log x_theta(z) = log of the language's exact posterior marginals (module docstring)."""

    time_conditioned = False

    def __init__(self, language: Language, mask_id: int = TOK.mask_id, vocab_size: int = len(TOK),
                 dtype: torch.dtype = torch.float64) -> None:
        self.language = language
        self.dtype = dtype
        self.mask_id = int(mask_id)
        self.vocab_size = int(vocab_size)
        self.calls = 0
        self.fallback_rows = 0

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, vocab) float64 log-probabilities for z (B, L)."""
        self.calls += 1
        marg = self.language.posterior_marginals(z.cpu(), self.mask_id, self.dtype).to(torch.float64)
        self.fallback_rows += self.language.last_fallback_rows
        out = torch.full((*z.shape, self.vocab_size), float("-inf"), dtype=torch.float64)
        out[..., ACGT_IDS] = torch.log(marg)
        carry = torch.full_like(out, float("-inf"))
        carry.scatter_(-1, z.cpu().unsqueeze(-1), 0.0)
        out = torch.where((z.cpu() != self.mask_id).unsqueeze(-1), carry, out)
        return out.to(z.device)
