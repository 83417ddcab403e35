"""Exercise 5 -- the class-weighted success-classifier loss (World4RL, Sec. III-C, Eq. 3).

The reward R_psi(x) outputs a logit l per frame; with p = sigmoid(l) and labels y in {0, 1}:

    L = -mean( w y log p + (1 - y) log(1 - p) ),   w = pos_weight

Success frames are rare (5-20% of frames), so each positive counts w = (#negatives / #positives)
times. Compute it from logits in a numerically stable way: log p = -softplus(-l),
log(1 - p) = -softplus(l); a logit of 100 must not give inf or nan.

    python -m exercises.grade classifier_loss
"""

import torch


def classifier_loss(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """logits, y (B,) (y as float 0/1); pos_weight a 0-d tensor -> the scalar loss."""
    raise NotImplementedError("exercise 5: write classifier_loss (Eq. 3)")
