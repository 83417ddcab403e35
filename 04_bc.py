"""Stage 4 -- the starting policy: a Gaussian policy on images by imitation (World4RL, Sec. III-A, Eqs. 1-2).

    pi_theta(a | x) = N(mu_theta(x), diag(sigma^2))                          (Eq. 1)
    L_BC(theta) = -E_{(x, a) ~ expert} [ log pi_theta(a | x) ]               (Eq. 2)

x is the stack of the last `frame_stack` frames; mu is tanh-squashed into [-1, 1]; the
log-std is one learned vector, capped above at 0 (sigma <= 1, the paper's cap for
refinement). With a state-independent sigma the NLL's gradient on mu is the MSE's scaled by
1/sigma^2, so the mean is fitted as in MSE behaviour cloning. The number of demonstrations
is a flag, which sets how good the starting policy is. At the end the policy is run in the
real environment on seeded episodes (its mean action) and the success rate is reported.

Reads `data/cpu/<task>/expert_*.npz` (stage 1); writes `runs/cpu/<task>/bc.pt`, `bc_eval.json`
(and the episodes' frames, `bc_eval_starts.npz`, for stage 5's check of imagination).
Departures from the paper (a state-independent sigma): docs/DEVIATIONS.md, "Policy".

    python 04_bc.py --task button-press --num-demos 2
        # BC: 2 demonstrations, 60 (frames, action) pairs
        # BC real success: 18/50 = 36.0% (95% CI 24.1%-49.9%)                   (~1 min on 2 cores)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import common


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task to imitate"""
    data_dir: Path = Path("data/cpu")
    """dataset written by 01_collect.py"""
    run_dir: Path = Path("runs/cpu")
    """checkpoints go to <run-dir>/<task>/bc.pt"""
    num_demos: int = 2
    """expert episodes used for imitation: this sets how good the starting policy is, and the right
    number depends on the task (CPU config, 100 real episodes: button-press 1 -> 25%, 2 -> 32%,
    3 -> 100%; coffee-pull 20 -> 18%)"""
    frame_stack: int = 2
    """past frames the policy sees (<= the world model's history T)"""
    channels: tuple[int, ...] = (32, 64, 64)
    """CNN encoder channels (each layer halves the resolution)"""
    log_std_max: float = 0.0
    """cap on the log-std: sigma <= e^0 = 1 (the paper's cap)"""
    steps: int = 2000
    """optimizer steps"""
    batch_size: int = 64
    """(frames, action) pairs per step"""
    lr: float = 3e-4
    """Adam learning rate"""
    eval_episodes: int = 50
    """seeded real episodes for the success rate at the end (0: skip)"""
    workers: int = 2
    """processes for the real evaluation"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""
    seed: int = 0
    """seed for demo choice, initialisation and batches"""


@dataclasses.dataclass
class PolicyConfig:
    """What rebuilds a policy (BC or refined); saved in its checkpoint with `asdict`."""

    frame_stack: int  # S
    channels: tuple[int, ...]
    action_dim: int
    log_std_max: float
    resolution: int
    task: str
    env: dict  # common.EnvConfig of the data, as a dict: the real env it is evaluated in
    num_demos: int

    def __post_init__(self):
        self.channels = tuple(self.channels)


# --- 1. The policy -----------------------------------------------------------------------
class Encoder(nn.Module):
    """Stacked frames (B, S, 3, H, W) in [-1, 1] -> features (B, 256). Also the critic's trunk (stage 5)."""

    def __init__(self, frame_stack: int, channels: tuple[int, ...]):
        super().__init__()
        layers, c = [], 3 * frame_stack
        for c_next in channels:
            layers += [nn.Conv2d(c, c_next, 3, stride=2, padding=1), nn.GroupNorm(8, c_next), nn.SiLU()]
            c = c_next
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(c * 16, 256), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1, 2))


class GaussianPolicy(nn.Module):
    """pi_theta(a | x) = N(mu_theta(x), diag(sigma^2)) (Eq. 1). sigma is one learned vector, not a
    function of x as the paper's Sigma(x) (docs/DEVIATIONS.md)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.frame_stack, cfg.channels)
        self.mu_head = nn.Linear(256, cfg.action_dim)
        self.log_std = nn.Parameter(torch.full((cfg.action_dim,), -1.0))

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """mu(x) in [-1, 1], (B, D), for stacked frames x (B, S, 3, H, W); fp32 also under bf16 autocast."""
        return torch.tanh(self.mu_head(self.encoder(x))).float()

    def dist(self, x: torch.Tensor) -> torch.distributions.Normal:
        """pi(. | x) for stacked frames x (B, S, 3, H, W)."""
        mu = self.mean(x)
        log_std = self.log_std.clamp(-5.0, self.cfg.log_std_max)  # sigma <= e^log_std_max
        return torch.distributions.Normal(mu, log_std.exp().expand_as(mu))

    @torch.no_grad()
    def act_np(self, frames: list[np.ndarray], rng: np.random.Generator | None = None,
               deterministic: bool = False) -> np.ndarray:
        """One action for the episode so far (list of uint8 frames); pads the start with frame 0."""
        S = self.cfg.frame_stack
        recent = [frames[max(0, len(frames) - S + i)] for i in range(S)]
        x = torch.from_numpy(np.stack(recent)).movedim(-1, -3).float()[None] / 127.5 - 1
        d = self.dist(x.to(next(self.parameters()).device))
        a = d.mean[0].cpu().numpy()
        if not deterministic:
            rng = rng or np.random.default_rng()
            a = a + d.stddev[0].cpu().numpy() * rng.standard_normal(a.shape)
        return np.clip(a, -1, 1).astype(np.float32)


def load_policy(path: Path) -> GaussianPolicy:
    """A BC (stage 4) or refined (stage 5) policy checkpoint."""
    ck = common.load_checkpoint(path, ("bc", "ppo"), "04_bc.py or 05_ppo_refine.py")
    pi = GaussianPolicy(common.config_from_checkpoint(PolicyConfig, ck, path))
    pi.load_state_dict(ck["policy"])
    return pi.eval()


def gaussian_nll(mu: torch.Tensor, log_std: torch.Tensor, a: torch.Tensor, log_std_max: float) -> torch.Tensor:
    """Eq. 2 for the Gaussian of Eq. 1: -log N(a; mu, diag(sigma^2)), summed over the D action dimensions
    and averaged over the batch. mu, a (B, D); log_std (D,), capped: sigma = exp(clamp(log_std, -5,
    log_std_max)), so sigma <= 1 at the paper's cap log_std_max = 0."""
    std = log_std.clamp(-5.0, log_std_max).exp().expand_as(mu)
    return -torch.distributions.Normal(mu, std).log_prob(a).sum(-1).mean()


def bc_loss(pi: GaussianPolicy, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The BC loss of a policy on frames x (B, S, 3, H, W) and expert actions a (B, D) in [-1, 1].
    Actions at exactly +-1 (the expert's clipped ones) are pulled in to +-0.999: tanh(mu) never
    reaches them, and their likelihood would pull mu's pre-activation to infinity."""
    return gaussian_nll(pi.mean(x), pi.log_std, a.clamp(-0.999, 0.999), pi.cfg.log_std_max)


def save_policy(path: Path, stage: str, pi: GaussianPolicy, **extra) -> None:
    """A policy checkpoint that `load_policy` rebuilds alone (config, weights, anything else)."""
    common.save_checkpoint(path, stage, config=dataclasses.asdict(pi.cfg), policy=pi.state_dict(), **extra)


# --- 2. Training -------------------------------------------------------------------------------
def main(args: Args) -> dict:
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    meta = common.read_meta(args.data_dir)
    demos = common.list_episodes(args.data_dir, [args.task], sources=("expert", "demo"), split="train")
    if len(demos) < args.num_demos:
        common.fail(f"--num-demos {args.num_demos} but only {len(demos)} expert episodes (training split) "
                    f"in {args.data_dir}; collect more with 01_collect.py --num-expert")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(demos), args.num_demos, replace=False))
    # The transition sampler gives exactly what BC needs: the last S frames (padded at the episode
    # start) and the actions, whose last row is a_t.
    data = common.Transitions([demos[i] for i in chosen], args.frame_stack)
    cfg = PolicyConfig(frame_stack=args.frame_stack, channels=args.channels, action_dim=int(meta["action_dim"]),
                       log_std_max=args.log_std_max, resolution=int(meta["resolution"]), task=args.task,
                       env=dataclasses.asdict(common.env_config_from_meta(meta)), num_demos=args.num_demos)
    pi = GaussianPolicy(cfg).to(device)
    opt = torch.optim.Adam(pi.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"BC: {args.num_demos} demonstrations, {len(data.index)} (frames, action) pairs")
    bar = tqdm(range(args.steps), desc="bc", unit="step")
    for step in bar:
        x, actions, _, _ = data.batch(args.batch_size, gen)  # x (B, S, 3, H, W), actions (B, S, D)
        x = F.pad(x.flatten(1, 2), (2,) * 4, mode="replicate")  # random-shift augmentation
        dx, dy = torch.randint(0, 5, (2,), generator=gen)
        x = x[..., dy:dy + cfg.resolution, dx:dx + cfg.resolution].unflatten(1, (args.frame_stack, 3))
        a = actions[:, -1].to(device)  # a_t, the expert's action at the newest frame
        nll = bc_loss(pi, x.to(device), a)  # Eq. 2
        opt.zero_grad(set_to_none=True)
        nll.backward()
        opt.step()
        if step == 0:
            initial_nll = float(nll.item())
        if step % 20 == 0:
            sigma = pi.log_std.clamp(max=args.log_std_max).exp().mean()
            bar.set_postfix(nll=f"{nll.item():.3f}", sigma=f"{sigma:.3f}", refresh=False)
    out = args.run_dir / common.task_slug(args.task)
    save_policy(out / "bc.pt", "bc", pi, seed=args.seed, final_nll=float(nll.item()))
    report = {"initial_nll": initial_nll, "final_nll": float(nll.item()), "num_demos": args.num_demos}
    if args.eval_episodes:
        seeds = common.eval_seeds(args.eval_episodes)
        r = common.evaluate_real(load_policy, out / "bc.pt", args.task, cfg.env, seeds, args.workers,
                                 keep_frames=len(seeds))
        episodes = r.pop("frames")  # n arrays (L_i + 1, H, W, 3) uint8
        starts = np.stack([f[0] for f in episodes])  # (n, H, W, 3): each episode's first frame
        longest = max(len(f) for f in episodes)  # every frame, padded by repeating the last: (n, longest, H, W, 3)
        frames = np.stack([np.concatenate([f, np.repeat(f[-1:], longest - len(f), 0)]) for f in episodes])
        # stage 5 imagines BC from these starts to check imagination against these outcomes (--min-validity),
        # and runs its classifier on the real frames to tell which of the two models errs
        common.atomic_write(out / "bc_eval_starts.npz", lambda f: np.savez_compressed(
            f, frames=starts, seeds=seeds, episode_frames=frames, lengths=[len(f) for f in episodes]))
        r["seeds"] = seeds
        report["real"] = r
        print(f"BC real success: {r['successes']}/{r['episodes']} = {r['success_rate']:.1%} "
              f"(95% CI {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})")
    common.atomic_write(out / "bc_eval.json", lambda f: f.write(json.dumps(report, indent=1)), binary=False)
    return report


common.use_answers(globals())  # exercises: WORLD4RL_ANSWERS=your_file.py swaps in your functions

if __name__ == "__main__":
    common.run_main(main, Args)
