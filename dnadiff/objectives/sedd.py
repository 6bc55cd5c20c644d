"""SEDD baseline: absorbing-state score entropy (Lou et al. 2024) with MDLM's schedules.

Forward process as MDLM: q(z_t^l | x^l) = alpha_t x^l + (1 - alpha_t) m, alpha_t = exp(-sigma(t)),
so the forward rate from any token y to the mask is sigma'(t) = -alpha'_t / alpha_t.

Score network. At a masked position l the model gives concrete scores s_y ~ p_t(z with z^l = y) /
p_t(z) for every non-mask token y (the K - 1 = 11 other states; the mask entry is excluded). The
network's output o is read as log-scores, scaled by the noise level as in SEDD ("scale by sigma"):

    log s_y = o_y - log(K - 1) + log(alpha_t / (1 - alpha_t)),

so a time-unconditioned network can represent the true scores, alpha_t / (1 - alpha_t) * p(x^l = y | z_t).

Loss: the denoising score entropy. For absorbing diffusion only masked positions contribute, and
the true ratio is r_y = [y = x^l] * alpha_t / (1 - alpha_t) =: c [y = x^l]; with K(a) = a (log a - 1),

    L_DSE = E_t E_{z_t} sum_{l: z_t^l = m} sigma'(t) sum_{y != m} ( s_y - r_y log s_y + K(r_y) )
          = E_t E_{z_t} sum_{l: z_t^l = m} w(t) ( sum_{y != m} s^_y - log s^_{x^l} - 1 ),

with s^_y = exp(o_y - log(K - 1)) = s_y / c and w(t) = sigma'(t) c = -alpha'_t / (1 - alpha_t), the
MDLM weight (1/t for the log-linear schedule). This is the continuous-time NELBO of SEDD's reverse
process, in nats/token, so it is directly comparable with MDLM's (``is_bound = True``). The
training loss leaves out the two end terms; evaluation (``eval_batch``, shared with MDLM) adds the
prior term alpha_1 * (this per-position term at the all-mask input) and the reconstruction term
at t_min, both with SEDD's score entropy (see :mod:`dnadiff.objectives.mdlm`).

Relation to MDLM: with Z = sum_y s^_y, Z - log s^_x - 1 >= log Z - log s^_x = -log(s^_x / Z)
(since Z - 1 >= log Z), i.e. SEDD's bound >= MDLM's bound for x_theta = softmax(o), with equality
exactly when the scores are SUBS-normalised (Z = 1: s_y = alpha_t/(1 - alpha_t) x_theta(y)).
"""

from __future__ import annotations

import math

import torch

from dnadiff.objectives.mdlm import MaskedDiffusion


def score_entropy(logits: torch.Tensor, x: torch.Tensor, z_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Per position sum_{y != m} s^_y - log s^_{x} - 1 at masked positions (0 elsewhere).

    ``logits`` (..., K) are the network's outputs o; s^_y = exp(o_y - log(K - 1)), the mask entry excluded.
    """
    logits = logits.float()
    n_states = logits.shape[-1] - 1
    is_mask = torch.arange(logits.shape[-1], device=logits.device) == mask_id
    rel = logits.masked_fill(is_mask, float("-inf")) - math.log(n_states)
    total = torch.logsumexp(rel, dim=-1).exp()
    log_true = rel.gather(-1, x.unsqueeze(-1)).squeeze(-1)
    term = total - log_true - 1.0
    return torch.where(z_t == mask_id, term, torch.zeros_like(term))


class SEDD(MaskedDiffusion):
    """Absorbing score entropy (continuous-time NELBO, nats/token) on MDLM's noise schedules."""

    def position_loss(self, logits: torch.Tensor, x: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        """The denoising score-entropy term of each masked position (see the module doc)."""
        return score_entropy(logits, x, z_t, self.mask_id)
