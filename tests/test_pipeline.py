"""End to end: all six stages on the tiny env; and the simulator-gap report catching a wrong world model."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import common
from conftest import TINY, benchmark, policy_config, stage

collect, wm_mod, reward_mod, bc_mod, ppo, ev = (stage(s) for s in (
    "01_collect", "02_world_model", "03_reward", "04_bc", "05_ppo_refine", "06_eval"))
SMALL = dict(channels=(8, 16))


def test_all_six_stages(tmp_path, monkeypatch, capsys):
    d, r = tmp_path / "data", tmp_path / "runs"
    collect.main(collect.Args(tasks=[TINY], data_dir=d, num_expert=20, num_noisy=20, num_random=10,
                              resolution=16, action_repeat=1, max_steps=10, workers=2))
    wm_mod.main(wm_mod.Args(tasks=[TINY], data_dir=d, run_dir=r, history=2, channels=(8, 16), cond_dim=32,
                            steps=30, eval_horizon=4))
    reward_mod.main(reward_mod.Args(task=TINY, data_dir=d, run_dir=r, steps=50, **SMALL))
    bc_mod.main(bc_mod.Args(task=TINY, data_dir=d, run_dir=r, num_demos=10, steps=50, eval_episodes=4, **SMALL))
    ppo.main(ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=2, critic_warmup=1,
                      eval_every=1, eval_episodes=4))
    res = ev.main(ev.Args(task=TINY, data_dir=d, run_dir=r, episodes=6, imagined_episodes=4, videos=1,
                          fidelity_horizon=4))
    t = r / common.task_slug(TINY)
    kept = np.load(t / "bc_eval_starts.npz")  # 04's evaluation starts, for 05's check of imagination
    env = bc_mod.load_policy(t / "bc.pt").cfg.env
    assert list(kept["seeds"]) == common.eval_seeds(4)
    assert np.array_equal(kept["frames"], common.real_start_frames(TINY, env, common.eval_seeds(4)))
    steps = json.loads((t / "bc_eval.json").read_text())["real"]["steps_to_success"]
    ep, n = kept["episode_frames"], kept["lengths"]  # every frame, padded with the last (for the classifier's share)
    assert np.array_equal(ep[:, 0], kept["frames"]) and ep.shape[1] == n.max()
    assert all(L == (s if s is not None else 10) + 1 for L, s in zip(n, steps))  # a success ends the episode
    assert all((ep[i, L - 1:] == ep[i, L - 1]).all() for i, L in enumerate(n))
    for path, st in ((r / "world_model.pt", "world_model"), (t / "reward.pt", "reward"), (t / "bc.pt", "bc"),
                     (t / "ppo_seed0" / "refined.pt", "ppo")):
        assert common.load_checkpoint(path, st)["stage"] == st
    saved = json.loads((t / "eval" / "results.json").read_text())
    assert set(saved["policies"]) == {"bc", "ppo_seed0/refined"}
    for p in saved["policies"].values():
        re, im = p["real"], p["imagined"]
        # counts, rates and steps agree with each other; an episode ends at its first success (<= 10 steps)
        assert re["episodes"] == 6 and re["successes"] == sum(s is not None for s in re["steps_to_success"])
        assert re["success_rate"] == re["successes"] / 6 and all(1 <= s <= 10 for s in re["steps_to_success"] if s)
        assert im["episodes"] == 4 and im["success_rate"] == sum(s is not None for s in im["steps_to_success"]) / 4
        q = p["paired"]  # imagined episode i starts from real episode i's first frame: 4 pairs
        assert q["episodes"] == 4 and sum(q["table"].values()) == 4
        assert q["real_successes"] == sum(s is not None for s in p["real"]["steps_to_success"][:4])
        assert q["imagined_successes"] == sum(s is not None for s in p["imagined"]["steps_to_success"][:4])
        gap, lo, hi = q["gap_ci95"]
        assert gap == pytest.approx((q["imagined_successes"] - q["real_successes"]) / 4) and lo <= gap <= hi
        # whose errors: each error is counted once, the classifier's part within it
        cells = q["table"]
        assert q["misses"] == cells["real_success_imagined_fail"] and 0 <= q["misses_classifier"] <= q["misses"]
        assert 0 <= q["false_positives_classifier"] <= min(cells["real_fail_imagined_success"],
                                                            q["classifier_fires_on_real_failures"])
        assert q["classifier_silent_on_real_successes"] <= q["real_successes"]
    # copy-last-frame PSNR is a property of the held-out data alone: recompute it independently
    fid = saved["fidelity"]["world_model"]
    held = [common.load_episode(p) for p in common.list_episodes(d, [TINY], split="heldout")]
    for h in (0, 3):
        mse = [np.mean(((e["frames"][0] / 255.0) - (e["frames"][h + 1] / 255.0)) ** 2) for e in held]
        ref = np.mean([-10 * np.log10(max(m, 1e-10)) for m in mse])
        assert fid["psnr_copy_last"][h] == pytest.approx(ref, abs=1e-3)
    assert len(fid["psnr_model"]) == 4 and np.isfinite(fid["psnr_model"]).all()
    # one checkpoint, one number: 02's report and 06's fidelity draw the same sampling noise
    f02 = json.loads((r / "world_model_eval" / "world_model_fidelity.json").read_text())["t0=0"]
    assert f02["psnr_model"] == pytest.approx(fid["psnr_model"]) and f02["ssim_model"] == pytest.approx(fid["ssim_model"])
    a03 = json.loads((t / "reward_metrics.json").read_text())["imagined"]
    a = saved["classifier_agreement"]
    assert a == a03  # and 03's classifier check on imagined frames is 06's
    assert a["episodes"] == len(held) and a["per_step_agreement"] == pytest.approx(np.mean(a["agreement_by_step"]))
    assert (t / "eval" / "results.md").read_text().startswith("###")
    assert res["task"] == TINY
    assert set(saved["vs_bc"]) == {"ppo_seed0/refined"} and "real gain over BC" in (t / "eval" / "results.md").read_text()
    # the threshold sweep reads imagined success off one recorded rollout: at the stored threshold it
    # must equal what 06 measured by ending episodes at the classifier's verdict
    sweep = benchmark("threshold_sweep")
    th = reward_mod.load_reward(t / "reward.pt").cfg.threshold
    text = sweep.main(sweep.Args(task=TINY, data_dir=d, run_dir=r, episodes=4, thresholds=(0.0, th, 1.0)))
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| 0") or line.startswith("| 1")]
    k_bc = saved["policies"]["bc"]["imagined"]["successes"]
    assert rows[1][1].startswith(f"{k_bc}/4"), (text, k_bc)
    assert rows[1][3] == f"{saved['policies']['bc']['paired']['agreement']:.0%}", text  # per-start agreement too
    assert rows[0][1].startswith("4/4") and rows[2][1].startswith("0/4")  # p > 0 always fires, p > 1 never
    # the persistence sweep with several noise seeds and a second sampler: each rule and each mean reads its own
    # rollouts (the rule "1 Euler steps" is that sampler's first sample; seed 1234 of the scoring sampler is 06's)
    ps = benchmark("persistence_sweep")
    out = ps.main(ps.Args(task=TINY, run_dir=r, policies=[t / "bc.pt"], episodes=4, seed_offset=0, persist=(1,),
                          workers=1, noise_seeds=2, denoising_steps=(1,)))["bc"]
    for sampler, first in (("scoring sampler", out["k=1"]), ("1 Euler steps", out["1 Euler steps, k=1"])):
        m = out[f"{sampler}: samples"]
        assert len(m["imagined"]) == 2 and m["imagined"][0] == first["imagined"]
        assert m["mean"] == pytest.approx(np.mean(m["imagined"])) == pytest.approx(sum(m["per_start"]))
    assert out["k=1"]["imagined"] == sum(s is not None for s in saved["policies"]["bc"]["imagined"]["steps_to_success"][:4])
    check_replay_fidelity(r, t, saved)
    # rescore_kept reads each policy as the stopping rule did: BC's score and the kept one's, to the digit
    rs = benchmark("rescore_kept")
    rates = rs.main(rs.Args(task=TINY, data_dir=d, run_dir=r, episodes=4))[str(r / "world_model.pt")]
    lg = json.loads((t / "ppo_seed0" / "log.json").read_text())
    assert rates == {"bc.pt": lg["bc_imagined"]["success_rate"], "ppo_seed0/refined.pt": lg["best"]["success_rate"]}
    # a time budget stops PPO after the iteration that passes it, and that iteration is still scored
    log = ppo.main(ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=50, critic_warmup=1,
                            eval_every=10, eval_episodes=4, max_minutes=1e-6, seed=1),
                   after_iteration=lambda it, pi, row: row.update(hook=(it, pi.cfg.frame_stack)))
    assert len(log["iterations"]) == 1 and "imagined_heldout_success" in log["iterations"][0]
    assert log["iterations"][0]["hook"] == (1, 2)  # the hook saw iteration 1 and the policy
    assert (t / "ppo_seed1" / "log.json").exists()
    # resuming the interrupted run reproduces an uninterrupted one exactly (the random streams are in state.pt)
    short = dict(task=TINY, data_dir=d, num_envs=4, iterations=3, critic_warmup=1, eval_every=10, eval_episodes=4, seed=1)
    resumed = ppo.main(ppo.Args(run_dir=r, **short))
    r2 = tmp_path / "runs_uninterrupted"
    shutil.copytree(r, r2, ignore=shutil.ignore_patterns("ppo_seed*"))
    whole = ppo.main(ppo.Args(run_dir=r2, **short))
    assert [i["imagined_train_success"] for i in resumed["iterations"]] == [
        i["imagined_train_success"] for i in whole["iterations"]]
    a_st, b_st = (common.load_checkpoint(x / common.task_slug(TINY) / "ppo_seed1" / "state.pt", "ppo_state")
                  for x in (r, r2))
    assert a_st["iteration"] == b_st["iteration"] == 3
    assert all(torch.equal(a_st["policy"][k], b_st["policy"][k]) for k in a_st["policy"])
    # the stopping rule: the kept policy is the best held-out imagined score, and only if it beats BC's
    # by min_improvement (0.05); otherwise refined.pt holds BC's own weights (scores scripted here)
    bc_state = bc_mod.load_policy(t / "bc.pt").state_dict()
    wm_cfg = wm_mod.load_world_model(r / "world_model.pt", torch.device("cpu")).cfg
    assert saved["imagination"]["denoising_steps"] == wm_cfg.score_denoising_steps != wm_cfg.denoising_steps
    # BC is also read once in the sampler PPO trains in; below half its scoring-sampler success, a warning
    score_steps, train_steps = wm_cfg.score_denoising_steps, wm_cfg.denoising_steps

    def scripted(scores, in_training_sampler):
        return lambda *a, **k: samplers.append(a[1].num_steps) or {
            "episodes": 4, "successes": 0, "ci95": (0.0, 1.0), "mean_steps_to_success": None, "steps_to_success": [],
            "success_rate": next(scores) if a[1].num_steps == score_steps else in_training_sampler}
    Env, made = ppo.ImaginedEnv, []  # num_steps of the world model behind each training env

    class TrainingEnv(Env):
        def __init__(self, wm, *a):
            made.append(wm.num_steps)
            Env.__init__(self, wm, *a)
    monkeypatch.setattr(ppo, "ImaginedEnv", TrainingEnv)
    for seed, scores, kept, in_train in ((2, [0.5, 0.53, 0.4, 0.7, 0.6], 3, 0.2), (3, [0.5, 0.54, 0.3, 0.2, 0.1], 0, 0.3)):
        samplers, made[:] = [], []  # the stopping rule scores with the scoring sampler, as 06 does
        monkeypatch.setattr(ppo, "imagined_success", scripted(iter(scores), in_train))
        capsys.readouterr()
        log = ppo.main(ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=4, critic_warmup=0,
                                eval_every=1, eval_episodes=4, learning_rate=1e-3, seed=seed))
        ck = common.load_checkpoint(t / f"ppo_seed{seed}" / "refined.pt", "ppo")
        assert log["best"]["iteration"] == kept and ck["iteration"] == kept
        assert samplers == [score_steps, train_steps] + [score_steps] * 4
        assert log["bc_imagined_training_sampler"]["success_rate"] == in_train
        # below half (seed 2) a warning; PPO still trains in its own sampler
        lost = in_train < 0.5 * scores[0]
        assert ("loses most of BC's imagined successes" in capsys.readouterr().out) == lost
        assert log["imagination"]["denoising_steps"] == train_steps == made[0]
        same_as_bc = all(torch.equal(ck["policy"][k], v) for k, v in bc_state.items() if k != "log_std")  # mean action
        assert same_as_bc == (kept == 0)
    # the trust region (--max-action-shift): a policy beyond it is not kept, however well it scores,
    # and refinement ends at the first one; a second call resumes into the ended run and adds nothing
    scores, shifts = iter([0.5, 0.6, 0.7, 0.9, 0.95]), iter([0.1, 0.2, 0.4, 0.5])
    monkeypatch.setattr(ppo, "imagined_success", scripted(scores, 0.5))
    monkeypatch.setattr(ppo, "mean_action_shift", lambda *a, **k: next(shifts))
    args = ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=4, critic_warmup=0, eval_every=1,
                    eval_episodes=4, max_action_shift=0.3, seed=5)
    log = ppo.main(args)
    assert log["best"]["iteration"] == 2 and log["best"]["mean_action_shift"] == 0.2
    assert len(log["iterations"]) == 3 and log["left_trust_region"] == {"iteration": 3, "mean_action_shift": 0.4}
    again = ppo.main(args)  # nothing is added, and the throughput of the call that trained stays in log.json
    assert len(again["iterations"]) == 3 and again["imagined_steps_per_s"] == log["imagined_steps_per_s"] > 0
    # with the limit lifted, the run goes on, and its stopping rule chooses as an unlimited one would: the
    # policy that left is kept after all (0.9 beats 0.7), then iteration 4's (0.95); the finished run no
    # longer fits a 0.3 limit
    log = ppo.main(dataclasses.replace(args, max_action_shift=0.0))
    assert len(log["iterations"]) == 4 and "left_trust_region" not in log
    assert log["best"] == {"iteration": 4, "success_rate": 0.95, "mean_action_shift": 0.5}
    assert torch.load(t / "ppo_seed5" / "refined.pt", weights_only=True)["iteration"] == 4
    with pytest.raises(common.UserError, match="max-action-shift"):
        ppo.main(args)
    monkeypatch.undo()
    # --denoising-steps: PPO's rollouts imagine with that many steps, the stopping rule still scores with the
    # scoring sampler, and a run does not resume in another sampler than the one it was trained in
    n = next(k for k in range(2, 9) if k not in (wm_cfg.denoising_steps, wm_cfg.score_denoising_steps))
    envs = []  # num_steps of the world model behind every imagined env made

    class Spy(ppo.ImaginedEnv):
        def __init__(self, wm, *a):
            envs.append(wm.num_steps)
            super().__init__(wm, *a)

    monkeypatch.setattr(ppo, "ImaginedEnv", Spy)
    args = ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=1, critic_warmup=0, eval_every=1,
                    eval_episodes=4, denoising_steps=n, seed=6)
    log = ppo.main(args)
    assert log["imagination"]["denoising_steps"] == n and envs.count(n) == 2  # BC read in it, then training
    assert envs == [wm_cfg.score_denoising_steps, n, n, wm_cfg.score_denoising_steps]  # BC, BC, train, it 1
    with pytest.raises(common.UserError, match="denoising-steps"):
        ppo.main(dataclasses.replace(args, iterations=2, denoising_steps=0))
    monkeypatch.undo()
    # no stopping rule and another std cap: refined.pt is the last iteration, with the cap in its config
    log = ppo.main(ppo.Args(task=TINY, data_dir=d, run_dir=r, num_envs=4, iterations=3, critic_warmup=0,
                            eval_every=2, eval_episodes=4, stopping_rule=False, std_cap=2.0, seed=4))
    ck = common.load_checkpoint(t / "ppo_seed4" / "refined.pt", "ppo")
    assert ck["iteration"] == 3 and log["best"]["iteration"] == 3
    assert ck["config"]["log_std_max"] == pytest.approx(np.log(2.0))
    assert log["best"]["success_rate"] == log["iterations"][-1]["imagined_heldout_success"]
    # the logged shift is the distance of the mean actions on the held-out frames, recomputed here
    held = common.Transitions(common.list_episodes(d, [TINY], split="heldout"), 2)
    frames = held.gather(*held.index.T)[0]  # (n, 2, 3, 16, 16)
    mu_last, mu_bc = (bc_mod.load_policy(p).mean(frames) for p in (t / "ppo_seed4" / "refined.pt", t / "bc.pt"))
    want = float((mu_last - mu_bc).pow(2).sum(1).mean().sqrt().detach())
    assert want > 0 and log["iterations"][-1]["mean_action_shift"] == pytest.approx(want, rel=1e-4)
    # a second run of stage 2 returns at once with the saved report instead of retraining
    again = wm_mod.main(wm_mod.Args(tasks=[TINY], data_dir=d, run_dir=r, history=2, channels=(8, 16), cond_dim=32,
                                    steps=30, eval_horizon=4))
    assert again["step"] == 30 and again == json.loads((r / "world_model_eval" / "world_model_fidelity.json").read_text())
    # a world model of another task is refused by the stages that imagine with it
    try:
        wm_mod.load_world_model(r / "world_model.pt", torch.device("cpu"), task="button-press")
        raise AssertionError("a world model of another task was accepted")
    except common.UserError as e:
        assert "not on 'button-press'" in str(e)
    # stage 1 collects rollouts of a refined policy too (the paper's recipe, one round later)
    collect.main(collect.Args(tasks=[TINY], data_dir=d, policy=t / "ppo_seed0" / "refined.pt", num_policy=2,
                              resolution=16, action_repeat=1, max_steps=10, workers=1))
    assert len(common.list_episodes(d, [TINY], sources=("policy",))) == 2
    # a checkpoint from another stage is refused with a clear message
    try:
        bc_mod.load_policy(t / "reward.pt")
        raise AssertionError("a reward checkpoint was accepted as a policy")
    except common.UserError as e:
        assert "stage 'reward'" in str(e)


class ShowsSuccessEarly(wm_mod.WorldModel):
    """A deliberately wrong world model: whatever the action, the next frame shows the square
    on the goal, i.e. success is shown long before the real env would reach it."""

    def __init__(self, T: int, res: int):
        self.T, self.device, self.res = T, torch.device("cpu"), res
        self.cfg = wm_mod.WorldModelConfig(history=T, num_bins=21, action_encoding="two-hot", channels=(8,),
                                           cond_dim=32, sigma_data=0.5, denoising_steps=1, sampler="euler",
                                           action_dim=2, resolution=res, env={}, tasks=[TINY])

    def step(self, frames, actions, mask):
        from tiny_env import GOAL, render_batch
        img = torch.from_numpy(render_batch(np.repeat(GOAL[None], len(frames), 0), self.res))
        return common.to_float(img)


class CopyLast:
    """A world model that imagines the newest frame of its history again: its teacher-forced prediction
    of x_{t+1} is the real x_t, its open loop stays at x_0. Checks which frame conditions which step."""

    def __init__(self, wm):
        self.wm, self.device = wm, wm.device
        self.push = wm_mod.WorldModel.push

    def start(self, first_frames):
        return self.wm.start(first_frames)

    def step(self, frames, actions, mask):
        return frames[:, -1]


def check_replay_fidelity(r, t, saved):
    """benchmarks/replay_fidelity.py on the tiny pipeline's BC: the same real episodes as 06, actions that
    reproduce them in the real env, and the teacher-forced and open-loop histories at the right frames."""
    rf = benchmark("replay_fidelity")
    out = rf.main(rf.Args(task=TINY, run_dir=r, policies=[t / "bc.pt"], episodes=4, seed_offset=0, workers=1,
                          denoising_steps=(1, 2)))["bc"]
    assert out["real_per_start"] == [s is not None for s in saved["policies"]["bc"]["real"]["steps_to_success"][:4]]
    k = out["real"]
    for s in out["samplers"].values():
        for m in s.values():
            assert 0 <= m["success_frame_fires"] <= k and m["fires_in_failures"] <= 4 - k and np.isfinite(m["psnr"])
    pi = bc_mod.load_policy(t / "bc.pt")
    env_cfg = pi.cfg.env
    seeds = common.eval_seeds(4, 0)
    real = common.evaluate_real(bc_mod.load_policy, t / "bc.pt", TINY, env_cfg, seeds, 1, keep_frames=4)
    frames = real["frames"]
    actions = [rf.real_actions(pi, f) for f in frames]
    env = common.make_env(TINY, common.EnvConfig(**env_cfg))
    for seed, f, a in zip(seeds, frames, actions):  # the recomputed actions replay each real episode exactly
        assert len(a) == len(f) - 1 and np.array_equal(env.reset(seed), f[0])
        assert all(np.array_equal(env.step(a_t.numpy())[0], f[i + 1]) for i, a_t in enumerate(a))
    clf = reward_mod.load_reward(t / "reward.pt")
    fake = CopyLast(wm_mod.load_world_model(r / "world_model.pt", torch.device("cpu")))
    u = lambda x: common.to_float(torch.from_numpy(x))  # noqa: E731
    for teacher in (True, False):
        fires, psnr = rf.replay(fake, clf, frames, actions, teacher)
        for f, fi, p in zip(frames, fires, psnr):
            want = f[:-1] if teacher else np.repeat(f[:1], len(f) - 1, 0)  # the frame imagined as x_{t+1}
            assert np.allclose(p, wm_mod.psnr(u(want), u(f[1:])).numpy(), atol=1e-4)
            assert np.array_equal(fi, clf.success(u(want)).numpy())


def test_gap_report_detects_wrong_world_model(tiny_data, tmp_path):
    reward_mod.main(reward_mod.Args(task=TINY, data_dir=tiny_data, run_dir=tmp_path, steps=300, channels=(16, 32)))
    clf = reward_mod.load_reward(tmp_path / common.task_slug(TINY) / "reward.pt")
    # a weak policy: barely moves, so it rarely succeeds in the real env
    cfg = policy_config()
    torch.manual_seed(0)
    pi = bc_mod.GaussianPolicy(cfg)
    with torch.no_grad():
        pi.mu_head.weight.zero_(), pi.mu_head.bias.zero_()
    path = tmp_path / "weak.pt"
    bc_mod.save_policy(path, "bc", pi)
    seeds = common.eval_seeds(20)
    real = common.evaluate_real(bc_mod.load_policy, path, TINY, cfg.env, seeds, workers=1, keep_frames=20)
    frames = real.pop("frames")
    starts = common.real_start_frames(TINY, cfg.env, seeds)  # what 06 and the threshold sweep start from
    assert all(np.array_equal(s, f[0]) for s, f in zip(starts, frames))
    imagined = ppo.imagined_success(pi, ShowsSuccessEarly(2, 16), clf, torch.from_numpy(starts), 20, 10)
    gap = ev.simulator_gap(real, imagined)
    assert real["success_rate"] < 0.2 and imagined["success_rate"] > 0.8
    assert not gap["trusted"] and gap["success_gap"] > 0.6
    # per start: the real failures that imagination calls successes are counted as such
    q = ev.paired_gap(real, imagined, frames, clf)
    fails = sum(s is None for s in real["steps_to_success"])
    assert q["table"]["real_fail_imagined_success"] == fails - sum(
        s is None for r, s in zip(real["steps_to_success"], imagined["steps_to_success"]) if r is None)
    assert q["table"]["real_fail_imagined_success"] >= fails - 3 and q["agreement"] < 0.3
    # whose errors: the classifier is silent on the weak policy's real frames, so they are the world model's
    assert q["false_positives_classifier"] <= 2 < q["table"]["real_fail_imagined_success"]
    # and the gap of a world model that is exactly right is small: compare the policy with itself
    assert ev.simulator_gap(real, real)["trusted"]
    # 06's disagreement video: the imagined twins' frames start at the real first frame, end at the
    # first imagined success, and the video holds exactly the real-fail / imagined-success starts
    kept = ppo.imagined_success(pi, ShowsSuccessEarly(2, 16), clf, torch.from_numpy(starts), 20, 10, keep_frames=True)
    assert kept["steps_to_success"] == imagined["steps_to_success"]
    assert [len(f) for f in kept["frames"]] == [s + 1 if s else 11 for s in kept["steps_to_success"]]
    assert all(np.array_equal(f[0], s) for f, s in zip(kept["frames"], starts))
    n = ev.save_disagreement_video(tmp_path / "disagree.mp4", real, kept, frames, kept["frames"], 3)
    assert n == min(3, q["table"]["real_fail_imagined_success"]) > 0 and (tmp_path / "disagree.mp4").stat().st_size
    assert ev.save_disagreement_video(tmp_path / "none.mp4", real, real, frames, frames, 3) == 0
    assert not (tmp_path / "none.mp4").exists()
