"""Stage 1 and the dataset: adapters, labels, round trip, resume, clear errors."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import common
from conftest import REPO, TINY, benchmark, stage

collect = stage("01_collect")


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_tiny_dataset_layout_and_labels(tiny_data):
    meta = common.read_meta(tiny_data)
    assert meta["resolution"] == 16 and meta["action_dim"] == 2 and meta["max_steps"] == 10
    paths = common.list_episodes(tiny_data)
    assert len(paths) == 100
    ep = common.load_episode(paths[0])
    assert ep["frames"].shape == (11, 16, 16, 3) and ep["frames"].dtype == np.uint8
    assert ep["actions"].shape == (10, 2) and ep["actions"].dtype == np.float32
    assert ep["success"].shape == (11,) and not ep["success"][0]
    # the expert reaches the goal from anywhere in the start region within 10 steps
    experts = [common.load_episode(p) for p in common.list_episodes(tiny_data, sources=("expert",))]
    assert all(e["success"].any() for e in experts)
    randoms = [common.load_episode(p) for p in common.list_episodes(tiny_data, sources=("random",))]
    assert np.mean([e["success"].any() for e in randoms]) < 0.3
    # labels agree with the env's own success check, replayed from the seed and actions
    env = common.make_env(TINY, common.EnvConfig(resolution=16, action_repeat=1, max_steps=10))
    for e in experts[:5] + randoms[:5]:
        f0 = env.reset(e["seed"])
        assert np.array_equal(f0, e["frames"][0])
        for t, a in enumerate(e["actions"]):
            f, s = env.step(a)
            assert s == e["success"][t + 1] and np.array_equal(f, e["frames"][t + 1])


def test_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    actions = rng.standard_normal((5, 4)).astype(np.float32)
    success = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    p = tmp_path / "t" / "demo_0000.npz"
    common.save_episode(p, frames, actions, success, "t", "demo", 123)
    ep = common.load_episode(p)
    assert np.array_equal(ep["frames"], frames) and ep["actions"].tobytes() == actions.tobytes()
    assert np.array_equal(ep["success"], success) and (ep["task"], ep["source"], ep["seed"]) == ("t", "demo", 123)
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_skips_complete_episodes_and_reproduces(tmp_path):
    d = tmp_path / "data"
    args = collect.Args(tasks=[TINY], data_dir=d, num_expert=3, num_noisy=2, num_random=1,
                        resolution=16, action_repeat=1, max_steps=10, workers=1)
    assert collect.main(args)["episodes"] == 6
    victim = common.episode_path(d, TINY, "noisy", 1)
    before = victim.read_bytes()
    victim.unlink()
    keep = common.episode_path(d, TINY, "expert", 0)
    mtime = keep.stat().st_mtime_ns
    assert collect.main(args)["episodes"] == 1  # only the missing one
    assert keep.stat().st_mtime_ns == mtime
    assert common.load_episode(victim)["frames"].tobytes() == common.load_episode(
        common.episode_path(d, TINY, "noisy", 1))["frames"].tobytes()
    assert np.array_equal(np.load(victim)["actions"], np.load(__import__("io").BytesIO(before))["actions"])


def test_truncated_file_reported_by_name(tmp_path):
    d = tmp_path / "data"
    collect.main(collect.Args(tasks=[TINY], data_dir=d, num_expert=2, num_noisy=0, num_random=0,
                              resolution=16, action_repeat=1, max_steps=10, workers=1))
    p = common.episode_path(d, TINY, "expert", 1)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(common.UserError, match="expert_0001.npz"):
        common.load_episode(p)
    r = run_cli("02_world_model.py", "--tasks", TINY, "--data-dir", str(d), "--run-dir", str(tmp_path / "r"), "--steps", "1")
    assert r.returncode == 2
    assert "corrupt episode file" in r.stderr and "Traceback" not in r.stderr


def test_clear_errors(tmp_path):
    r = run_cli("03_reward.py", "--data-dir", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "01_collect.py" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("01_collect.py", "--tasks", "coffee-pul", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2 and "unknown Meta-World task 'coffee-pul'" in r.stderr
    d = tmp_path / "mix"
    common.write_meta(d, {"resolution": 16})
    with pytest.raises(common.UserError, match="other settings"):
        common.write_meta(d, {"resolution": 32})


# --- Meta-World: the real adapter --------------------------------------------------------
@pytest.fixture(scope="module")
def coffee():
    warnings.filterwarnings("ignore")
    env = common.make_env("coffee-pull", common.EnvConfig(resolution=32))
    yield env
    env.close()


def test_metaworld_frames_upright(coffee):
    f = coffee.reset(0).astype(int)
    assert f.shape == (32, 32, 3)
    wall, table = f[:5, 20:], f[20:25, 4:28]
    # the grey back wall is at the top right (R ~ G ~ B); the brown table below the middle (R > B).
    # Upside down (the corner camera's raw output), the top right shows the brown table instead.
    assert np.abs(wall[..., 0] - wall[..., 2]).mean() < 12
    assert (table[..., 0] - table[..., 2]).mean() > 25
    flipped = f[::-1][:5, 20:]
    assert np.abs(flipped[..., 0] - flipped[..., 2]).mean() > 25


def test_metaworld_seeded_reset_is_deterministic(coffee):
    a, b, c = coffee.reset(7), coffee.reset(7), coffee.reset(8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_metaworld_labels_and_expert_success(coffee, monkeypatch):
    seen = []
    raw_step = coffee.env.step

    def recording_step(a):
        out = raw_step(a)
        seen.append(bool(out[4]["success"]))
        return out

    monkeypatch.setattr(coffee.env, "step", recording_step)
    succ = 0
    for seed in range(4):
        seen.clear()
        frames, actions, success = collect.run_episode(coffee, seed, "expert")
        # each label is the simulator's own info["success"] after the decision's last physics step
        per_decision = seen[coffee.action_repeat - 1::coffee.action_repeat]
        assert list(success[1:]) == per_decision and not success[0]
        succ += success.any()
    assert succ == 4  # the scripted expert solves coffee-pull (98% of 50 episodes, docs/RESULTS.md)


def test_decoy_episodes_do_the_task_in_the_wrong_place(tmp_path):
    """benchmarks/decoys.py: the expert aims at a goal shifted beyond the success radius, so it ends
    away from the goal, not in success (its path may cross the goal: labels stay the env's), while the
    plain expert from the same start ends in success."""
    decoys = benchmark("decoys")
    tiny = __import__("tests.tiny_env", fromlist=["make"])
    env = common.make_env(TINY, common.EnvConfig(resolution=16, action_repeat=1, max_steps=10))
    for seed in range(5):
        _, _, success = decoys.decoy_episode(env, seed, (0.3, 0.3))
        assert not success[-1]
        assert np.linalg.norm(env.p - tiny.GOAL) > tiny.RADIUS
        _, _, success = collect.run_episode(env, seed, "expert")
        assert success[-1]
    d = tmp_path / "data"
    collect.main(collect.Args(tasks=[TINY], data_dir=d, num_expert=1, num_noisy=0, num_random=0,
                              resolution=16, action_repeat=1, max_steps=10, workers=1))
    assert decoys.main(decoys.Args(tasks=[TINY], data_dir=d, num_decoy=3)) == 3
    eps = [common.load_episode(p) for p in common.list_episodes(d, sources=("decoy",))]
    assert len(eps) == 3 and all(e["source"] == "decoy" for e in eps)
    assert decoys.main(decoys.Args(tasks=[TINY], data_dir=d, num_decoy=3)) == 0  # resumes: nothing new

    class NoShiftExpert(tiny.TinyReach):  # an adapter without goal_shift
        def expert_action(self):
            return super().expert_action()
    with pytest.raises(common.UserError, match="goal_shift"):
        decoys.decoy_episode(NoShiftExpert(16, 1, 10), 0, (0.3, 0.3))
    with pytest.raises(common.UserError, match="--shift"):
        decoys.main(decoys.Args(tasks=[TINY], data_dir=d, num_decoy=1, shift=(0.3, 0.1)))


def test_balance_successes_holds_the_success_share(tmp_path):
    """benchmarks/balance_successes.py keeps every episode but the new successful rollouts, and of
    those just enough for the requested share; the output is a dataset the loaders read."""
    bal = benchmark("balance_successes")
    src = tmp_path / "data"
    (src / "t").mkdir(parents=True)
    common.write_meta(src, {"resolution": 4})

    def episode(name, success):
        s = np.zeros(3, bool); s[-1] = success
        np.savez(src / "t" / f"{name}.npz", frames=np.zeros((3, 4, 4, 3), np.uint8), success=s)
    for i in range(10):  # old data: 4 of 10 successful
        episode(f"expert_{i:04d}", i < 4)
    for i in range(20):  # new rollouts (index >= 10): 16 successes, 4 failures
        episode(f"policy_{10 + i:04d}", i >= 4)
    out = tmp_path / "balanced"
    bal.main(bal.Args(data_dir=src, out=out, task="t", from_index=10, share=0.5))
    kept = sorted(p.name for p in (out / "t").glob("*.npz"))
    succ = [bool(np.load(out / "t" / n)["success"].any()) for n in kept]
    # (4 + x) / (14 + x) = 0.5 -> x = 6 of the 16 new successes; all 10 old and 4 new failures stay
    assert len(kept) == 20 and sum(succ) == 10
    assert all(f"policy_{10 + i:04d}.npz" in kept for i in range(4))
    assert all(f"expert_{i:04d}.npz" in kept for i in range(10))
    assert common.read_meta(out)["resolution"] == 4
    with pytest.raises(common.UserError, match="exists"):
        bal.main(bal.Args(data_dir=src, out=out, task="t", from_index=10))
    assert len(list((out / "t").glob("*.npz"))) == 20  # nothing already written is lost
    # no --share: hold the old data's share, 4 of 10: (4 + x) / (14 + x) = 0.4 -> x = 2.67 -> 3 kept
    bal.main(bal.Args(data_dir=src, out=tmp_path / "held", task="t", from_index=10))
    held = list((tmp_path / "held" / "t").glob("*.npz"))
    assert len(held) == 17 and sum(bool(np.load(p)["success"].any()) for p in held) == 7
    for p in src.glob("t/expert_*.npz"):  # only new rollouts left: no old share to hold
        p.unlink()
    with pytest.raises(common.UserError, match="no success share"):
        bal.main(bal.Args(data_dir=src, out=tmp_path / "none", task="t", from_index=10))
    assert not (tmp_path / "none").exists()


def test_stop_short_decoys_stop_at_the_success_boundary(tmp_path):
    """benchmarks/decoys.py --mode stop-short: the expert's own episode up to k = 1..max_short
    decisions before its first success, then the arm holds still or backs away; on the tiny env
    neither ever succeeds."""
    decoys = benchmark("decoys")
    tiny = __import__("tests.tiny_env", fromlist=["make"])
    env = common.make_env(TINY, common.EnvConfig(resolution=16, action_repeat=1, max_steps=10))
    holds = set()
    for seed in range(8):
        f_exp, a_exp, s_exp = collect.run_episode(env, seed, "expert")
        t_star = int(np.argmax(s_exp))
        frames, actions, success = decoys.stop_short_episode(env, seed, max_short=3)
        assert not success.any()
        # it replays the expert up to the cut, which lies 1..3 decisions before the expert's success
        cut = int(np.argmax(np.any(actions != a_exp, axis=1)))
        assert max(0, t_star - 3) <= cut <= t_star - 1
        np.testing.assert_array_equal(frames[:cut + 1], f_exp[:cut + 1])
        hold = not actions[cut:].any()
        if hold:  # the arm stopped short and stayed: the last frame is the frame at the cut
            np.testing.assert_array_equal(frames[-1], frames[cut])
        else:  # backed away: further from the goal than a success plus one step
            assert np.linalg.norm(env.p - tiny.GOAL) > tiny.RADIUS + tiny.STEP
        holds.add(hold)
    assert holds == {True, False}  # both endings occur
    d = tmp_path / "data"
    collect.main(collect.Args(tasks=[TINY], data_dir=d, num_expert=1, num_noisy=0, num_random=0,
                              resolution=16, action_repeat=1, max_steps=10, workers=1))
    assert decoys.main(decoys.Args(tasks=[TINY], data_dir=d, num_decoy=3, mode="stop-short")) == 3
    eps = [common.load_episode(p) for p in common.list_episodes(d, sources=("nearmiss",))]
    assert len(eps) == 3 and all(e["source"] == "nearmiss" for e in eps) and not any(e["success"].any() for e in eps)
    with pytest.raises(common.UserError, match="--max-short"):
        decoys.main(decoys.Args(tasks=[TINY], data_dir=d, mode="stop-short", max_short=0))
    with pytest.raises(common.UserError, match="Meta-World"):  # aim-offset shifts a Meta-World observation
        decoys.decoy_episode(env, 0, (0.03, 0.06), mode="aim-offset")
