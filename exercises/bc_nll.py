"""Exercise 4 -- the BC negative log-likelihood with the std cap (World4RL, Sec. III-A, Eqs. 1-2).

The policy is a Gaussian pi(a | x) = N(mu(x), diag(sigma^2)) (Eq. 1); behaviour cloning minimises
L_BC = -E[log pi(a | x)] over expert pairs (Eq. 2). Here sigma is one learned vector exp(log_std),
capped: sigma = exp(clamp(log_std, -5, log_std_max)); the paper's cap is sigma <= 1 (log_std_max = 0).
The log-density of one dimension is -(a - mu)^2 / (2 sigma^2) - ln(sigma) - ln(2 pi) / 2; sum it over
the D action dimensions, average over the batch, and negate.

    python -m exercises.grade bc_nll
"""

import torch


def gaussian_nll(mu: torch.Tensor, log_std: torch.Tensor, a: torch.Tensor, log_std_max: float) -> torch.Tensor:
    """mu, a (B, D); log_std (D,) -> the scalar L_BC."""
    raise NotImplementedError("exercise 4: write gaussian_nll (Eq. 2)")
