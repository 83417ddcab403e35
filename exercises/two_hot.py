"""Exercise 1 -- two-hot action encoding (World4RL, Sec. III-B, Eq. 5).

The world model sees each action dimension a_i in [low, high] as K weights on K evenly spaced bin
values b_0 = low, ..., b_{K-1} = high. For the two neighbours b_k <= a_i <= b_{k+1}:

    t_i[k]   = (b_{k+1} - a_i) / (b_{k+1} - b_k)
    t_i[k+1] = (a_i - b_k)     / (b_{k+1} - b_k)

and 0 elsewhere. The paper's worked example: a_i = 0.14 on [0, 1] with bin values 0.0, 0.1, ..., 1.0
gives 0.6 at 0.1 and 0.4 at 0.2. Watch what K counts: the example has 11 bin *values* (10 intervals),
and `num_bins` here is the number of values. Values outside [low, high] are clamped to it; an action
exactly on the last bin puts all its weight there. The weights must be differentiable in x.

    python -m exercises.grade two_hot
    WORLD4RL_ANSWERS=exercises/two_hot.py python 02_world_model.py --tasks button-press --run-dir runs/mine
"""

import torch


def two_hot(x: torch.Tensor, low: float, high: float, num_bins: int) -> torch.Tensor:
    """x of any shape -> weights of shape x.shape + (num_bins,), each row summing to 1."""
    raise NotImplementedError("exercise 1: write two_hot (Eq. 5)")
