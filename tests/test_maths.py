"""Maths unit tests beside the exercise functions (tests/test_functions.py): one-hot, the Karras schedule,
labels, intervals, verdicts, image metrics, videos, the benchmark tables."""

import numpy as np
import pytest
import torch

import common
from conftest import benchmark, stage

wm = stage("02_world_model")


def test_one_hot_nearest():  # the ablation; two-hot's tests are in test_functions.py
    o = wm.one_hot(torch.tensor([0.14, 0.16]), 0.0, 1.0, 11)
    assert o[0, 1] == 1 and o[1, 2] == 1 and o.sum() == 2


def test_karras_schedule():
    s = wm.karras_sigmas(3)
    assert s.shape == (4,) and abs(s[0] - 5.0) < 1e-5 and abs(s[2] - 2e-3) < 1e-7 and s[3] == 0
    assert (s[:-1] > s[1:]).all()


def test_success_labels_absorbing_or_per_step():
    reward = stage("03_reward")
    flags = np.array([0, 0, 1, 0, 1, 0], dtype=bool)  # a success whose flag drops back twice
    assert reward.success_labels(flags).tolist() == [0, 0, 1, 1, 1, 1]
    assert reward.success_labels(flags, "per-step").tolist() == flags.tolist()
    assert not reward.success_labels(np.zeros(4, dtype=bool)).any()
    # `agree`: the flag, and the frames where the flag dropped after the first success left out
    assert reward.success_labels(flags, "agree").tolist() == flags.tolist()
    assert reward.scored_mask(flags, "agree").tolist() == [1, 1, 1, 0, 1, 0]
    assert reward.scored_mask(flags).all() and reward.scored_mask(flags, "per-step").all()


def test_wilson_interval():
    lo, hi = common.wilson_interval(50, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3
    assert common.wilson_interval(0, 10)[0] == 0.0


def test_compare_to_bc_verdicts():
    ev = stage("06_eval")
    rate = lambda k, n: {"success_rate": k / n, "ci95": common.wilson_interval(k, n)}  # noqa: E731
    bc = rate(32, 100)  # 95% CI 23.7%-41.7%
    up = ev.compare_to_bc(bc, rate(55, 100))  # 45.2%-64.4%: disjoint from BC's interval
    assert up["improved"] and not up["worse"] and not up["intervals_overlap"] and abs(up["gain"] - 0.23) < 1e-9
    same = ev.compare_to_bc(bc, rate(40, 100))
    assert not same["improved"] and not same["worse"] and same["intervals_overlap"]
    down = ev.compare_to_bc(bc, rate(20, 100))  # below BC's lower bound 23.7%
    assert down["worse"] and not down["improved"]


def test_psnr_ssim():
    a = torch.zeros(1, 3, 16, 16)
    assert wm.ssim(a, a).item() == pytest.approx(1.0, abs=1e-6)
    b = a + 0.2  # error 0.1 on the [0, 1] scale -> 20 dB
    assert wm.psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)
    # two flat images, 0.5 and 0.6 on the [0, 1] scale: only SSIM's luminance term is left
    c1 = 0.01**2
    # (float32 variances of flat images cancel to ~1e-8 against c2 = 9e-4: hence the tolerance)
    assert wm.ssim(a, b).item() == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1), abs=1e-3)
    noise = torch.rand(1, 3, 16, 16) * 2 - 1
    s_an = wm.ssim(a, noise).item()
    assert s_an == pytest.approx(wm.ssim(noise, a).item(), abs=1e-6) and s_an < 0.5  # symmetric, and low


def test_save_video_never_crashes_or_leaves_a_half_file(tmp_path, monkeypatch):
    import imageio.v2 as imageio

    frames = [np.full((8, 8, 3), i * 20, np.uint8) for i in range(6)]
    assert common.save_video(tmp_path / "ok.mp4", frames)
    assert (tmp_path / "ok.mp4").stat().st_size > 0

    def broken_writer(path, *a, **k):  # a writer that dies half-way, as without an ffmpeg backend
        open(path, "wb").write(b"half")
        raise RuntimeError("no backend")

    monkeypatch.setattr(imageio, "mimsave", broken_writer)
    assert common.save_video(tmp_path / "bad.mp4", frames) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.mp4"]  # no half file, nothing else lost


def test_six_table_rows_from_stage_files(tmp_path):
    import json
    six = benchmark("six_table")
    d = tmp_path / "button-press"
    d.mkdir()
    (d / "reward_metrics.json").write_text(json.dumps({"threshold": 0.8, "heldout": {
        "frames": 100, "positives": 10, "precision": 0.9, "recall": 1.0, "f1": 18 / 19}}))
    (d / "bc_eval.json").write_text(json.dumps({"num_demos": 2, "real": {
        "successes": 32, "episodes": 100, "success_rate": 0.32, "ci95": [0.2367, 0.4166]}}))
    table = six.main(six.Args(run_dir=[tmp_path], tasks=["button-press", "soccer"]))
    rows = table.strip().splitlines()
    assert rows[2] == ("| button-press | 100 (10) | 0.900 | 1.000 | 0.947 (below target) | 0.80 | 2 "
                       "| 32/100 = 32% | 23.7%-41.7% |")
    assert rows[3].startswith("| soccer | not run |") and len(rows) == 4
    assert (tmp_path / "six_tasks.md").read_text() == table


def test_six_table_refined_rows_from_eval_files(tmp_path):
    import json
    six = benchmark("six_table")
    real = lambda k, lo, hi: {"successes": k, "episodes": 100, "success_rate": k / 100, "ci95": [lo, hi]}  # noqa: E731

    def task_run(run_dir, task, bc_k, seeds):  # 06's results and 05's logs, as the stages leave them
        d = run_dir / task
        (d / "eval").mkdir(parents=True)
        pol, vs = {"bc": {"real": real(bc_k, bc_k / 100 - 0.05, bc_k / 100 + 0.1)}}, {}
        for s, (k, best, validity, *room) in enumerate(seeds):
            name = f"ppo_seed{s}/refined"
            pol[name] = {"real": real(k, k / 100 - 0.08, k / 100 + 0.1)}
            vs[name] = {"gain": (k - bc_k) / 100, "improved": k > bc_k + 15, "worse": False,
                        "intervals_overlap": k <= bc_k + 15}
            (d / f"ppo_seed{s}").mkdir()
            log = {"bc_imagined": {"success_rate": 0.664}, "best": {"iteration": best, "success_rate": 0.906}}
            if validity is not None:
                log["imagination_validity"] = {"J": validity, "min_validity": 0.5}
            if room:  # 05 found BC above 1 - --min-improvement in imagination (drawer-close); J not judged
                log["imagination_validity"], log["no_room_above_bc"] = {"J": None, "min_validity": 0.5}, True
            (d / f"ppo_seed{s}" / "log.json").write_text(json.dumps(log))
        (d / "eval" / "results.json").write_text(json.dumps({"policies": pol, "vs_bc": vs}))

    task_run(tmp_path, "soccer", 12, [(30, 20, 0.7)])
    table = six.main(six.Args(run_dir=[tmp_path], tasks=["soccer", "lever-pull"], refine_run_dir=[tmp_path]))
    rows = table.strip().splitlines()
    assert rows[-3] == ("| soccer | ppo_seed0/refined | 66% -> 91% (it. 20) | 12/100 (7%-22%) | 30/100 (22%-40%) "
                        "| +18 | better, intervals disjoint |")
    assert rows[-2].startswith("| lever-pull | not evaluated |")
    assert rows[-1].startswith("| average over 1 of 2 tasks | mean over seeds | | 12.0% | 30.0% | +18.0 |")
    # a world model per task: one folder per task; a task's refined success is the mean over its seeds
    a, b = tmp_path / "a", tmp_path / "b"
    task_run(a, "soccer", 12, [(30, 20, 0.7), (20, 0, None)])
    task_run(b, "door-lock", 40, [(40, 0, 0.3)])
    table = six.main(six.Args(run_dir=[a, b], tasks=["soccer", "door-lock"], refine_run_dir=[a, b],
                              out=tmp_path / "t.md"))
    rows = table.strip().splitlines()
    assert "(kept BC)" in rows[-3] and "(kept BC: J 0.30 < 0.5, PPO not run)" in rows[-2]
    assert rows[-1].startswith("| average over 2 of 2 tasks | mean over seeds | | 26.0% | 32.5% | +6.5 |")
    assert "51.5% -> 67.5% (+16.0)" in rows[-1] and (tmp_path / "t.md").read_text() == table
    c = tmp_path / "c"
    task_run(c, "drawer-close", 100, [(100, 0, None, "no room")])
    rows = six.main(six.Args(run_dir=[c], tasks=["drawer-close"], refine_run_dir=[c])).strip().splitlines()
    assert "(kept BC: no room above BC in imagination, PPO not run)" in rows[-2]
    with pytest.raises(common.UserError, match="2 folders for 3 tasks"):
        six.main(six.Args(run_dir=[a, b], tasks=["soccer", "door-lock", "drawer-close"]))


def test_persistence_sweep_counts_runs_of_k_frames():
    ps = benchmark("persistence_sweep")
    fires = np.array([[1, 1, 0, 1], [0, 1, 0, 1], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=bool)  # (steps, episodes)
    assert ps.persistent_success(fires, 1).tolist() == [True, True, True, True]
    assert ps.persistent_success(fires, 2).tolist() == [True, True, False, True]  # episode 0: frames 2-3
    assert ps.persistent_success(fires, 3).tolist() == [False, True, False, False]
    # Fires records each classifier's verdict per frame and never ends an episode; "all fire" is their AND

    class Thresh:  # fires where the frame's mean exceeds t
        def __init__(self, t):
            self.t = t

        def success(self, x):
            return x.flatten(1).mean(1) > self.t

    rec = ps.Fires([Thresh(0.0), Thresh(0.5)])
    x = torch.tensor([-1.0, 0.2, 0.9])[:, None, None, None].expand(3, 3, 4, 4)
    assert not rec.success(x).any()
    assert rec.fires[0].tolist() == [[False, True, True], [False, False, True]]  # (classifiers, episodes)
    assert torch.stack(rec.fires).all(1)[0].tolist() == [False, False, True]


def test_persistence_sweep_rules_pick_their_rollouts():
    """Each conservative rule reads its own imagined rollouts: noise seeds of world_model.pt first, then
    one per extra world model (--world-models); a rule that read the wrong ones would AND other episodes."""
    ps = benchmark("persistence_sweep")
    r0 = np.zeros((2, 2, 3), dtype=bool)  # (steps, classifiers, episodes): world_model.pt, noise seed 1
    r0[0, 0, 0] = r0[1, 0, 1] = True  # reward.pt fires on episodes 0 and 1
    r0[0, 1, 0] = True  # the second classifier only on episode 0
    r1 = np.zeros((2, 2, 3), dtype=bool)  # world_model.pt, noise seed 2: episode 0 only
    r1[1, 0, 0] = True
    r2 = np.zeros((2, 2, 3), dtype=bool)  # the extra world model: episode 1 only
    r2[0, 0, 1] = True
    fires = [r0, r1, r2]
    assert ps.rule_success(fires, 1, [0], 1).tolist() == [True, True, False]
    assert ps.rule_success(fires, 1, [0], 2).tolist() == [True, False, False]  # both classifiers
    assert ps.rule_success(fires, 1, [0, 1], 1).tolist() == [True, False, False]  # both noise seeds
    assert ps.rule_success(fires, 1, [0, 2], 1).tolist() == [False, True, False]  # both world models
    assert ps.rule_success(fires, 1, [2], 1).tolist() == [False, True, False]  # another sampler's rollout alone
    assert ps.rule_success(fires, 2, [0], 1).tolist() == [False, False, False]  # no run of 2 frames


def test_paired_gap_interval_hand_example():
    """06's paired gap: 8 starts imagined-only successes, 28 real-only, 64 agreeing -> mean(d) = -0.20,
    sample var of d = (36 - 100 * 0.04) / 99, half-width 1.96 sqrt(var / 100) = 0.1114."""
    ev = stage("06_eval")
    r_ok = [False] * 8 + [True] * 28 + [True] * 30 + [False] * 34
    i_ok = [True] * 8 + [False] * 28 + [True] * 30 + [False] * 34
    gap, lo, hi = ev.paired_gap_interval(r_ok, i_ok)
    assert gap == pytest.approx(-0.20)
    assert (lo, hi) == (pytest.approx(-0.20 - 0.11143, abs=1e-4), pytest.approx(-0.20 + 0.11143, abs=1e-4))
    assert ev.paired_gap_interval([True, False], [True, False]) == (0.0, 0.0, 0.0)  # always agreeing: no width


def test_paired_outcomes_average_the_samples_of_each_start():
    """Two real starts (success, failure), three imagined episodes each (episode j from start j % 2):
    start 0 succeeds in 1 of 3 samples (p = 1/3), start 1 in 3 of 3 (p = 1). Each start counts once."""
    ev = stage("06_eval")
    q = ev.paired_outcomes([True, False], [True, True, False, True, False, True])
    assert q["episodes"] == 2 and q["samples_per_start"] == 3 and q["real_successes"] == 1
    assert q["imagined_successes"] == pytest.approx(1 / 3 + 1)
    t = q["table"]
    assert t["real_success_imagined_success"] == pytest.approx(1 / 3)
    assert t["real_success_imagined_fail"] == pytest.approx(2 / 3)
    assert t["real_fail_imagined_success"] == pytest.approx(1.0) and t["real_fail_imagined_fail"] == 0
    assert q["agreement"] == pytest.approx((1 / 3 + 0) / 2)
    gap, lo, hi = q["gap_ci95"]  # d = (1/3 - 1, 1 - 0): mean 1/6, sd = |d0 - d1| / sqrt(2)
    assert gap == pytest.approx(1 / 6) and hi - gap == pytest.approx(1.96 * (5 / 3) / np.sqrt(2) / np.sqrt(2))
    # one sample per start: the plain 2x2 counts of the paired episodes
    one = ev.paired_outcomes([True, False, False], [True, True, False])
    assert one["table"] == {"real_success_imagined_success": 1, "real_success_imagined_fail": 0,
                            "real_fail_imagined_success": 1, "real_fail_imagined_fail": 1}
    assert one["agreement"] == pytest.approx(2 / 3)
    # 06's per-start table says how many samples a start has, and prints the averaged counts
    q["classifier_fires_on_real_failures"] = 0
    real = {"successes": 1, "episodes": 2, "success_rate": 0.5, "ci95": (0.1, 0.9), "mean_steps_to_success": 3.0}
    text = ev.markdown({"task": "t", "episodes": 2, "policies": {"p": {"real": real, "paired": q}}})
    row = next(line for line in text.splitlines() if line.startswith("| p | 2 |"))
    assert "3 imagined episodes per start" in text and row.startswith("| p | 2 | 1 | 1.3 | 1 | 0.7 | 17% | +17 ("), row
    # a refinement run that trained reports its speed; one the check stopped before PPO says so
    its = [{"iteration": 0, "imagined_heldout_success": 0.2, "mean_action_shift": 0.0}]
    curves = {"ppo_seed0": {"iterations": its, "kept": 0, "time_share": {"denoiser": 0.75}, "imagined_steps_per_s": 90.0},
              "ppo_seed1": {"iterations": its, "kept": 0, "time_share": {}, "imagined_steps_per_s": 0.0}}
    text = ev.markdown({"task": "t", "episodes": 2, "policies": {"p": {"real": real}}, "ppo_curves": curves})
    assert "`ppo_seed0` in imagination (iteration 0 = BC; kept: iteration 0; 90.0 imagined steps/s; time share denoiser 75%)" in text
    assert "`ppo_seed1` in imagination (iteration 0 = BC; kept: iteration 0; no PPO iteration ran)" in text


def test_split_psnr_by_hand():
    """benchmarks/moved_pixels.py: one episode, one step, a 2x2 frame. The start is all -1; the real next
    frame has one pixel lit to +1 (moved); the model lights it to 0 and errs by 0.2 on one static pixel."""
    mp = benchmark("moved_pixels")
    start = -torch.ones(1, 3, 2, 2)
    real = -torch.ones(1, 1, 3, 2, 2)
    real[..., 0, 0] = 1.0
    imagined = real.clone()
    imagined[..., 0, 0] = 0.0  # error 1 on the moved pixel: ((1 - 0) / 2)^2 = 0.25
    imagined[..., 1, 1] = -0.8  # error 0.2 on a static one: 0.01
    s = mp.split_psnr(imagined, real, start, threshold=0.1)
    assert s["moved_share"] == pytest.approx(0.25)
    assert s["psnr_moved_model"] == pytest.approx(-10 * np.log10(0.25))  # 6.02 dB
    assert s["psnr_moved_copy_last"] == pytest.approx(0.0)  # copying the start errs by 2: ((2) / 2)^2 = 1
    assert s["psnr_static_model"] == pytest.approx(-10 * np.log10(0.01 / 3))  # one static pixel of three
    assert s["psnr_model"] == pytest.approx(-10 * np.log10((0.25 + 0.01) / 4))
