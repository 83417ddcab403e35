"""Stage 1 -- collect image episodes with success labels (World4RL, Sec. IV-A "Datasets").

The paper pre-trains its world model on task-agnostic multi-task data: per Meta-World task,
50 expert trajectories, 150 rollouts of the imitation policy and 30 random-action
rollouts. This script collects that recipe through an env adapter (`common.make_env`):

- `expert`: the scripted Meta-World expert (acts on the simulator state, recorded as images).
- `noisy`:  the expert with Gaussian action noise at several levels -- a mix of successes
            and failures that stands in for imitation-policy rollouts until a policy exists.
- `random`: uniform random actions.
- `policy`: rollouts of the stage-4 imitation policy (`--policy runs/cpu/<task>/bc.pt`; a refined one of
            stage 5 works too: the paper's recipe one round later, docs/RESULTS.md). This is
            the one place where an earlier stage loads a later one's output: the paper's recipe
            needs the imitation policy, which needs expert data first. So the main command runs
            01 (expert, noisy, random), 04, then 01 again with `--policy`.

Each episode is one `.npz` (format in `common.py`); complete episodes already on disk are
kept and skipped, so an interrupted run resumes. Reads nothing (but `--policy`); writes `data/cpu/`.
Departures from the paper's recipe (noisy-expert episodes, 30 decisions at action repeat 4):
docs/DEVIATIONS.md, "Data".

    python 01_collect.py --tasks button-press
        # button-press: 230 new episodes, 42% successful             (~25 s on 2 cores)
    python 01_collect.py --tasks button-press --policy runs/cpu/button-press/bc.pt --num-policy 150
        # after 04_bc.py: button-press: 150 new episodes, 43% successful   (~20 s)
    python 01_collect.py --tasks six --scale 0.2     # the six-task suite, 20% of the recipe
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from pathlib import Path

import warnings

import numpy as np
from tqdm import tqdm

import common


@dataclasses.dataclass
class Args:
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["button-press"])
    """Meta-World task names, suites (`six`, `mt10`), `gym:<id>` or `module:factory` specs"""
    data_dir: Path = Path("data/cpu")
    """where episodes and meta.json go (git-ignored)"""
    num_expert: int = 50
    """expert episodes per task (paper: 50)"""
    num_noisy: int = 150
    """noisy-expert episodes per task (stand-in for the paper's 150 policy rollouts)"""
    num_random: int = 30
    """random-action episodes per task (paper: 30)"""
    scale: float = 1.0
    """multiplies the three counts above (e.g. 0.2 for a quick run)"""
    noise_levels: tuple[float, ...] = (0.3, 0.5, 0.7, 1.0)
    """std of the Gaussian action noise of the noisy expert, cycled over its episodes"""
    policy: Path | None = None
    """a policy checkpoint (stage 4, or a refined one of stage 5): collect `num_policy` rollouts of it,
    labelled `policy`"""
    num_policy: int = 150
    """policy rollouts per task when --policy is given (paper: 150); those on disk count, so
    `--num-policy 300` after 150 BC rollouts adds 150 of another policy"""
    resolution: int = 48
    """frame height and width in pixels"""
    camera: str = "corner"
    """Meta-World camera name"""
    fovy: float = 30.0
    """camera field of view in degrees (Meta-World's default 45 leaves objects tiny)"""
    action_repeat: int = 4
    """simulator steps per decision"""
    max_steps: int = 30
    """decisions per episode (L); frames per episode = L + 1"""
    workers: int = 2
    """worker processes (one env each)"""
    seed: int = 0
    """base seed; every episode's reset seed derives from it, the task, source and index"""


# --- 1. One episode -------------------------------------------------------------------
def run_episode(env: common.EnvAdapter, seed: int, source: str, noise: float = 0.0,
                policy=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out one episode; returns frames (L+1,H,W,3), actions (L,D), success (L+1,)."""
    rng = np.random.default_rng(seed)
    frame = env.reset(seed)
    frames, actions, success = [frame], [], [False]
    for _ in range(env.max_steps):
        if source == "random":
            a = rng.uniform(-1, 1, env.action_dim)
        elif source == "policy":
            a = policy.act_np(frames, rng)
        else:  # expert or noisy expert
            a = env.expert_action()
            if a is None:
                common.fail("this env has no scripted expert; collect with --num-expert 0 --num-noisy 0")
            a = a + noise * rng.standard_normal(env.action_dim)
        a = np.clip(a, -1, 1).astype(np.float32)
        frame, done = env.step(a)
        frames.append(frame)
        actions.append(a)
        success.append(done)
    return np.stack(frames), np.stack(actions), np.array(success)


# --- 2. Workers: one env per process, reused across episodes ---------------------------
_ENVS: dict[str, common.EnvAdapter] = {}
_POLICY = None


def _worker_init(cfg: common.EnvConfig, policy_path: str | None) -> None:
    global _CFG, _POLICY
    _CFG = cfg
    warnings.filterwarnings("ignore", message="Constant")  # Meta-World experts' clipping notice
    import torch

    torch.set_num_threads(1)
    if policy_path:
        _POLICY = common.import_stage("04_bc").load_policy(Path(policy_path))


def _collect_one(job: tuple) -> tuple[str, int, bool, int]:
    task, source, index, noise, seed, path = job
    if task not in _ENVS:
        _ENVS[task] = common.make_env(task, _CFG)
    frames, actions, success = run_episode(_ENVS[task], seed, source, noise, _POLICY)
    common.save_episode(Path(path), frames, actions, success, task, source, seed)
    return task, index, bool(success.any()), len(frames)


def plan_jobs(args: Args, tasks: list[str]) -> list[tuple]:
    """Every episode to collect, with its seed; those complete on disk are skipped."""
    counts = {"expert": round(args.num_expert * args.scale), "noisy": round(args.num_noisy * args.scale),
              "random": round(args.num_random * args.scale)}
    if args.policy is not None:
        counts = {"policy": args.num_policy}
    jobs = []
    for task in tasks:
        for source, n in counts.items():
            for i in range(n):
                path = common.episode_path(args.data_dir, task, source, i)
                if path.exists():
                    continue
                noise = args.noise_levels[i % len(args.noise_levels)] if source == "noisy" else 0.0
                seed = common.stable_seed(args.seed, task, source, i)
                jobs.append((task, source, i, noise, seed, str(path)))
    return jobs


def main(args: Args) -> dict:
    tasks = common.expand_tasks(args.tasks)
    cfg = common.EnvConfig(args.resolution, args.camera, args.fovy, args.action_repeat, args.max_steps)
    # Build each env once in the parent: fails early and clearly on an unknown task, and
    # gives the action dimension for the metadata.
    dims = set()
    for t in tasks:
        env = common.make_env(t, cfg)
        dims.add(env.action_dim)
        env.close()
    if len(dims) > 1:
        common.fail(f"tasks {tasks} have different action dimensions {dims}; collect them in separate --data-dir")
    common.write_meta(args.data_dir, {**dataclasses.asdict(cfg), "action_dim": dims.pop()})
    if args.policy is not None:
        common.load_checkpoint(args.policy, ("bc", "ppo"), "04_bc.py or 05_ppo_refine.py")  # clear error before spawning workers
    for p in Path(args.data_dir).glob("*/*.npz.tmp"):
        p.unlink()  # half-written episodes of an interrupted run
    jobs = plan_jobs(args, tasks)
    stats: dict[str, list[bool]] = {}
    t0, n_frames = time.time(), 0
    ctx = mp.get_context("spawn")  # fresh processes: no GL context or torch threads inherited
    with ctx.Pool(max(1, min(args.workers, len(jobs) or 1)), _worker_init,
                  (cfg, str(args.policy) if args.policy else None)) as pool:
        bar = tqdm(pool.imap_unordered(_collect_one, jobs), total=len(jobs), desc="collect", unit="ep")
        for task, _, ok, n in bar:
            n_frames += n
            stats.setdefault(task, []).append(ok)
            bar.set_postfix(fps=f"{n_frames / (time.time() - t0):.0f}", refresh=False)
    dt = time.time() - t0
    for task, oks in stats.items():
        print(f"{task}: {len(oks)} new episodes, {np.mean(oks):.0%} successful")
    print(f"collected {len(jobs)} episodes, {n_frames} frames in {dt:.0f}s "
          f"({n_frames / max(dt, 1e-9):.0f} frames/s) into {args.data_dir}")
    return {"episodes": len(jobs), "frames": n_frames, "seconds": dt}


if __name__ == "__main__":
    common.run_main(main, Args)
