"""Decoy episodes: the scripted expert almost doing the task (hard negatives for stages 2 and 3).

Not in the paper's recipe. Three ways to fail near a success, each labelled by the simulator:

- `--mode shifted-goal`: the expert acts on an observation whose goal is shifted `--shift LOW HIGH`
  metres in the x-y plane, at a random bearing, so it carries the object to a wrong spot. Measured on
  coffee-pull with the top-down camera, 100 of them raised the classifier's held-out F1 on the
  recipe's episodes from 0.944 to 0.975 (docs/RESULTS.md, "Six tasks: reward classifier");
  `benchmarks/classifier_six.sh` uses them. Saved as source `decoy`.
- `--mode aim-offset` (Meta-World): the expert believes its hand is `--shift` metres beside where it
  is, in the x-z plane, so it does the whole motion beside the object. Saved as source `decoy`.
- `--mode stop-short`: the expert's own episode cut 1 to `--max-short` decisions before its first
  success; from there the arm holds still or backs away. Saved as source `nearmiss`.

On button-press neither of the last two helped: stop-short episodes widened the refined policy's
imagined - real gap end to end, and the aim-offset classifier fired on more of its real failures
(docs/RESULTS.md, "Hard negatives from scripted near misses"). The episodes go into an existing
stage-1 dataset, where stages 2 and 3 train on them.

    python benchmarks/decoys.py --tasks coffee-pull --data-dir data/cpu-topview-x2-decoy --num-decoy 100
    python benchmarks/decoys.py --tasks button-press --data-dir D --num-decoy 150 --mode stop-short
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

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
    mode: Literal["shifted-goal", "aim-offset", "stop-short"] = "shifted-goal"
    """how the expert fails: a wrong goal, an arm that aims beside every target, or stopping short"""
    shift: tuple[float, float] = (0.12, 0.25)
    """shifted-goal: range of the wrong goal's distance from the true one (metres); keep the low end
    well outside the success radius (coffee-pull: 7 cm), or decoys become near misses no camera
    resolves. aim-offset: range of the arm's aiming error (metres)"""
    max_short: int = 6
    """stop-short: the most decisions before the expert's first success at which it stops"""
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


class OffsetAim(ShiftedGoal):
    """A Meta-World env whose expert believes its hand is `shift` (x, y, z) from where it is, so it
    puts the hand `shift` beside every target (every Meta-World expert reads the hand from obs[:3])."""

    def expert_action(self) -> np.ndarray | None:
        obs = getattr(self.env, "_obs", None)
        if obs is None:
            common.fail("--mode aim-offset needs a Meta-World env (it shifts the hand in the expert's observation)")
        hand = obs[:3].copy()
        obs[:3] = hand + self.shift
        try:
            return self.env.expert_action()
        finally:
            obs[:3] = hand


def decoy_episode(env, seed: int, shift_range: tuple[float, float], mode: str = "shifted-goal"):
    """One decoy episode: a wrong goal (x-y) or aiming error (x-z) at a random bearing, then the plain
    expert's episode loop."""
    rng = np.random.default_rng(seed)
    r, theta = rng.uniform(*shift_range), rng.uniform(0, 2 * np.pi)
    if mode == "aim-offset":
        return collect.run_episode(OffsetAim(env, r * np.array([np.cos(theta), 0.0, np.sin(theta)])), seed, "expert")
    return collect.run_episode(ShiftedGoal(env, r * np.array([np.cos(theta), np.sin(theta)])), seed, "expert")


class StopShort(ShiftedGoal):
    """An env whose expert acts for `cut` decisions after each reset, then holds still (zero action)
    or backs away (its action negated)."""

    def __init__(self, env, cut: int, back_away: bool):
        super().__init__(env, None)
        self.cut, self.back_away, self.t = cut, back_away, 0

    def reset(self, seed: int) -> np.ndarray:
        self.t = 0
        return self.env.reset(seed)

    def step(self, action: np.ndarray):
        self.t += 1
        return self.env.step(action)

    def expert_action(self) -> np.ndarray | None:
        a = self.env.expert_action()
        if a is None:
            common.fail("this env has no scripted expert, which stop-short episodes need")
        if self.t < self.cut:
            return a
        return -a if self.back_away else np.zeros_like(a)


def stop_short_episode(env, seed: int, max_short: int):
    """The plain expert's episode from `seed`, cut k = 1..max_short decisions before its first success
    (or before the end, where it never succeeds); from the cut on the arm holds still or backs away.
    Returns frames, actions, success as 01_collect.run_episode."""
    rng = np.random.default_rng(seed)
    _, _, expert_success = collect.run_episode(env, seed, "expert")  # the expert is deterministic
    t_star = int(np.argmax(expert_success)) if expert_success.any() else env.max_steps
    cut = max(0, t_star - int(rng.integers(1, max_short + 1)))  # decisions of the expert kept
    return collect.run_episode(StopShort(env, cut, back_away=bool(rng.integers(2))), seed, "expert")


def main(args: Args) -> int:
    if not 0 <= args.shift[0] <= args.shift[1]:
        common.fail(f"--shift must be two distances LOW HIGH with 0 <= LOW <= HIGH, not {args.shift}")
    if args.max_short < 1:
        common.fail(f"--max-short must be at least 1, not {args.max_short}")
    source = "nearmiss" if args.mode == "stop-short" else "decoy"
    cfg = common.env_config_from_meta(common.read_meta(args.data_dir))
    n = 0
    for task in common.expand_tasks(args.tasks):
        env = common.make_env(task, cfg)
        for i in tqdm(range(args.num_decoy), desc=f"decoys {task}", unit="ep"):
            path = common.episode_path(args.data_dir, task, source, i)
            if path.exists():
                continue
            seed = common.stable_seed(args.seed, task, source, i)
            if args.mode == "stop-short":
                frames, actions, success = stop_short_episode(env, seed, args.max_short)
            else:
                frames, actions, success = decoy_episode(env, seed, args.shift, args.mode)
            common.save_episode(path, frames, actions, success, task, source, seed)
            n += 1
        env.close()
    print(f"{n} new {source} episodes in {args.data_dir}")
    return n


if __name__ == "__main__":
    common.run_main(main, Args)
