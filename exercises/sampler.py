"""Exercise 3 -- one Euler step and one Heun step of the sampler (Karras et al. 2022, Alg. 1).

Sampling solves the probability-flow ODE from pure noise at sigma_max down to sigma = 0:

    dx/dsigma = (x - D(x; sigma)) / sigma

Euler: one slope at the start of the step, x_next = x + (sigma_next - sigma) * d(x, sigma).
Heun: take the Euler step to x_euler, then average the slopes at both ends,
x_next = x + (sigma_next - sigma) * (d(x, sigma) + d(x_euler, sigma_next)) / 2 -- except on the last
step, to sigma_next = 0, where the slope at the end is undefined and the step stays Euler.
`denoise(x, sigma)` is D; sigma and sigma_next are 0-d tensors.

    python -m exercises.grade sampler
"""

from typing import Callable

import torch


def euler_step(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
               sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError("exercise 3: write euler_step")


def heun_step(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
              sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError("exercise 3: write heun_step")
