"""Exercise 6 -- generalised advantage estimation: the targets of Eq. 9 (Schulman et al. 2016).

Over a rollout of `steps` steps in N imagined environments, with V the critic:

    delta_t = r_t + gamma V(x_{t+1}) (1 - done_t) - V(x_t)
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1}           (computed backwards from the end)
    R_t     = A_t + V(x_t)                                           (the critic's regression target)

done_t = 1 when the episode ended after step t (success or the horizon): then nothing of the next
state -- which belongs to a fresh episode after the auto-reset -- may leak back into step t.
V(x_{steps}) is `next_value`, the critic on the observation after the last step.

    python -m exercises.grade gae
"""

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, values, dones (steps, N); next_value (N,) -> (advantages, returns), each (steps, N)."""
    raise NotImplementedError("exercise 6: write gae")
