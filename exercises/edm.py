"""Exercise 2 -- EDM preconditioning and the denoising loss (World4RL Eqs. 4 and 7; Karras et al. 2022).

The denoiser is D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)), where F is
the network and, with sigma_data the std of the data,

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

Training regresses F on a target chosen so that D(x_noisy) = x0 exactly when F hits it:

    L = || F_x - (x0 - c_skip x_noisy) / c_out ||^2      (mean over every element)

Why unit weight on F: D - x0 = c_out (F_x - target), so this is EDM's lambda(sigma) ||D - x0||^2 with
lambda = 1 / c_out^2 -- the weighting that makes the loss equally hard at every noise level.
Check the limits: at sigma -> 0, D must return x (c_skip -> 1, c_out -> 0); at sigma -> inf, D must
ignore x (c_skip -> 0) and c_in x must have unit variance.

    python -m exercises.grade edm
"""

import torch


def edm_scalings(sigma: torch.Tensor, sigma_data: float):
    """sigma (B,) -> (c_skip, c_out, c_in, c_noise), each (B,)."""
    raise NotImplementedError("exercise 2: write edm_scalings (Eq. 4)")


def denoising_loss(F_x: torch.Tensor, x0: torch.Tensor, x_noisy: torch.Tensor, c_skip: torch.Tensor,
                   c_out: torch.Tensor) -> torch.Tensor:
    """F_x, x0, x_noisy (B, 3, H, W); c_skip, c_out (B, 1, 1, 1) -> the scalar loss of Eq. 7."""
    raise NotImplementedError("exercise 2: write denoising_loss (Eq. 7)")
