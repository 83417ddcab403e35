"""Keeping refinement honest: a deliberately exploitable reward classifier, a policy that exploits it,
the trust region around the starting policy that keeps the stopping rule from taking it, and the
refine -> collect -> retrain loop (`ROUNDS=2 bash run_all.sh`) that takes the exploit away.

The glitchy tiny env lights a lamp when the task is solved and, by a glitch, in the bottom-left
corner. The data holds no episode that reaches that corner, so the classifier learns "lamp = success"
and a policy that drives into the corner looks perfect in imagination while it never succeeds. The
world model here is the env's exact dynamics (`tiny_env.TinyWorldModel`), so every error is the
reward's. After one round of real rollouts of that policy, labelled by the env, the retrained
classifier scores it at its real success and the stopping rule keeps the honest policy."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import common
from conftest import TINY, benchmark, policy_config, stage
from tiny_env import LAMP_ON, TinyWorldModel, in_glitch_corner

collect, reward_mod, bc_mod, ppo = (stage(s) for s in ("01_collect", "03_reward", "04_bc", "05_ppo_refine"))
GLITCHY = "tests.tiny_env:make_glitchy"
ENV = dict(resolution=16, action_repeat=1, max_steps=10)


def constant_policy(path, action: tuple[float, float]):
    """A stage-4 checkpoint whose mean action is `action` in every state (sigma 0.1)."""
    cfg = policy_config(task=GLITCHY)
    pi = bc_mod.GaussianPolicy(cfg)
    with torch.no_grad():
        pi.mu_head.weight.zero_()
        pi.mu_head.bias.copy_(torch.atanh(torch.tensor(action)))
        pi.log_std.fill_(np.log(0.1))
    bc_mod.save_policy(path, "bc", pi)
    return bc_mod.load_policy(path)


def train_classifier(d, r):
    # labels "agree": the constant "BC" below drives through the goal pad and on, so the frames after
    # its first success are not successes ("reached" labels would call them so)
    reward_mod.main(reward_mod.Args(task=GLITCHY, data_dir=d, run_dir=r, steps=300, channels=(8, 16), labels="agree"))
    return reward_mod.load_reward(r / common.task_slug(GLITCHY) / "reward.pt")


def test_round_two_takes_the_exploit_away(tmp_path):
    d = tmp_path / "data"
    collect.main(collect.Args(tasks=[GLITCHY], data_dir=d, num_expert=30, num_noisy=30, num_random=0,
                              workers=1, noise_levels=(0.5, 1.0), **ENV))
    # the deliberate flaw: in the data the lamp is lit exactly when the task is solved
    eps = [common.load_episode(p) for p in common.list_episodes(d, [GLITCHY])]
    lamp = np.concatenate([(e["frames"][:, 0, 0] == LAMP_ON).all(-1) for e in eps])
    solved = np.concatenate([e["success"] for e in eps])
    assert solved.sum() > 20 and (lamp == solved).all()
    # "BC": heads for the goal, and misses it from some starts; its rollouts join the data, as the
    # paper's recipe has it, so the classifier knows its failures
    honest = constant_policy(tmp_path / "honest.pt", (0.99, 0.99))
    collect.main(collect.Args(tasks=[GLITCHY], data_dir=d, policy=tmp_path / "honest.pt", num_policy=20,
                              workers=1, **ENV))
    exploit = constant_policy(tmp_path / "exploit.pt", (-0.99, 0.99))  # "refined": heads for the glitch corner
    seeds = common.eval_seeds(40)
    env_cfg = dataclasses.asdict(common.env_config_from_meta(common.read_meta(d)))
    real = {n: common.evaluate_real(bc_mod.load_policy, tmp_path / f"{n}.pt", GLITCHY, env_cfg, seeds,
                                    workers=1)["success_rate"] for n in ("honest", "exploit")}
    assert real["exploit"] == 0.0 and 0.5 <= real["honest"] < 1.0, real
    starts = torch.from_numpy(common.real_start_frames(GLITCHY, env_cfg, seeds))
    wm = TinyWorldModel(16, glitchy=True)

    def imagined(clf) -> dict:
        return {n: ppo.imagined_success(pi, wm, clf, starts, len(seeds), 10)["success_rate"]
                for n, pi in (("honest", honest), ("exploit", exploit))}

    # round 1: the classifier fires on the lamp; the exploit is "perfect" in imagination and the
    # stopping rule, comparing it with the honest policy as it would with BC, keeps it
    clf1 = train_classifier(d, tmp_path / "runs1")
    corner = wm._frames(torch.tensor([[0.05, 0.95]]))
    assert in_glitch_corner(np.array([[0.05, 0.95]]))[0] and bool(clf1.success(corner)), "classifier not exploitable"
    im1 = imagined(clf1)
    assert im1["exploit"] >= 0.9 and abs(im1["honest"] - real["honest"]) <= 0.15, (im1, real)
    assert ppo.keeps(im1["exploit"], im1["honest"], im1["honest"], min_improvement=0.05)
    # unless the rule also holds the policy near where it started (05's --max-action-shift): on the
    # data's held-out frames the exploit's mean action is 1.98 from the honest one's, beyond the budget
    held = common.Transitions(common.list_episodes(d, [GLITCHY], split="heldout"), honest.cfg.frame_stack)
    shift = ppo.mean_action_shift(exploit, honest, held.gather(*held.index.T)[0])
    assert len(held.index) > 0 and abs(shift - 1.98) < 1e-3, shift
    assert not ppo.keeps(im1["exploit"], im1["honest"], im1["honest"], 0.05, shift, ppo.Args.max_action_shift)
    # the loop: real rollouts of the kept policy, labelled by the env (all failures), join the data,
    # and the classifier is trained again from scratch on it
    collect.main(collect.Args(tasks=[GLITCHY], data_dir=d, policy=tmp_path / "exploit.pt", num_policy=40,
                              workers=1, **ENV))
    rollouts = [common.load_episode(p) for p in common.list_episodes(d, [GLITCHY], sources=("policy",))]
    assert len(rollouts) == 40 and not any(e["success"].any() for e in rollouts[20:])  # policy_0020.npz on
    clf2 = train_classifier(d, tmp_path / "runs2")
    im2 = imagined(clf2)
    # imagination now reads both policies within 10 points of reality, and the rule keeps the honest one
    assert abs(im2["exploit"] - real["exploit"]) <= 0.1 and abs(im2["honest"] - real["honest"]) <= 0.1, (im2, real)
    assert not ppo.keeps(im2["exploit"], im2["honest"], im2["honest"], min_improvement=0.05)
    assert not bool(clf2.success(corner)) and bool(clf2.success(wm._frames(torch.tensor([[0.8, 0.8]]))))
    # the one-minute screen (benchmarks/classifier_on_real.py) tells the two classifiers apart on the
    # real episodes alone: the first fires on every real failure of the exploit, the second on none,
    # and both still call the honest policy's real successes successes
    screen = benchmark("classifier_on_real")
    out = screen.main(screen.Args(task=GLITCHY, policies=[tmp_path / "exploit.pt", tmp_path / "honest.pt"],
                                  classifiers=[tmp_path / r / common.task_slug(GLITCHY) / "reward.pt"
                                               for r in ("runs1", "runs2")], episodes=len(seeds), workers=1))
    rows = {(Path(w["policy"]).stem, Path(w["classifier"]).parents[1].name): w for w in out["rows"]}
    assert rows["exploit", "runs1"]["fires_on_failures"] == rows["exploit", "runs1"]["real_failures"] == len(seeds)
    assert rows["exploit", "runs2"]["fires_on_failures"] == 0
    for r in ("runs1", "runs2"):
        w = rows["honest", r]
        assert w["real_successes"] == round(real["honest"] * len(seeds))
        assert w["fires_on_successes"] >= 0.9 * w["real_successes"], w


def test_limit_read_off_goodhart_curves(tmp_path, capsys):
    """benchmarks/overoptimization.py --curves: which policy stage 5's stopping rule would keep under
    each --max-action-shift, read off measured curves, and the largest limit that keeps every seed
    honest. The rule must end at the first scored policy beyond the limit (not skip it), and keep a
    policy only when it beats BC by min_improvement, as 05 does."""
    oo = benchmark("overoptimization")

    def row(it, shift, heldout, gap):
        return {"iteration": it, "mean_action_shift": shift, "heldout_imagined": heldout,
                "real": 0.4, "imagined": 0.4 + gap, "gap": gap}

    a = [row(0, 0.0, 0.60, 0.05), row(4, 0.10, 0.62, 0.0), row(8, 0.20, 0.70, -0.05),
         row(12, 0.35, 0.90, 0.25), row(16, 0.30, 0.95, 0.30)]
    b = [row(0, 0.0, 0.60, 0.05), row(4, 0.22, 0.75, 0.08), row(8, 0.26, 0.90, 0.20)]
    kept = {L: oo.kept_under(a, L, 0.05)["iteration"] for L in (0.15, 0.25, 0.30, 0.40, 0.0)}
    # 0.15: iteration 4 is inside but 0.62 < BC's 0.60 + 0.05; 0.30: iteration 12 (0.35) ends the run
    # before iteration 16 (0.30) is reached; 0.40 and no limit: iteration 16 scores best
    assert kept == {0.15: 0, 0.25: 8, 0.30: 8, 0.40: 16, 0.0: 16}, kept
    table, best = oo.limit_table([a, b], 0.05, 0.10)
    assert [t["limit"] for t in table] == [0.10, 0.20, 0.22, 0.26, 0.30, 0.35, 0.0]
    assert [[k["iteration"] for k in t["kept"]] for t in table] == [[0, 0], [8, 0], [8, 4], [8, 8], [8, 8],
                                                                     [16, 8], [16, 8]]
    assert best == 0.22  # at 0.26 curve b keeps a policy 20 points high
    assert oo.limit_table([b[:2]], 0.05, 0.10)[1] == 0.0  # honest without any limit
    paths = []
    for i, rows in enumerate((a, b)):
        paths.append(tmp_path / f"seed{i}" / "overoptimization.json")
        paths[-1].parent.mkdir()
        paths[-1].write_text(json.dumps(rows))
    oo.main(oo.Args(task="button-press", curves=tuple(paths)))
    out = capsys.readouterr().out
    assert "| 0.220 | 8: 40% / 35% (-5) | 4: 40% / 48% (+8) |" in out and "within 10%: 0.220" in out


class ExactWorld(TinyWorldModel):
    """The tiny env's exact dynamics as stage 5 loads a world model (`scoring`, `cfg.resolution`), its frames
    lit by the glitchy env's lamp where the square is on the goal, or, `mirrored`, a deliberately wrong
    world model that moves the square against each action."""

    def __init__(self, mirrored: bool = False):
        super().__init__(16, glitchy=True, history=2)
        self.mirrored, self.cfg = mirrored, dataclasses.make_dataclass("Cfg", [("resolution", int)])(16)

    def scoring(self):
        return self

    def push(self, hist: tuple, new_frame, new_action) -> tuple:
        if self.mirrored and new_action is not None:
            new_action = -new_action
        return TinyWorldModel.push(hist, new_frame, new_action)


class Lamp(torch.nn.Module):
    """A reward that is exactly right on ExactWorld's frames: success where the lamp is lit (the square
    never nears the glitch corner here), so every error left is the world model's."""

    def success(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in [-1, 1] -> (N,) bool
        return x[:, 1, 0].mean(-1) > 0  # the top strip's green channel: 220 lit, 40 dark (the square's 30)


class Always(Lamp):
    """A classifier that calls every frame a success."""

    def success(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), dtype=torch.bool)


def test_validity_check_keeps_bc_where_imagination_cannot_tell_its_outcomes(tiny_data, tmp_path, monkeypatch, capsys):
    """05 --min-validity: before PPO, BC is imagined from the start frames of stage 4's real evaluation
    episodes. In a world model that is exactly right, imagination calls BC's successes and failures
    start by start (J near 1) and PPO runs; in one whose dynamics are mirrored, BC never succeeds there
    (J = 0 against 22 real successes of 40), so it cannot judge a refined policy: BC is kept, PPO does
    not run, and it says why. --min-validity 0 refines anyway."""
    r = tmp_path / "runs"
    t = r / common.task_slug(TINY)
    cfg = policy_config()
    pi = bc_mod.GaussianPolicy(cfg)
    with torch.no_grad():  # "BC": the same action in every state; it misses the goal pad from 18 of the 40 starts
        pi.mu_head.weight.zero_(), pi.mu_head.bias.copy_(torch.atanh(torch.tensor([0.99, 0.7])))
    bc_mod.save_policy(t / "bc.pt", "bc", pi)
    seeds = common.eval_seeds(40)  # 04's evaluation, as its bc_eval.json records it
    # in the glitchy env, whose frames show the lamp as ExactWorld's do (BC's constant action never meets the glitch)
    real = common.evaluate_real(bc_mod.load_policy, t / "bc.pt", GLITCHY, cfg.env, seeds, workers=1, keep_frames=40)
    episodes = real.pop("frames")
    starts = np.stack([f[0] for f in episodes])
    longest = max(len(f) for f in episodes)  # every frame, as 04 keeps them for the classifier's share
    frames = np.stack([np.concatenate([f, np.repeat(f[-1:], longest - len(f), 0)]) for f in episodes])
    (t / "bc_eval.json").write_text(json.dumps({"real": {**real, "seeds": seeds}}))
    assert real["successes"] == 22
    monkeypatch.setattr(ppo.reward_mod, "load_reward", lambda *a, **k: Lamp())
    args = ppo.Args(task=TINY, data_dir=tiny_data, run_dir=r, num_envs=4, iterations=1, critic_warmup=0,
                    eval_every=1, eval_episodes=16)  # enough held-out starts that BC fails in some (room to refine)
    for mirrored, seed in ((False, 0), (True, 1)):
        if mirrored:  # the frames as 04 keeps them; without the file 05 renders the starts from the seeds
            np.savez(t / "bc_eval_starts.npz", frames=starts, seeds=seeds, episode_frames=frames)
        monkeypatch.setattr(ppo.wm_mod, "load_world_model", lambda *a, **k: ExactWorld(mirrored))
        log = ppo.main(dataclasses.replace(args, seed=seed))
        v = log["imagination_validity"]
        assert v["starts"] == 40 and v["real_successes"] == 22
        if not mirrored:  # every verdict right but one (the start frame gives the square's position to a pixel)
            assert v["true_positives"] + (18 - v["false_positives"]) == 39 and v["J"] > 0.9
            assert len(log["iterations"]) == 1
        else:
            assert (v["true_positives"], v["false_positives"], v["J"]) == (0, 0, 0.0)
            # Lamp is exact on the real frames: all 22 misses are the world model's, and it never fires on a failure
            assert (v["misses"], v["misses_classifier"], v["classifier_fires_on_real_failures"]) == (22, 0, 0)
            assert log["iterations"] == [] and log["best"]["iteration"] == 0
            ck = common.load_checkpoint(t / "ppo_seed1" / "refined.pt", "ppo")
            assert ck["iteration"] == 0 and torch.equal(ck["policy"]["mu_head.bias"], pi.mu_head.bias)
            assert "imagination does not know where BC succeeds (J 0.00 < --min-validity 0.5" in capsys.readouterr().out
    log = ppo.main(dataclasses.replace(args, seed=2, min_validity=0.0))  # the check off: PPO runs in the wrong world
    assert "imagination_validity" not in log and len(log["iterations"]) == 1
    # The right world and a classifier that calls every frame success: each of the 18 real failures succeeds
    # in imagination (J = 0), and the check says all 18 are the classifier's, since it fires on their real frames.
    monkeypatch.setattr(ppo.wm_mod, "load_world_model", lambda *a, **k: ExactWorld())
    monkeypatch.setattr(ppo.reward_mod, "load_reward", lambda *a, **k: Always())
    capsys.readouterr()
    v = ppo.main(dataclasses.replace(args, seed=3))["imagination_validity"]
    assert (v["false_positives"], v["false_positives_classifier"], v["classifier_fires_on_real_failures"]) == (18, 18, 18)
    assert (v["J"], v["misses"]) == (0.0, 0)
    assert "of those 18 failures the classifier already fires on the real frames of 18, the other 0" in capsys.readouterr().out


def test_no_room_above_bc_keeps_bc_without_running_ppo(tiny_data, tmp_path, monkeypatch, capsys):
    """Where BC's imagined success is above 1 - --min-improvement (here the classifier calls every frame a
    success, so BC succeeds in all imagined episodes), no policy can pass the stopping rule: BC is kept and
    PPO does not run, and stage 5 says why. Without the stopping rule PPO runs."""
    r = tmp_path / "runs"
    bc_mod.save_policy(r / common.task_slug(TINY) / "bc.pt", "bc", bc_mod.GaussianPolicy(policy_config()))
    monkeypatch.setattr(ppo.wm_mod, "load_world_model", lambda *a, **k: ExactWorld())
    monkeypatch.setattr(ppo.reward_mod, "load_reward", lambda *a, **k: Always())
    args = ppo.Args(task=TINY, data_dir=tiny_data, run_dir=r, num_envs=4, iterations=1, critic_warmup=0,
                    eval_every=1, eval_episodes=4, min_validity=0.0)
    log = ppo.main(args)
    assert log["bc_imagined"]["success_rate"] == 1.0 and log["no_room_above_bc"] and log["iterations"] == []
    assert "not even a policy that always succeeds would beat it by --min-improvement 0.05" in capsys.readouterr().out
    log = ppo.main(dataclasses.replace(args, seed=1, stopping_rule=False))
    assert "no_room_above_bc" not in log and len(log["iterations"]) == 1


def test_classifier_split_by_hand():
    # 3 real successes (one missed by imagination, on whose real frames the classifier never fires) and
    # 4 real failures (two imagined as successes, one of them on real frames where the classifier fires)
    r_ok = [True, True, True, False, False, False, False]
    i_ok = [True, True, False, True, True, False, False]
    fire = [True, False, False, True, False, False, True]
    assert ppo.classifier_split(r_ok, i_ok, fire) == {"classifier_fires_on_real_failures": 2,
                                                       "classifier_silent_on_real_successes": 2,
                                                       "false_positives_classifier": 1, "misses": 1,
                                                       "misses_classifier": 1}
    # several world-model samples per start (06 --imagined-episodes 2n): each start counts its share
    shares = [1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.25]
    q = ppo.classifier_split(r_ok, shares, fire)
    assert (q["misses"], q["misses_classifier"], q["false_positives_classifier"]) == (1.5, 1.5, 0.75)


def test_imagination_validity_by_hand():
    # 4 real successes, 3 of them imagined; 6 real failures, 1 imagined: J = 3/4 - 1/6
    r_ok = [True] * 4 + [False] * 6
    i_ok = [True, True, True, False, True, False, False, False, False, False]
    v = ppo.imagination_validity(r_ok, i_ok)
    assert (v["true_positives"], v["false_positives"], v["imagined_successes"]) == (3, 1, 4)
    assert v["sensitivity"] == 0.75 and v["false_positive_rate"] == pytest.approx(1 / 6)
    assert v["J"] == pytest.approx(0.75 - 1 / 6)
    assert ppo.imagination_validity(r_ok, [not x for x in r_ok])["J"] == -1.0  # always wrong
    assert ppo.imagination_validity(r_ok, [True] * 10)["J"] == 0.0  # always "success": no information
    assert ppo.imagination_validity([True] * 2 + [False] * 8, [True] * 2 + [False] * 8)["J"] is None  # 2 successes


def test_validity_table_reads_06s_paired_starts(tmp_path, capsys):
    """benchmarks/validity_table.py: J per policy from 06's per-start outcomes, on the first --starts starts,
    and a refined policy's real gain over BC on the same starts; a file whose imagined episodes are not
    the real ones' twins is left out."""
    vt = benchmark("validity_table")

    def policy(real, imag, paired=None):
        steps = lambda ok: [3 if o else None for o in ok]  # noqa: E731
        return {"real": {"episodes": len(real), "steps_to_success": steps(real)},
                "imagined": {"steps_to_success": steps(imag)}, "paired": {"episodes": paired or len(real)}}
    T, F = True, False
    res = {"policies": {"bc": policy([T, T, T, F, F, F, F, F], [T, T, F, F, F, F, F, T]),
                        "ppo_seed0/refined": policy([T, T, T, T, T, F, F, F], [T, T, T, T, T, T, T, T])}}
    (tmp_path / "a.json").write_text(json.dumps(res))
    old = {"policies": {"bc": policy([T, F, T, F], [T, F, T, F], paired=2)}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    rows = vt.main(vt.Args(results=[tmp_path / "a.json", tmp_path / "old.json"], starts=0))
    assert [w["policy"] for w in rows] == ["bc", "ppo_seed0/refined"]
    assert rows[0]["J"] == pytest.approx(2 / 3 - 1 / 5) and "real_gain" not in rows[0]
    assert rows[1]["J"] == 0.0 and rows[1]["real_gain"] == pytest.approx(2 / 8)  # imagined success everywhere
    assert "old.json: left out" in capsys.readouterr().out
    first6 = vt.main(vt.Args(results=[tmp_path / "a.json"], starts=6))  # 2 of 3 successes, none of 3 failures
    assert first6[0]["starts"] == 6 and first6[0]["J"] == pytest.approx(2 / 3)
    assert first6[1]["J"] is None  # 5 successes and 1 failure: too few of a kind
