"""The parts between the maths and the stages: the transition sampler, the imagined environment,
and the F-space denoising loss against EDM's weighted loss on D."""

import dataclasses

import numpy as np
import pytest
import torch

import common
from conftest import TINY, stage

wm_mod = stage("02_world_model")
ppo = stage("05_ppo_refine")


def write_episodes(d, lengths):
    """Episodes whose frame t of episode i has every pixel = 10 i + t and whose action t is (t, -t) / 10."""
    common.write_meta(d, {"resolution": 4, "action_dim": 2})
    paths = []
    for i, L in enumerate(lengths):
        frames = np.stack([np.full((4, 4, 3), 10 * i + t, dtype=np.uint8) for t in range(L + 1)])
        actions = np.stack([np.array([t, -t], dtype=np.float32) / 10 for t in range(L)])
        p = common.episode_path(d, TINY, "expert", i)
        common.save_episode(p, frames, actions, np.zeros(L + 1, bool), TINY, "expert", i)
        paths.append(p)
    return paths


def pixel(x):  # float frames in [-1, 1] -> the uint8 value written above, one per frame
    return torch.round((x.flatten(-3)[..., 0] + 1) * 127.5).long()


def test_transitions_line_up_history_actions_and_mask(tmp_path):
    data = common.Transitions(write_episodes(tmp_path, [5, 3]), T=4)
    assert len(data.index) == 5 + 3  # one sample per action: predict x_{t+1} from x_{<=t}
    frames, actions, mask, x_next = data.gather(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 0, 2]))
    # episode 0 at t=0: three padding rows (frame 0 repeated, action 0, mask 0), then x_0 and a_0
    assert pixel(frames[0]).tolist() == [0, 0, 0, 0] and mask[0].tolist() == [0, 0, 0, 1]
    assert actions[0].tolist() == [[0, 0]] * 4  # a_0 = (0, 0)
    assert int(pixel(x_next[0])) == 1
    # episode 0 at t=2: x_0 padded once, then x_0, x_1, x_2; actions a_0..a_2 with the padding zeroed
    assert pixel(frames[1]).tolist() == [0, 0, 1, 2] and mask[1].tolist() == [0, 1, 1, 1]
    assert torch.allclose(actions[1], torch.tensor([[0, 0], [0, 0], [0.1, -0.1], [0.2, -0.2]]))
    assert int(pixel(x_next[1])) == 3
    # episode 1 never sees episode 0's frames: its padding repeats its own first frame (10)
    assert pixel(frames[2]).tolist() == [10, 10, 10, 10] and int(pixel(x_next[2])) == 11
    assert pixel(frames[3]).tolist() == [10, 10, 11, 12] and int(pixel(x_next[3])) == 13
    assert torch.allclose(actions[3, -1], torch.tensor([0.2, -0.2]))  # the newest row is a_t


class CountingWorld(wm_mod.WorldModel):
    """A world model whose next frame is the last frame plus one grey level per step: the frame
    value counts the steps since the start, so a classifier can read the time off it."""

    def __init__(self):
        self.T, self.device, self.precision = 2, torch.device("cpu"), "fp32"
        self.cfg = wm_mod.WorldModelConfig(history=2, num_bins=3, action_encoding="two-hot", channels=(8,),
                                           cond_dim=8, sigma_data=0.5, denoising_steps=1, sampler="euler",
                                           action_dim=1, resolution=2, env={}, tasks=[TINY])

    def step(self, frames, actions, mask):
        return common.to_float(common.to_uint8(frames[:, -1]) + 1)


class SucceedsAt:
    """Success when the frame's value reaches the env's own target (start value + k for env k)."""

    def __init__(self, targets):
        self.targets = torch.tensor(targets)

    def to(self, device):
        return self

    def success(self, x):
        return pixel(x) >= self.targets


def test_imagined_env_rewards_first_success_ends_and_resets_only_finished():
    starts = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)  # every episode starts at value 0
    # env 0 succeeds on its 2nd step, env 1 on its 5th (after the horizon: never), env 2 on its 1st
    env = ppo.ImaginedEnv(CountingWorld(), SucceedsAt([2, 5, 1]), starts, 3, horizon=4, frame_stack=2,
                          gen=torch.Generator().manual_seed(0))
    env.reset()
    rewards, dones = [], []
    for _ in range(4):
        obs, r, done, success = env.step(torch.zeros(3, 1))
        rewards.append(r.tolist()), dones.append(done.tolist())
        assert torch.equal(success, r.bool())  # reward 1 exactly on the step of a first success
    # env 2: success at step 1, reset, success again at step 2 (one step into its new episode), ...
    assert [r[2] for r in rewards] == [1, 1, 1, 1] and [d[2] for d in dones] == [True] * 4
    # env 0: success at step 2, then a fresh episode from value 0 succeeds 2 steps later, at step 4
    assert [r[0] for r in rewards] == [0, 1, 0, 1] and [d[0] for d in dones] == [False, True, False, True]
    # env 1 never reaches 5 within the horizon: no reward, done only at the horizon
    assert [r[1] for r in rewards] == [0, 0, 0, 0] and [d[1] for d in dones] == [False, False, False, True]
    # after the last step env 1 has been reset (its frames back at 0); the others too, as all are done
    assert pixel(obs).tolist() == [[0, 0]] * 3
    # auto-reset refills only the finished envs: after one more step, unfinished env 1 keeps counting
    env.reset()
    env.step(torch.zeros(3, 1))  # values 1, 1, 1; env 2 succeeds and is reset to 0
    obs, *_ = env.step(torch.zeros(3, 1))  # env 0 (value 2) and env 2 (value 1) succeed and are reset
    assert pixel(obs).tolist() == [[0, 0], [1, 2], [0, 0]]  # env 1 keeps its history: frames 1, 2
    assert env.t.tolist() == [0, 2, 0]


def test_loss_on_F_is_edm_weighted_loss_on_D():
    """Eq. 7 on F with unit weight equals EDM's lambda(sigma) ||D(x_noisy) - x0||^2, lambda = 1 / c_out^2."""
    cfg = wm_mod.WorldModelConfig(history=2, num_bins=5, action_encoding="two-hot", channels=(8, 16), cond_dim=16,
                                  sigma_data=0.5, denoising_steps=1, sampler="euler", action_dim=2, resolution=8,
                                  env={}, tasks=[TINY])
    torch.manual_seed(0)
    D = wm_mod.Denoiser(cfg)
    torch.nn.init.normal_(D.F.conv_out.weight, std=0.1)  # F is zero at initialisation; make it matter
    B = 16
    x0, frames = torch.rand(B, 3, 8, 8) * 2 - 1, torch.rand(B, 2, 3, 8, 8) * 2 - 1
    actions, mask = torch.rand(B, 2, 2) * 2 - 1, torch.ones(B, 2)
    torch.manual_seed(1)
    loss_F = D.loss(x0, frames, actions, mask, p_mean=-0.4, p_std=1.2)
    torch.manual_seed(1)  # the same sigma and noise as inside `loss`
    sigma = (torch.randn(B) * 1.2 - 0.4).exp()
    x_noisy = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
    _, c_out, _, _ = wm_mod.edm_scalings(sigma, 0.5)
    lam = 1 / c_out**2
    loss_D = (lam * (D(x_noisy, sigma, frames, actions, mask) - x0).pow(2).flatten(1).mean(1)).mean()
    assert float(loss_F.detach()) == pytest.approx(float(loss_D.detach()), rel=1e-4)
    assert float(loss_F.detach()) > 0.01  # not a trivial zero


def test_value_loss_and_conditioning_noise_and_ema():
    v, R = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    assert float(ppo.value_loss(v, R)) == pytest.approx(0.5 * (1 + 0 + 4) / 3)  # 1/2 (V - R)^2, averaged
    frames = torch.zeros(64, 4, 3, 8, 8)
    torch.manual_seed(0)
    noisy = wm_mod.noisy_history(frames, 0.1)
    per_sample_std = noisy.flatten(1).std(1)  # one noise level s ~ U(0, 0.1) per sample, shared by its T frames
    assert per_sample_std.max() < 0.1 * 1.1 and per_sample_std.min() < 0.02 and per_sample_std.mean() > 0.03
    assert torch.equal(wm_mod.noisy_history(frames, 0.0), frames)
    ema, model = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ema.weight.fill_(0.0), model.weight.fill_(1.0)
    wm_mod.ema_update(ema, model, step=0, decay=0.999)  # warm-up: decay' = min(0.999, 1/10) = 0.1
    assert float(ema.weight.detach()) == pytest.approx(0.9)
    wm_mod.ema_update(ema, model, step=10_000, decay=0.999)  # past the warm-up: 0.999
    assert float(ema.weight) == pytest.approx(0.9 + 0.1 * 0.001)


def test_scoring_sampler_runs_its_own_number_of_denoiser_calls():
    """wm.scoring() imagines with the checkpoint's score_denoising_steps Euler steps (05's stopping rule and
    06 score with it), PPO's rollouts with denoising_steps; the weights are shared, the original untouched."""
    cfg = wm_mod.WorldModelConfig(history=2, num_bins=5, action_encoding="two-hot", channels=(8, 16), cond_dim=16,
                                  sigma_data=0.5, denoising_steps=2, sampler="heun", action_dim=2, resolution=8,
                                  env={}, tasks=[TINY], score_denoising_steps=5)
    wm = wm_mod.WorldModel(wm_mod.Denoiser(cfg), torch.device("cpu"), "fp32")
    calls = []
    wm.D.register_forward_hook(lambda *_: calls.append(1))
    frames, actions, mask = torch.zeros(3, 2, 3, 8, 8), torch.zeros(3, 2, 2), torch.ones(3, 2)
    score = wm.scoring()
    score.step(frames, actions, mask)
    assert len(calls) == 5 and score.D is wm.D and score.sampler == "euler"
    calls.clear()
    wm.step(frames, actions, mask)
    assert len(calls) == 3 and (wm.num_steps, wm.sampler) == (2, "heun")  # Heun: 2 calls a step but the last


def test_config_from_checkpoint_takes_defaults_for_missing_fields(tmp_path):
    """A checkpoint without a field that has a default loads with the default; one without a required
    field, or with a field this code does not know, is refused with a one-line error."""
    cfg = wm_mod.WorldModelConfig(history=2, num_bins=5, action_encoding="two-hot", channels=(8,), cond_dim=8,
                                  sigma_data=0.5, denoising_steps=3, sampler="euler", action_dim=2, resolution=8,
                                  env={}, tasks=[TINY], score_denoising_steps=7)
    saved = dataclasses.asdict(cfg)
    assert common.config_from_checkpoint(wm_mod.WorldModelConfig, {"config": saved}, tmp_path) == cfg
    older = {k: v for k, v in saved.items() if k != "score_denoising_steps"}
    assert common.config_from_checkpoint(wm_mod.WorldModelConfig, {"config": older}, tmp_path).score_denoising_steps == 10
    for bad in ({k: v for k, v in saved.items() if k != "history"}, {**saved, "depth": 3}):
        with pytest.raises(common.UserError, match="retrain"):
            common.config_from_checkpoint(wm_mod.WorldModelConfig, {"config": bad}, tmp_path)
