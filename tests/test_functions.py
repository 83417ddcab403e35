"""The functions of the exercises (exercises/), each checked on hand-worked values from the paper or
from its definition. `python -m exercises.grade NAME` runs the tests named test_NAME_* here against a
student's function; every assertion says which quantity is wrong, with the value it should have."""

import math

import numpy as np
import pytest
import torch

from conftest import stage

wm = stage("02_world_model")
reward = stage("03_reward")
bc = stage("04_bc")
ppo = stage("05_ppo_refine")


def close(got, want, what: str, atol: float = 1e-6) -> None:
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert torch.allclose(got, want, atol=atol), \
        f"{what}: got {np.round(got.numpy(), 4).tolist()}, want {np.round(want.numpy(), 4).tolist()}"


# --- 1. two-hot (Eq. 5) ------------------------------------------------------------------------
def test_two_hot_paper_example():
    t = wm.two_hot(torch.tensor(0.14, dtype=torch.float64), 0.0, 1.0, 11)
    want = torch.zeros(11, dtype=torch.float64)
    want[1], want[2] = 0.6, 0.4
    close(t, want, "two_hot(0.14) on the 11 bin values 0.0, 0.1, ..., 1.0 (the paper's example: 0.6 at 0.1, 0.4 at 0.2)",
          atol=1e-9)


def test_two_hot_lossless_inside_the_range():
    x = torch.tensor([-1.0, -0.37, 0.0, 0.55, 0.999, 1.0])
    t = wm.two_hot(x, -1.0, 1.0, 21)
    close(t.sum(-1), torch.ones(6), "the sum of each two-hot row")
    close((t * torch.linspace(-1, 1, 21)).sum(-1), x, "sum_k t[k] b_k, the action decoded from its weights")
    assert ((t > 1e-9).sum(-1) <= 2).all(), f"non-zero weights per row: {(t > 1e-9).sum(-1).tolist()}, want at most 2"
    close(t[[0, -1]][:, [0, -1]], torch.eye(2), "the weights of -1 and 1 on the first and last bins")


def test_two_hot_shape_and_clamp():
    x = torch.tensor([[-3.0, 2.0], [0.25, -0.25]])
    t = wm.two_hot(x, -1.0, 1.0, 5)
    assert t.shape == (2, 2, 5), f"two_hot of a (2, 2) tensor with 5 bins: shape {tuple(t.shape)}, want (2, 2, 5)"
    close(t[0], torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]]), "two_hot of -3 and 2, clamped to [-1, 1]")
    close(t[1], torch.tensor([[0, 0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0, 0]]), "two_hot of 0.25 and -0.25 on bins -1, -0.5, 0, 0.5, 1")


def test_two_hot_differentiable():
    x = torch.tensor([0.14], requires_grad=True)
    (wm.two_hot(x, 0.0, 1.0, 11) * torch.arange(11.0)).sum().backward()
    assert x.grad is not None, "two_hot is not differentiable in x (no gradient reached x)"
    close(x.grad, [10.0], "d/dx sum_k k t[k] (the decoded bin index 10 x)", atol=1e-4)


# --- 2. EDM preconditioning and the loss (Eqs. 4, 7) ---------------------------------------------
def test_edm_scalings_values():
    c_skip, c_out, c_in, c_noise = wm.edm_scalings(torch.tensor([0.5]), 0.5)
    close(c_skip, [0.5], "c_skip at sigma = sigma_data = 0.5")
    close(c_out, [0.5 / math.sqrt(2)], "c_out at sigma = sigma_data = 0.5")
    close(c_in, [1 / math.sqrt(0.5)], "c_in at sigma = sigma_data = 0.5")
    close(c_noise, [math.log(0.5) / 4], "c_noise at sigma = 0.5")


def test_edm_scalings_limits():
    c_skip, c_out, _, _ = wm.edm_scalings(torch.tensor([1e-6, 1e4]), 0.5)
    close(c_skip, [1.0, 0.0], "c_skip at sigma -> 0 (D returns x) and sigma -> inf (D ignores x)", atol=1e-7)
    close(c_out, [0.0, 0.5], "c_out at sigma -> 0 and sigma -> inf", atol=1e-5)
    for s in (0.1, 1.0, 10.0):
        c_skip, c_out, c_in, _ = wm.edm_scalings(torch.tensor(s), 0.5)
        close(c_in**2 * (0.25 + s**2), 1.0, f"the variance of c_in x at sigma = {s} (should be 1)", atol=1e-5)
        close(((1 - c_skip) ** 2 * 0.25 + c_skip**2 * s**2) / c_out**2, 1.0,
              f"the variance of F's training target at sigma = {s} (should be 1)", atol=1e-5)


def test_edm_denoising_loss_hand_example():
    x0, x_noisy = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), 1.5)
    c_skip, c_out = torch.full((1, 1, 1, 1), 0.2), torch.full((1, 1, 1, 1), 0.4)
    F_x = torch.full((1, 3, 2, 2), 1.0)
    # target = (0.5 - 0.2 * 1.5) / 0.4 = 0.5; (1.0 - 0.5)^2 = 0.25
    close(wm.denoising_loss(F_x, x0, x_noisy, c_skip, c_out), 0.25,
          "the loss for F_x = 1, x0 = 0.5, x_noisy = 1.5, c_skip = 0.2, c_out = 0.4 (target (x0 - c_skip x_noisy) / c_out = 0.5)")


def test_edm_loss_is_lambda_weighted_loss_on_D():
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.05, 0.5, 5.0])
    x0, n, F_x = (torch.randn(3, 3, 4, 4, generator=g) for _ in range(3))
    x_noisy = x0 + sigma[:, None, None, None] * n
    c_skip, c_out, _, _ = (c[:, None, None, None] for c in wm.edm_scalings(sigma, 0.5))
    D_x = c_skip * x_noisy + c_out * F_x
    lam = 1 / c_out**2
    for i in range(3):
        got = wm.denoising_loss(F_x[i:i + 1], x0[i:i + 1], x_noisy[i:i + 1], c_skip[i:i + 1], c_out[i:i + 1])
        close(got, (lam[i] * (D_x[i] - x0[i]) ** 2).mean(),
              f"the loss on F against EDM's lambda(sigma) ||D - x0||^2 at sigma = {sigma[i].item()}", atol=1e-5)


# --- 3. the sampler --------------------------------------------------------------------------------
def toy_denoiser(x, sigma):  # D(x; sigma) = x / (1 + sigma^2): slopes that differ along a step
    return x / (1 + sigma**2)


def test_sampler_euler_step():
    x, s = torch.tensor([2.0, -1.0]), torch.tensor(1.0)
    # slope at sigma 1: d = (x - x / 2) / 1 = x / 2; x_next = x + (sigma_next - 1) x / 2
    close(wm.euler_step(toy_denoiser, x, s, torch.tensor(0.5)), 0.75 * x,
          "euler_step from sigma 1 to 0.5 with D(x; sigma) = x / (1 + sigma^2)")
    close(wm.euler_step(toy_denoiser, x, s, torch.tensor(0.0)), 0.5 * x, "euler_step from sigma 1 to 0")


def test_sampler_heun_step():
    x, s = torch.tensor([2.0, -1.0]), torch.tensor(1.0)
    # Euler lands at 0.75 x; the slope there (sigma 0.5) is (0.75 x - 0.6 x) / 0.5 = 0.3 x; with the average
    # slope (0.5 x + 0.3 x) / 2 = 0.4 x: x_next = x - 0.5 * 0.4 x = 0.8 x
    close(wm.heun_step(toy_denoiser, x, s, torch.tensor(0.5)), 0.8 * x,
          "heun_step from sigma 1 to 0.5 with D(x; sigma) = x / (1 + sigma^2) (Euler alone gives 0.75 x)")
    close(wm.heun_step(toy_denoiser, x, s, torch.tensor(0.0)), 0.5 * x,
          "heun_step to sigma = 0 (the last step stays Euler: no slope at sigma = 0)")


# --- 4. the BC negative log-likelihood (Eqs. 1-2) -------------------------------------------------
def test_bc_nll_hand_example():
    mu, a = torch.tensor([[0.0, 0.5]]), torch.tensor([[1.0, 0.5]])
    log_std = torch.tensor([0.0, math.log(0.5)])
    # dim 1: sigma 1, (1 - 0)^2 / 2 + 0 + ln(2 pi) / 2; dim 2: sigma 0.5, 0 + ln 0.5 + ln(2 pi) / 2
    want = 0.5 + math.log(2 * math.pi) / 2 + math.log(0.5) + math.log(2 * math.pi) / 2
    close(bc.gaussian_nll(mu, log_std, a, 0.0), want, "-log N(a; mu, sigma^2) for mu (0, 0.5), a (1, 0.5), sigma (1, 0.5)")


def test_bc_nll_std_cap_and_batch_mean():
    mu, a = torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])
    # log_std 1.0 capped at 0: sigma = 1; per sample (a^2 / 2 + ln(2 pi) / 2); the batch mean
    want = ((0.5 + 4.5) / 2) + math.log(2 * math.pi) / 2
    close(bc.gaussian_nll(mu, torch.tensor([1.0]), a, 0.0), want,
          "the NLL with log_std = 1 above the cap log_std_max = 0 (sigma must be 1), averaged over the batch")
    log_std = torch.tensor([0.3], requires_grad=True)
    bc.gaussian_nll(mu, log_std, a, 0.0).backward()
    close(log_std.grad if log_std.grad is not None else torch.tensor([float("nan")]), [0.0],
          "d NLL / d log_std above the cap (the capped sigma does not depend on it)")


# --- 5. the classifier loss (Eq. 3) ----------------------------------------------------------------
def test_classifier_loss_hand_example():
    logits, y = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    close(reward.classifier_loss(logits, y, torch.tensor(1.0)), math.log(2), "BCE of logits 0, 0 on labels 1, 0 (pos_weight 1)")
    close(reward.classifier_loss(logits, y, torch.tensor(3.0)), (3 * math.log(2) + math.log(2)) / 2,
          "BCE of logits 0, 0 on labels 1, 0 with pos_weight 3 (each positive counted 3 times, mean over 2 frames)")


def test_classifier_loss_stable_at_large_logits():
    logits, y = torch.tensor([100.0, -100.0, 100.0]), torch.tensor([1.0, 0.0, 0.0])
    got = reward.classifier_loss(logits, y, torch.tensor(2.0))
    assert torch.isfinite(got), f"BCE at logits +-100: got {got.item()}, want a finite number"
    close(got, 100 / 3, "BCE of logits (100, -100, 100) on labels (1, 0, 0): only the confident false positive costs, 100 / 3",
          atol=1e-4)


# --- 6. GAE (Eq. 9's targets) ------------------------------------------------------------------------
def test_gae_hand_example_with_an_episode_end():
    # one env, 3 steps; the episode ends after step 1 (a success: reward 1), a new one starts at step 2
    r, v = torch.tensor([[0.0], [1.0], [0.0]]), torch.tensor([[0.5], [0.8], [0.3]])
    d, nv = torch.tensor([[False], [True], [False]]), torch.tensor([0.6])
    gamma, lam = 0.9, 0.5
    a2 = 0.0 + 0.9 * 0.6 - 0.3  # bootstraps from next_value
    a1 = 1.0 - 0.8  # done: no value and no advantage from the next (new) episode
    a0 = (0.0 + 0.9 * 0.8 - 0.5) + 0.9 * 0.5 * a1
    adv, ret = ppo.gae(r, v, d, nv, gamma, lam)
    close(adv[1], [a1], "A_1, the last step of an episode (done_1 = 1: nothing of the next episode may enter)")
    close(adv[2], [a2], "A_2, bootstrapped from next_value")
    close(adv[0], [a0], "A_0 = delta_0 + gamma lambda A_1")
    close(ret, adv + v, "the returns R_t = A_t + V(x_t)")


def test_gae_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 7, 3, 0.9, 0.8
    r, v = torch.rand(T, N, generator=g), torch.rand(T, N, generator=g)
    d, nv = torch.rand(T, N, generator=g) < 0.3, torch.rand(N, generator=g)
    want = torch.zeros(T, N)
    for n in range(N):  # the sum of discounted TD errors until the episode ends
        for t in range(T):
            a, k = 0.0, 1.0
            for u in range(t, T):
                v_next = nv[n] if u == T - 1 else v[u + 1, n]
                a += k * (r[u, n] + gamma * v_next * (0.0 if d[u, n] else 1.0) - v[u, n])
                if d[u, n]:
                    break
                k *= gamma * lam
            want[t, n] = a
    adv, ret = ppo.gae(r, v, d, nv, gamma, lam)
    close(adv, want, "the advantages of a random 7-step rollout in 3 envs against a naive loop", atol=1e-5)
    close(ret, want + v, "the returns R_t = A_t + V(x_t)", atol=1e-5)


# --- 7. the clipped surrogate (Eq. 8) ---------------------------------------------------------------
def test_ppo_clip_hand_example():
    # ratios 1.5 and 0.5, advantages +1 and -1, eps 0.2: sample 1 max(-1.5, -1.2) = -1.2; sample 2
    # max(0.5, 0.8) = 0.8; mean -0.2 (the pessimistic bound)
    new, old = torch.log(torch.tensor([1.5, 0.5])), torch.zeros(2)
    pg, kl, clipfrac, ratio = ppo.clipped_policy_loss(new, old, torch.tensor([1.0, -1.0]), 0.2)
    close(ratio, [1.5, 0.5], "the ratios exp(newlogprob - oldlogprob)")
    close(pg, -0.2, "pg_loss for ratios (1.5, 0.5), advantages (+1, -1), eps 0.2 (the max of the two losses, mean)")
    close(clipfrac, 1.0, "clipfrac (both ratios are outside [0.8, 1.2])")
    close(kl, ((1.5 - 1 - math.log(1.5)) + (0.5 - 1 - math.log(0.5))) / 2, "approx_kl = mean((ratio - 1) - log ratio)")


def test_ppo_clip_inside_the_trust_region():
    pg, kl, clipfrac, _ = ppo.clipped_policy_loss(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.tensor([2.0]), 0.2)
    close(pg, -2.2, "pg_loss inside the clip range: the plain surrogate -A ratio")
    close(clipfrac, 0.0, "clipfrac at ratio 1.1 with eps 0.2")
    _, kl, _, _ = ppo.clipped_policy_loss(torch.zeros(3), torch.zeros(3), torch.ones(3), 0.2)
    close(kl, 0.0, "approx_kl of a policy against itself")
