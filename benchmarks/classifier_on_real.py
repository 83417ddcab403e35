"""Does a reward classifier fire on the real frames of a policy's real failures? A one-minute screen.

A refined policy exploits the classifier where it fires on states in which the task is not done
(docs/RESULTS.md, "Imagination against reality"). Before spending a world model, a classifier and a
PPO run (about 40 minutes on 2 cores) on a new source of hard negatives, score the new classifier on
the real episodes of a policy that exploited the old one: real episodes only, no world model.

For each classifier and policy, on `--episodes` seeded real episodes (06's seeds at offset 0):
- fires on real failures: episodes that fail in the simulator in which the classifier fires on some
  frame (06 reports the same count for the run's own classifier, in its per-start table);
- fires on real successes: episodes whose success frame (the last: episodes end at the first
  success) the classifier calls a success.
A better classifier lowers the first without lowering the second.

    python benchmarks/classifier_on_real.py --task button-press \\
        --policies runs/cpu/button-press/bc.pt runs/cpu/button-press/ppo_seed0/refined.pt \\
        --classifiers runs/cpu/button-press/reward.pt R/button-press/reward.pt
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

bc_mod = common.import_stage("04_bc")
reward_mod = common.import_stage("03_reward")


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task (a Meta-World name or an env spec)"""
    policies: list[Path] = dataclasses.field(default_factory=list)
    """policy checkpoints whose real episodes are scored"""
    classifiers: list[Path] = dataclasses.field(default_factory=list)
    """reward classifier checkpoints (03_reward.py's reward.pt), each at its stored threshold"""
    episodes: int = 100
    """seeded real episodes per policy"""
    seed_offset: int = 0
    """evaluation seeds common.eval_seeds(episodes, seed_offset): 06 uses offset 0"""
    workers: int = 2
    """processes for the real episodes"""


def score(clf, frames: list[np.ndarray], success: list[bool]) -> dict:
    """frames: per episode (L+1, H, W, 3) uint8, frames[0] the reset frame; success: per episode."""
    import torch

    fires_fail, fires_succ = 0, 0
    for f, ok in zip(frames, success):
        p = reward_mod.predict(clf, f[1:], torch.device("cpu")) > clf.cfg.threshold  # (L,)
        if ok:
            fires_succ += bool(p[-1])
        else:
            fires_fail += bool(p.any())
    return {"real_failures": len(success) - sum(success), "fires_on_failures": fires_fail,
            "real_successes": sum(success), "fires_on_successes": fires_succ}


def main(args: Args) -> dict:
    if not args.policies or not args.classifiers:
        common.fail("give --policies and --classifiers (checkpoint paths)")
    for p in [*args.policies, *args.classifiers]:
        if not Path(p).exists():
            common.fail(f"no checkpoint at {p}")
    clfs = {str(c): reward_mod.load_reward(c) for c in args.classifiers}
    seeds = common.eval_seeds(args.episodes, offset=args.seed_offset)
    rows = []
    for p in args.policies:
        pi = bc_mod.load_policy(p)
        r = common.evaluate_real(bc_mod.load_policy, p, args.task, pi.cfg.env, seeds, args.workers,
                                 keep_frames=len(seeds), desc=f"real {Path(p).parent.name}/{Path(p).stem}")
        success = [s is not None for s in r["steps_to_success"]]
        for c, clf in clfs.items():
            rows.append({"policy": str(p), "classifier": c, "threshold": clf.cfg.threshold,
                         **score(clf, r["frames"], success)})
    print("| policy | classifier (threshold) | fires on real failures | fires on the success frame of real successes |")
    print("| --- | --- | --- | --- |")
    for w in rows:
        print(f"| {w['policy']} | {w['classifier']} ({w['threshold']:.2f}) | {w['fires_on_failures']} of "
              f"{w['real_failures']} | {w['fires_on_successes']} of {w['real_successes']} |")
    return {"rows": rows}


if __name__ == "__main__":
    common.run_main(main, Args)
