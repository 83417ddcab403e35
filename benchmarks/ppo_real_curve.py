"""PPO's learning curve in the real env: stage 5 as it is, plus a real-env score every few iterations.

Refinement never sees these real episodes: the score is computed after each iteration's update on
seeds kept apart from training and from 06_eval.py's (offset 10,000), and written into that
iteration's log row (`real_success_for_curve_only`) beside the imagined scores. Iteration 0 is the
BC policy on the same seeds. Docs: docs/RESULTS.md, "PPO: what made it learn within a CPU budget".

    python benchmarks/ppo_real_curve.py --task button-press --real-every 4 --real-episodes 50 --seed 5
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ppo = common.import_stage("05_ppo_refine")
bc_mod = common.import_stage("04_bc")


@dataclasses.dataclass
class Args(ppo.Args):
    real_every: int = 4
    """score the policy in the real env every this many iterations"""
    real_episodes: int = 50
    """seeded real episodes per score"""
    workers: int = 2
    """processes for the real episodes"""


def main(args: Args) -> dict:
    task_dir = args.run_dir / common.task_slug(args.task)
    out = task_dir / f"ppo_seed{args.seed}"
    seeds = common.eval_seeds(args.real_episodes, 10_000)
    env_cfg = bc_mod.load_policy(task_dir / "bc.pt").cfg.env
    curve = {0: common.evaluate_real(bc_mod.load_policy, task_dir / "bc.pt", args.task, env_cfg, seeds, args.workers,
                                     desc="real BC (curve only)")["success_rate"]}

    def score(iteration: int, pi, row: dict) -> None:
        if iteration % args.real_every:
            return
        bc_mod.save_policy(out / "current.pt", "ppo", pi, seed=args.seed)
        r = common.evaluate_real(bc_mod.load_policy, out / "current.pt", args.task, env_cfg, seeds, args.workers,
                                 desc=f"real it {iteration} (curve only)")
        row["real_success_for_curve_only"] = curve[iteration] = r["success_rate"]

    log = ppo.main(args, after_iteration=score)
    print("real success (curve only): " + ", ".join(f"it {k} {v:.2f}" for k, v in curve.items()))
    log["real_curve"] = curve
    return log


if __name__ == "__main__":
    common.run_main(main, Args)
