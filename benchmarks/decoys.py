"""Decoy episodes: the scripted expert doing the task in the wrong place (hard negatives for stage 3).

Not in the paper's recipe. The expert acts on an observation whose goal is shifted `--shift LOW HIGH`
metres in the x-y plane, at a random bearing, so it carries the object to a wrong spot: a failure
that looks like the end of a success. Measured on coffee-pull with the top-down camera, 100 decoys
raised the classifier's held-out F1 on the recipe's episodes from 0.944 to 0.975 (docs/RESULTS.md,
"Six tasks: reward classifier"); `benchmarks/classifier_six.sh` uses them. The episodes are saved
as source `decoy` into a stage-1 dataset (which must exist), so `03_reward.py` trains on them.

    python benchmarks/decoys.py --tasks coffee-pull --data-dir data/cpu-topview-x2-decoy --num-decoy 100
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

collect = common.import_stage("01_collect")


@dataclasses.dataclass
class Args:
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["coffee-pull"])
    """tasks (suites allowed) of an existing stage-1 dataset"""
    data_dir: Path = Path("data/cpu")
    """the dataset to add decoy episodes to (its meta.json sets resolution and camera)"""
    num_decoy: int = 100
    """decoy episodes per task"""
    shift: tuple[float, float] = (0.12, 0.25)
    """range of the wrong goal's distance from the true one (metres); keep the low end well outside
    the success radius (coffee-pull: 7 cm), or decoys become near misses no camera resolves"""
    seed: int = 0
    """base seed, as 01_collect.py's"""


class ShiftedGoal:
    """An env whose expert aims at a goal `shift` (x, y) away from the true one."""

    def __init__(self, env, shift: np.ndarray):
        self.env, self.shift = env, shift
        self.action_dim, self.max_steps = env.action_dim, env.max_steps

    def reset(self, seed: int) -> np.ndarray:
        return self.env.reset(seed)

    def step(self, action: np.ndarray):
        return self.env.step(action)

    def expert_action(self) -> np.ndarray | None:
        try:
            return self.env.expert_action(goal_shift=self.shift)
        except TypeError:
            common.fail("this env's expert_action() takes no goal_shift, which decoy episodes need")


def decoy_episode(env, seed: int, shift_range: tuple[float, float]):
    """One decoy episode: a wrong goal at a random bearing, then the plain expert's episode loop."""
    rng = np.random.default_rng(seed)
    r, theta = rng.uniform(*shift_range), rng.uniform(0, 2 * np.pi)
    return collect.run_episode(ShiftedGoal(env, r * np.array([np.cos(theta), np.sin(theta)])), seed, "expert")


def main(args: Args) -> int:
    if not 0 <= args.shift[0] <= args.shift[1]:
        common.fail(f"--shift must be two distances LOW HIGH with 0 <= LOW <= HIGH, not {args.shift}")
    cfg = common.env_config_from_meta(common.read_meta(args.data_dir))
    n = 0
    for task in common.expand_tasks(args.tasks):
        env = common.make_env(task, cfg)
        for i in tqdm(range(args.num_decoy), desc=f"decoys {task}", unit="ep"):
            path = common.episode_path(args.data_dir, task, "decoy", i)
            if path.exists():
                continue
            seed = common.stable_seed(args.seed, task, "decoy", i)
            frames, actions, success = decoy_episode(env, seed, args.shift)
            common.save_episode(path, frames, actions, success, task, "decoy", seed)
            n += 1
        env.close()
    print(f"{n} new decoy episodes in {args.data_dir}")
    return n


if __name__ == "__main__":
    common.run_main(main, Args)
