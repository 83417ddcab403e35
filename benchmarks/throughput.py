"""Throughput, measured in one run on one machine (ratios are what to compare across machines).

1. Collection: the bare simulator (physics steps + a fast headless render per decision, no
   policy, no saving) against the collector's own loop (`01_collect.run_episode` with the
   scripted expert, plus writing the episode), frames/s on one worker (one process).
2. Imagination (with `--world-model`): imagined transitions/s of the world model stepped in
   batch, next to the real simulator's transitions/s.

    python benchmarks/throughput.py --task button-press --resolution 48 --episodes 10
    python benchmarks/throughput.py --world-model runs/cpu/world_model.pt --resolution 48
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """Meta-World task"""
    resolution: int = 48
    """frame size"""
    action_repeat: int = 4
    """physics steps per decision"""
    max_steps: int = 30
    """decisions per episode"""
    episodes: int = 10
    """episodes per measurement"""
    world_model: Path | None = None
    """a stage-2 checkpoint: also time imagination"""
    batch: int = 32
    """imagined environments stepped together"""
    device: str = "auto"
    """device for the world model"""
    out: Path | None = None
    """write the numbers as JSON here"""


def bare_simulator_fps(env: common.MetaWorldAdapter, episodes: int) -> float:
    """Physics + render only: random actions, nothing recorded."""
    rng = np.random.default_rng(0)
    t0, n = time.perf_counter(), 0
    for ep in range(episodes):
        env.env.seed(ep)
        env.env.reset()
        env.render()
        for _ in range(env.max_steps):
            a = rng.uniform(-1, 1, 4)
            for _ in range(env.action_repeat):
                env.env.step(a)
            env.render()
            n += 1
    return n / (time.perf_counter() - t0)


def collector_fps(env: common.MetaWorldAdapter, episodes: int) -> float:
    collect = common.import_stage("01_collect")
    t0, n = time.perf_counter(), 0
    with tempfile.TemporaryDirectory() as d:
        for ep in range(episodes):
            frames, actions, success = collect.run_episode(env, ep, "expert")
            common.save_episode(Path(d) / f"expert_{ep:04d}.npz", frames, actions, success, env.task, "expert", ep)
            n += len(actions)
    return n / (time.perf_counter() - t0)


def imagined_tps(wm_path: Path, batch: int, device: str, steps: int = 10) -> float:
    import torch

    wm_mod = common.import_stage("02_world_model")
    wm = wm_mod.load_world_model(wm_path, common.pick_device(device))
    res = wm.cfg["resolution"]
    hist = wm.start(torch.zeros(batch, res, res, 3, dtype=torch.uint8))
    a = torch.zeros(batch, wm.cfg["action_dim"])
    hist = wm.push(hist, None, a)
    wm.step(*hist)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        hist = wm.push(hist, wm.step(*hist), a)
    if wm.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main(args: Args) -> dict:
    warnings.filterwarnings("ignore")
    env = common.MetaWorldAdapter(args.task, args.resolution, action_repeat=args.action_repeat,
                                  max_steps=args.max_steps)
    bare = bare_simulator_fps(env, args.episodes)
    coll = collector_fps(env, args.episodes)
    out = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
           "task": args.task, "resolution": args.resolution, "action_repeat": args.action_repeat,
           "bare_simulator_frames_per_s": bare, "collector_frames_per_s": coll, "collector_share": coll / bare}
    print(f"one worker, {args.task} at {args.resolution}x{args.resolution}, repeat {args.action_repeat}: bare "
          f"simulator {bare:.1f} frames/s, collector {coll:.1f} frames/s ({coll / bare:.0%} of bare)")
    if args.world_model:
        imag = imagined_tps(args.world_model, args.batch, args.device)
        out.update(imagined_transitions_per_s=imag, batch=args.batch, real_transitions_per_s=bare,
                   imagined_over_real=imag / bare)
        print(f"imagination: {imag:.1f} transitions/s at batch {args.batch} vs real simulator {bare:.1f} "
              f"({imag / bare:.2f}x)")
    env.close()
    if args.out:
        common.atomic_write(args.out, lambda f: f.write(json.dumps(out, indent=1)), binary=False)
    return out


if __name__ == "__main__":
    common.run_main(main, Args)
