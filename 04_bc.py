"""Stage 4 -- the starting policy: a Gaussian policy on images by imitation (World4RL, Sec. III-A, Eqs. 1-2).

    pi_theta(a | x) = N(mu_theta(x), diag(sigma^2))                          (Eq. 1)
    L_BC(theta) = -E_{(x, a) ~ expert} [ log pi_theta(a | x) ]               (Eq. 2)

x is the stack of the last `frame_stack` frames; mu is tanh-squashed into [-1, 1]; the
log-std is one learned vector, capped above at 0 (sigma <= 1, the paper's cap for
refinement). With a state-independent sigma the NLL's gradient on mu is the MSE's scaled by
1/sigma^2, so the mean is fitted as in MSE behaviour cloning. The number of demonstrations
is a flag, which sets how good the starting policy is. At the end the policy is run in the
real environment on seeded episodes (its mean action) and the success rate is reported.

Reads `<data-dir>/<task>/expert_*.npz` (stage 1); writes `<run-dir>/<task>/bc.pt`, `bc_eval.json`.

    python 04_bc.py --task button-press --num-demos 2 --data-dir data/cpu --run-dir runs/cpu
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
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
    data_dir: Path = Path("data")
    """dataset written by 01_collect.py"""
    run_dir: Path = Path("runs")
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
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg["frame_stack"], tuple(cfg["channels"]))
        self.mu_head = nn.Linear(256, cfg["action_dim"])
        self.log_std = nn.Parameter(torch.full((cfg["action_dim"],), -1.0))

    def dist(self, x: torch.Tensor) -> torch.distributions.Normal:
        """pi(. | x) for stacked frames x (B, S, 3, H, W)."""
        mu = torch.tanh(self.mu_head(self.encoder(x))).float()  # fp32 also under bf16 autocast
        log_std = self.log_std.clamp(-5.0, self.cfg["log_std_max"])  # sigma <= e^log_std_max
        return torch.distributions.Normal(mu, log_std.exp().expand_as(mu))

    @torch.no_grad()
    def act_np(self, frames: list[np.ndarray], rng: np.random.Generator | None = None,
               deterministic: bool = False) -> np.ndarray:
        """One action for the episode so far (list of uint8 frames); pads the start with frame 0."""
        S = self.cfg["frame_stack"]
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
    pi = GaussianPolicy(ck["config"])
    pi.load_state_dict(ck["policy"])
    return pi.eval()


# --- 2. Real-environment evaluation (also used by stages 5 and 6) ---------------------------
def _eval_worker(job: tuple) -> tuple[int, bool, int | None, np.ndarray | None]:
    path, spec, cfg, seed, keep_frames, deterministic = job
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    global _EVAL_CACHE
    if "_EVAL_CACHE" not in globals() or _EVAL_CACHE[0] != (path, spec):
        _EVAL_CACHE = ((path, spec), load_policy(Path(path)), common.make_env(spec, common.EnvConfig(**cfg)))
    _, pi, env = _EVAL_CACHE
    frames = [env.reset(seed)]
    rng = np.random.default_rng(seed)
    first = None
    for t in range(env.max_steps):
        frame, success = env.step(pi.act_np(frames, rng, deterministic))
        frames.append(frame)
        if success:  # an episode ends at its first success, as in every stage
            first = t + 1
            break
    return seed, first is not None, first, (np.stack(frames) if keep_frames else None)


def evaluate_real(policy_path: Path, spec: str, env_cfg: dict, seeds: list[int], workers: int = 2,
                  keep_frames: int = 0, deterministic: bool = True, desc: str = "real eval") -> dict:
    """Run a policy checkpoint on seeded real episodes; success counts any success in the episode."""
    jobs = [(str(policy_path), spec, env_cfg, s, i < keep_frames, deterministic) for i, s in enumerate(seeds)]
    results, t0 = {}, time.time()
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        bar = tqdm(pool.imap_unordered(_eval_worker, jobs), total=len(jobs), desc=desc, unit="ep")
        for seed, ok, first, frames in bar:
            results[seed] = (ok, first, frames)
            bar.set_postfix(success=f"{np.mean([r[0] for r in results.values()]):.2f}", refresh=False)
    ordered = [results[s] for s in seeds]
    k = sum(r[0] for r in ordered)
    steps = [r[1] for r in ordered if r[1] is not None]
    return {"episodes": len(seeds), "successes": k, "success_rate": k / len(seeds),
            "ci95": common.wilson_interval(k, len(seeds)),
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
            "steps_to_success": [r[1] for r in ordered], "seconds": time.time() - t0,
            "frames": [r[2] for r in ordered[:keep_frames]]}


def real_start_frames(spec: str, env_cfg: dict, seeds: list[int]) -> np.ndarray:
    """The first frame of each seeded real episode, (n, H, W, 3) uint8: what 06_eval.py starts the
    imagined twin of each real evaluation episode from (a reset and a render, no step)."""
    env = common.make_env(spec, common.EnvConfig(**env_cfg))
    try:
        return np.stack([env.reset(s) for s in seeds])
    finally:
        env.close()


def eval_seeds(n: int, offset: int = 0) -> list[int]:
    """Seeds for evaluation episodes: disjoint from the collection seeds by construction."""
    return [common.stable_seed("eval", i) for i in range(offset, offset + n)]


# --- 3. Training -------------------------------------------------------------------------------
def main(args: Args) -> dict:
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    meta = common.read_meta(args.data_dir)
    wm_mod = common.import_stage("02_world_model")
    demos = common.list_episodes(args.data_dir, [args.task], sources=("expert", "demo"), split="train")
    if len(demos) < args.num_demos:
        common.fail(f"--num-demos {args.num_demos} but only {len(demos)} expert episodes (training split) "
                    f"in {args.data_dir}; collect more with 01_collect.py --num-expert")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(demos), args.num_demos, replace=False))
    # The world model's sampler gives exactly what BC needs: the last S frames (clamped at the
    # episode start) and the actions, whose last row is a_t.
    data = wm_mod.Transitions([demos[i] for i in chosen], args.frame_stack)
    cfg = {"frame_stack": args.frame_stack, "channels": list(args.channels), "action_dim": int(meta["action_dim"]),
           "log_std_max": args.log_std_max, "resolution": int(meta["resolution"]), "task": args.task,
           "env": common.env_config_from_meta(meta).__dict__, "num_demos": args.num_demos}
    pi = GaussianPolicy(cfg).to(device)
    opt = torch.optim.Adam(pi.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"BC: {args.num_demos} demonstrations, {len(data.index)} (frames, action) pairs")
    bar = tqdm(range(args.steps), desc="bc", unit="step")
    for step in bar:
        x, actions, _, _ = data.batch(args.batch_size, gen)  # x (B, S, 3, H, W), actions (B, S, D)
        x = F.pad(x.flatten(1, 2), (2,) * 4, mode="replicate")  # random-shift augmentation
        dx, dy = torch.randint(0, 5, (2,), generator=gen)
        x = x[..., dy:dy + cfg["resolution"], dx:dx + cfg["resolution"]].unflatten(1, (args.frame_stack, 3))
        a = actions[:, -1].to(device)  # a_t, the expert's action at the newest frame
        nll = -pi.dist(x.to(device)).log_prob(a.clamp(-0.999, 0.999)).sum(-1).mean()  # Eq. 2
        opt.zero_grad(set_to_none=True)
        nll.backward()
        opt.step()
        if step == 0:
            initial_nll = float(nll.item())
        if step % 20 == 0:
            sigma = pi.log_std.clamp(max=args.log_std_max).exp().mean()
            bar.set_postfix(nll=f"{nll.item():.3f}", sigma=f"{sigma:.3f}", refresh=False)
    out = args.run_dir / common.task_slug(args.task)
    common.save_checkpoint(out / "bc.pt", "bc", config=cfg, policy=pi.state_dict(), seed=args.seed,
                           final_nll=float(nll.item()))
    report = {"initial_nll": initial_nll, "final_nll": float(nll.item()), "num_demos": args.num_demos}
    if args.eval_episodes:
        r = evaluate_real(out / "bc.pt", args.task, cfg["env"], eval_seeds(args.eval_episodes), args.workers)
        r.pop("frames")
        report["real"] = r
        print(f"BC real success: {r['successes']}/{r['episodes']} = {r['success_rate']:.1%} "
              f"(95% CI {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})")
    common.atomic_write(out / "bc_eval.json", lambda f: f.write(json.dumps(report, indent=1)), binary=False)
    return report


if __name__ == "__main__":
    common.run_main(main, Args)
