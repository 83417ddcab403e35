"""Maths unit tests: two-hot (Eq. 5), EDM scalings (Eq. 4), Karras schedule, GAE, the clipped loss (Eq. 8)."""

import math

import numpy as np
import pytest
import torch

import common
from conftest import stage

wm = stage("02_world_model")
ppo = stage("05_ppo_refine")


def test_two_hot_paper_example():
    # The paper: a = 0.14 on bins {0.0, 0.1, ..., 1.0} -> 0.6 at 0.1 and 0.4 at 0.2.
    t = wm.two_hot(torch.tensor(0.14, dtype=torch.float64), 0.0, 1.0, 11)
    expected = torch.zeros(11, dtype=torch.float64)
    expected[1], expected[2] = 0.6, 0.4
    assert torch.allclose(t, expected, atol=1e-12)


def test_two_hot_round_trip_shape_and_clamp():
    x = torch.rand(5, 3, 4) * 2.4 - 1.2  # some values outside [-1, 1]
    t = wm.two_hot(x, -1.0, 1.0, 21)
    assert t.shape == (5, 3, 4, 21)
    assert torch.allclose(t.sum(-1), torch.ones(5, 3, 4))
    assert (t >= 0).all() and ((t > 0).sum(-1) <= 2).all()
    bins = torch.linspace(-1, 1, 21)
    assert torch.allclose((t * bins).sum(-1), x.clamp(-1, 1), atol=1e-6)  # lossless inside the range
    # endpoints land on the end bins exactly
    e = wm.two_hot(torch.tensor([-1.0, 1.0]), -1.0, 1.0, 21)
    assert e[0, 0] == 1 and e[1, -1] == 1


def test_two_hot_differentiable_and_one_hot_nearest():
    x = torch.tensor([0.14], requires_grad=True)
    w = torch.arange(11.0)
    (wm.two_hot(x, 0.0, 1.0, 11) * w).sum().backward()
    assert x.grad is not None and abs(x.grad.item() - 10.0) < 1e-4  # d/dx of 10x
    o = wm.one_hot(torch.tensor([0.14, 0.16]), 0.0, 1.0, 11)
    assert o[0, 1] == 1 and o[1, 2] == 1 and o.sum() == 2


def test_edm_scalings_limits_and_values():
    sd = 0.5
    c_skip, c_out, c_in, c_noise = wm.edm_scalings(torch.tensor([1e-6, 0.5, 1e4]), sd)
    assert abs(c_skip[0] - 1) < 1e-9 and c_out[0] < 1e-5  # sigma -> 0: D(x) -> x
    assert c_skip[2] < 1e-8 and abs(c_out[2] - sd) < 1e-6  # sigma -> inf: D -> sd * F
    assert abs(c_skip[1] - 0.5) < 1e-7 and abs(c_out[1] - 0.5 / math.sqrt(2)) < 1e-7
    assert abs(c_in[1] - 1 / math.sqrt(0.5)) < 1e-6 and abs(c_noise[1] - math.log(0.5) / 4) < 1e-7
    # unit variance of the network's input and of its training target at any sigma (EDM's design)
    for s in (0.1, 1.0, 10.0):
        sig = torch.tensor(s)
        c_skip, c_out, c_in, _ = wm.edm_scalings(sig, sd)
        assert abs(c_in**2 * (sd**2 + s**2) - 1) < 1e-5
        assert abs(((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2 - 1) < 1e-5


def test_karras_schedule():
    s = wm.karras_sigmas(3)
    assert s.shape == (4,) and abs(s[0] - 5.0) < 1e-5 and abs(s[2] - 2e-3) < 1e-7 and s[3] == 0
    assert (s[:-1] > s[1:]).all()


def test_gae_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 7, 3, 0.9, 0.8
    r = torch.rand(T, N, generator=g)
    v = torch.rand(T, N, generator=g)
    d = torch.rand(T, N, generator=g) < 0.3
    nv = torch.rand(N, generator=g)
    adv, ret = ppo.gae(r, v, d, nv, gamma, lam)
    for n in range(N):  # naive: sum of discounted TD errors until the episode ends
        for t in range(T):
            a, k = 0.0, 1.0
            for u in range(t, T):
                v_next = nv[n] if u == T - 1 else v[u + 1, n]
                delta = r[u, n] + gamma * v_next * (0.0 if d[u, n] else 1.0) - v[u, n]
                a += k * delta
                if d[u, n]:
                    break
                k *= gamma * lam
            assert abs(adv[t, n] - a) < 1e-5
    assert torch.allclose(ret, adv + v)


def test_clipped_loss_hand_example():
    # ratios 1.5 and 0.5 with advantages +1 and -1, eps 0.2:
    # sample 1: max(-1*1.5, -1*1.2) = -1.2; sample 2: max(1*0.5, 1*0.8) = 0.8 -> mean -0.2
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    pg, kl, clipfrac, ratio = ppo.clipped_policy_loss(new, old, torch.tensor([1.0, -1.0]), 0.2)
    assert abs(pg.item() - (-0.2)) < 1e-6
    assert clipfrac.item() == 1.0
    expected_kl = ((1.5 - 1 - math.log(1.5)) + (0.5 - 1 - math.log(0.5))) / 2
    assert abs(kl.item() - expected_kl) < 1e-6
    # inside the trust region the loss is the plain surrogate
    pg, _, clipfrac, _ = ppo.clipped_policy_loss(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.tensor([2.0]), 0.2)
    assert abs(pg.item() + 2.2) < 1e-6 and clipfrac.item() == 0.0


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
    assert np.isfinite(wm.ssim(a, torch.rand(1, 3, 16, 16)).item())


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


def test_six_table_rows_from_stage_files(tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys

    spec = importlib.util.spec_from_file_location("six_table", common.REPO / "benchmarks" / "six_table.py")
    six = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "six_table", six)  # dataclasses look their module up there
    spec.loader.exec_module(six)
    d = tmp_path / "button-press"
    d.mkdir()
    (d / "reward_metrics.json").write_text(json.dumps({"threshold": 0.8, "heldout": {
        "frames": 100, "positives": 10, "precision": 0.9, "recall": 1.0, "f1": 18 / 19}}))
    (d / "bc_eval.json").write_text(json.dumps({"num_demos": 2, "real": {
        "successes": 32, "episodes": 100, "success_rate": 0.32, "ci95": [0.2367, 0.4166]}}))
    table = six.main(six.Args(run_dir=tmp_path, tasks=["button-press", "soccer"]))
    rows = table.strip().splitlines()
    assert rows[2] == ("| button-press | 100 (10) | 0.900 | 1.000 | 0.947 (below target) | 0.80 | 2 "
                       "| 32/100 = 32% | 23.7%-41.7% |")
    assert rows[3].startswith("| soccer | not run |") and len(rows) == 4
    assert (tmp_path / "six_tasks.md").read_text() == table


def test_six_table_refined_rows_from_eval_files(tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys

    spec = importlib.util.spec_from_file_location("six_table", common.REPO / "benchmarks" / "six_table.py")
    six = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "six_table", six)
    spec.loader.exec_module(six)
    d = tmp_path / "soccer"
    (d / "eval").mkdir(parents=True)
    (d / "ppo_seed0").mkdir()
    real = lambda k, lo, hi: {"successes": k, "episodes": 100, "success_rate": k / 100, "ci95": [lo, hi]}  # noqa: E731
    (d / "eval" / "results.json").write_text(json.dumps({
        "policies": {"bc": {"real": real(12, 0.07, 0.2)}, "ppo_seed0/refined": {"real": real(30, 0.22, 0.4)}},
        "vs_bc": {"ppo_seed0/refined": {"gain": 0.18, "improved": True, "worse": False,
                                        "intervals_overlap": False}}}))
    (d / "ppo_seed0" / "log.json").write_text(json.dumps({
        "bc_imagined": {"success_rate": 0.664}, "best": {"iteration": 20, "success_rate": 0.906}}))
    table = six.main(six.Args(run_dir=tmp_path, tasks=["soccer", "lever-pull"], refine_run_dir=tmp_path))
    rows = table.strip().splitlines()
    assert rows[-2] == ("| soccer | ppo_seed0/refined | 66% -> 91% (it. 20) | 12/100 (7%-20%) | 30/100 (22%-40%) "
                        "| +18 | better, intervals disjoint |")
    assert rows[-1].startswith("| lever-pull | not evaluated |")
