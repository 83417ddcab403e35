"""Exercise 7 -- the PPO clipped surrogate with approx-KL and clip fraction (World4RL, Eq. 8).

With ratio_t = pi(a_t | x_t) / pi_old(a_t | x_t) = exp(newlogprob - oldlogprob) and advantages A_t:

    L_clip = mean( max( -A_t ratio_t, -A_t clip(ratio_t, 1 - eps, 1 + eps) ) )

(the pessimistic bound, written as a loss to minimise). Also return two diagnostics: approx_kl, the
low-variance estimator mean((ratio - 1) - log ratio) of KL(pi_old || pi), which is >= 0; and clipfrac,
the fraction of samples with |ratio - 1| > eps; and the ratio itself.

    python -m exercises.grade ppo_clip
"""

import torch


def clipped_policy_loss(newlogprob: torch.Tensor, oldlogprob: torch.Tensor, advantages: torch.Tensor,
                        clip_coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (B,) -> (pg_loss, approx_kl, clipfrac, ratio): three scalars and the (B,) ratios."""
    raise NotImplementedError("exercise 7: write clipped_policy_loss (Eq. 8)")
