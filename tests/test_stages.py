"""Stages 2-5 on the tiny env: each learns what it should, measured."""

import numpy as np
import pytest
import torch

import common
from conftest import TINY, policy_config, stage
from tiny_env import TinyVecEnv

wm_mod = stage("02_world_model")
reward_mod = stage("03_reward")
bc_mod = stage("04_bc")
ppo = stage("05_ppo_refine")


def test_world_model_learns_from_actions(tiny_data, tmp_path):
    args = wm_mod.Args(tasks=[TINY], data_dir=tiny_data, run_dir=tmp_path, history=2, channels=(16, 32),
                       cond_dim=64, steps=400, batch_size=32, lr=1e-3, eval_horizon=5, ckpt_every=200)
    report = wm_mod.main(args)
    r = report["t0=0"]
    # open-loop prediction of held-out episodes beats copying the last frame
    assert np.mean(r["psnr_model"]) > np.mean(r["psnr_copy_last"]) + 1.0, r
    # resume: the checkpoint carries its config and step; a second call does not retrain
    ck = common.load_checkpoint(tmp_path / "world_model.pt", "world_model")
    assert ck["step"] == 400 and ck["config"]["history"] == 2 and ck["config"]["channels"] == (16, 32)
    # the imagination API: N histories in, N frames out, on the 8-bit grid
    wm = wm_mod.load_world_model(tmp_path / "world_model.pt", torch.device("cpu"))
    hist = wm.start(torch.zeros(3, 16, 16, 3, dtype=torch.uint8))
    hist = wm.push(hist, None, torch.zeros(3, 2))
    x = wm.step(*hist)
    assert x.shape == (3, 3, 16, 16)
    assert torch.allclose((x + 1) * 127.5, ((x + 1) * 127.5).round(), atol=1e-3)
    # bf16 imagination: the same held-out open-loop rollout (same sampling noise) in fp32 and in bf16.
    # The precision difference must be far below the model's own error: frames from the two paths
    # agree to >= 10 dB more than either agrees with the real frames (10 dB = a tenth of the squared error).
    episodes = [common.load_episode(p) for p in common.list_episodes(tiny_data, [TINY], split="heldout")]
    rollouts = {}
    for precision in ("fp32", "bf16"):  # open_loop fixes its own sampling noise (noise_seed)
        wm.precision = precision
        rollouts[precision] = wm_mod.open_loop(wm, episodes, 0, 5)
    (im32, real), (im16, _) = rollouts["fp32"], rollouts["bf16"]
    psnr_paths = float(wm_mod.psnr(im16.flatten(0, 1), im32.flatten(0, 1)).mean())
    psnr_model = float(wm_mod.psnr(im32.flatten(0, 1), real.flatten(0, 1)).mean())
    assert psnr_paths > psnr_model + 10, (psnr_paths, psnr_model)
    assert not torch.equal(im16, im32)  # bf16 really ran (autocast on)
    # the open loop draws the same noise whatever the random state before it, and leaves that state as it was
    torch.manual_seed(5)
    before = torch.get_rng_state()
    again, _ = wm_mod.open_loop(wm, episodes, 0, 5)
    assert torch.equal(again, im16) and torch.equal(torch.get_rng_state(), before)
    other, _ = wm_mod.open_loop(wm, episodes, 0, 5, noise_seed=7)
    assert not torch.equal(other, im16)


@pytest.mark.parametrize("labels", ["reached", "agree"])
def test_reward_classifier_separates_success(tiny_data, tmp_path, labels):
    rep = reward_mod.main(reward_mod.Args(task=TINY, data_dir=tiny_data, run_dir=tmp_path, channels=(16, 32),
                                          steps=300, batch_size=64, labels=labels))
    assert rep["heldout"]["f1"] > 0.9, rep
    # `agree` leaves out exactly the frames after a first success whose flag has dropped
    flags = [common.load_episode(p)["success"] for p in common.list_episodes(tiny_data)]
    dropped = sum(int((np.maximum.accumulate(f) & ~f).sum()) for f in flags)
    assert dropped > 0 and rep["unscored_frames_left_out"] == (dropped if labels == "agree" else 0)
    heldout = [common.load_episode(p)["success"] for p in common.list_episodes(tiny_data, split="heldout")]
    assert rep["heldout"]["frames"] == sum(int(reward_mod.scored_mask(f, labels).sum()) for f in heldout)
    by_src = rep["heldout_by_source"]  # the per-source breakdown partitions the held-out errors
    assert set(by_src) <= {"expert", "noisy", "random"} and len(by_src) >= 2
    for k in ("frames", "positives", "false_positives", "false_negatives"):
        assert sum(v[k] for v in by_src.values()) == rep["heldout"][k]
    clf = reward_mod.load_reward(tmp_path / common.task_slug(TINY) / "reward.pt")
    assert 0.05 <= clf.cfg.threshold <= 0.95 and clf.cfg.threshold == rep["threshold"]
    assert clf.cfg.labels == labels and sum(isinstance(m, torch.nn.Conv2d) for m in clf.modules()) == 2


def test_bc_fits_scripted_policy_and_caps_std(tiny_data, tmp_path):
    args = bc_mod.Args(task=TINY, data_dir=tiny_data, run_dir=tmp_path, num_demos=30, channels=(16, 32),
                       steps=400, lr=1e-3, log_std_max=-0.5, eval_episodes=20, workers=1)
    rep = bc_mod.main(args)
    pi = bc_mod.load_policy(tmp_path / common.task_slug(TINY) / "bc.pt")
    assert rep["final_nll"] < rep["initial_nll"] - 2.0  # the NLL falls by a wide margin
    x = torch.rand(4, 2, 3, 16, 16) * 2 - 1
    assert pi.dist(x).stddev.max() <= np.exp(-0.5) + 1e-6  # the cap holds
    assert rep["real"]["success_rate"] >= 0.8, rep["real"]  # the expert solves it 100%


def test_ppo_improves_weak_policy_on_exact_env():
    """PPO alone, with the tiny env standing in for a perfect world model: from a weak policy
    (it drifts towards the goal too slowly, so it rarely gets there) success must rise by a clear margin."""
    torch.manual_seed(0)
    cfg = policy_config()
    pi = bc_mod.GaussianPolicy(cfg)
    with torch.no_grad():
        pi.log_std.fill_(np.log(0.3))
        pi.mu_head.weight.mul_(0.1)
        pi.mu_head.bias.fill_(float(np.arctanh(0.3)))  # mean action ~ (0.3, 0.3)
    critic = ppo.Critic(cfg)
    args = ppo.Args(num_envs=32, learning_rate=1e-3, critic_lr=1e-3, clip_coef=0.2, ent_coef=0.0,
                    target_kl=0.1, gamma=0.95)
    env = TinyVecEnv(32, horizon=8, seed=0)
    opt_pi = torch.optim.Adam(pi.parameters(), lr=args.learning_rate)
    opt_v = torch.optim.Adam(critic.parameters(), lr=args.critic_lr)
    rates = []
    for it in range(30):
        b, succ, count = ppo.collect_rollout(pi, critic, env, 8, args, {})
        rates.append(succ / max(count, 1))
        ppo.ppo_update(pi, critic, opt_pi, opt_v, b, args, train_actor=True)
    start, end = np.mean(rates[:3]), np.mean(rates[-3:])
    assert end > start + 0.3 and end > 0.6, rates


def test_trust_region_stops_the_actor_and_the_rate_adapts():
    """A far too large actor rate: the per-minibatch KL check stops the actor after its first steps
    (without the check all 16 minibatch steps run); the critic keeps learning. Then the KL-adaptive
    rate on hand values: x1.5 below target/2, /1.5 above 2 x target, unchanged between, bounded."""
    torch.manual_seed(0)
    cfg = policy_config()
    env = TinyVecEnv(32, horizon=8, seed=0)
    steps = {}
    for target_kl in (0.02, float("inf")):
        torch.manual_seed(0)
        pi, critic = bc_mod.GaussianPolicy(cfg), ppo.Critic(cfg)
        with torch.no_grad():
            pi.log_std.fill_(np.log(0.1))
        args = ppo.Args(target_kl=target_kl, update_epochs=4, num_minibatches=4)
        b, _, _ = ppo.collect_rollout(pi, critic, env, 8, args, {})
        b["advantages"] = torch.randn_like(b["advantages"])  # a strong, arbitrary push
        opt_pi = torch.optim.Adam(pi.parameters(), lr=0.05)
        opt_v = torch.optim.Adam(critic.parameters(), lr=1e-3)
        v0 = [p.clone() for p in critic.parameters()]
        stats = ppo.ppo_update(pi, critic, opt_pi, opt_v, b, args, train_actor=True)
        steps[target_kl] = stats["actor_steps"]
        assert any(not torch.equal(a, p) for a, p in zip(v0, critic.parameters()))
    assert steps[float("inf")] == 16 and 1 <= steps[0.02] < 8, steps
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-4)
    assert ppo.adapt_learning_rate(opt, 0.005, 0.02) == pytest.approx(1.5e-4)
    assert ppo.adapt_learning_rate(opt, 0.02, 0.02) == pytest.approx(1.5e-4)
    assert ppo.adapt_learning_rate(opt, 0.05, 0.02) == pytest.approx(1e-4)
    for _ in range(20):
        ppo.adapt_learning_rate(opt, 0.0, 0.02)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
