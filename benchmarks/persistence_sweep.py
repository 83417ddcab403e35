"""Does a success that must persist for k imagined frames read refined policies more honestly?

A conservative reward for refinement: call an imagined episode a success only when the classifier
fires on k consecutive imagined frames, not on one. This measures, before any PPO run with such a
reward, how far it would move imagined success towards real success, for BC and refined policies,
on fresh paired starts: real episode i (seeded) and imagined episode i start from the same frame.
Each policy is rolled out in imagination for the whole horizon, once per world-model sample (the
classifier's verdict kept for every frame, as `threshold_sweep.py` does), and each rule is read off afterwards. With
`--members`, the same for a second conservative rule: every classifier of an ensemble must fire;
with `--noise-seeds S`, a third: the episode must succeed in each of S world-model samples; with
`--world-models`, a fourth: it must succeed in each of several world models (an ensemble). With
`--denoising-steps N ...`, not a rule but the same world model sampled with N Euler steps per frame.

    python benchmarks/persistence_sweep.py --task button-press --episodes 200 --seed-offset 50000 \
        --policies runs/cpu/button-press/bc.pt runs/cpu/button-press/ppo_seed0/refined.pt
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

wm_mod = common.import_stage("02_world_model")
reward_mod = common.import_stage("03_reward")
bc_mod = common.import_stage("04_bc")
ppo_mod = common.import_stage("05_ppo_refine")
eval_mod = common.import_stage("06_eval")


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task"""
    run_dir: Path = Path("runs/cpu")
    """holds world_model.pt and <task>/reward.pt"""
    policies: list[Path] = dataclasses.field(default_factory=list)
    """policy checkpoints (default: <task>/bc.pt and every <task>/ppo_seed*/refined.pt)"""
    episodes: int = 200
    """paired episodes per policy"""
    seed_offset: int = 50_000
    """evaluation seeds common.eval_seeds(episodes, seed_offset): 06 uses offset 0, ppo_real_curve 10,000"""
    persist: tuple[int, ...] = (1, 2, 3, 4)
    """k: consecutive imagined frames the classifier must fire on"""
    workers: int = 2
    """processes for the real episodes"""
    members: list[Path] = dataclasses.field(default_factory=list)
    """more classifier checkpoints (e.g. 03 with --seed 1 and 2 into other run dirs): adds the
    conservative rule "every classifier fires" (reward.pt and these) beside reward.pt alone"""
    noise_seeds: int = 1
    """world-model sampling noise seeds per start: above 1 adds the conservative rule "the episode
    succeeds in every one of these imagined rollouts" (a lower bound of imagined success), and the
    column "mean of the S samples, k=1" (each sample read as 06 reads its one, with noise seed 1234)"""
    world_models: list[Path] = dataclasses.field(default_factory=list)
    """more world-model checkpoints (e.g. 02 with --seed 1 into another run dir): adds the conservative
    rule "the episode succeeds in every world model" (world_model.pt and these, one sample each)"""
    denoising_steps: tuple[int, ...] = ()
    """more sampler settings for world_model.pt: adds, per N, the column "one sample with N Euler steps
    per frame" (the k columns use the world model's scoring sampler, as 06 does), and with
    --noise-seeds S its mean-of-S-samples column"""
    out: Path | None = None
    """also write the table and the numbers here (.md and .json)"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """the world models' sampling: `auto`, `fp32` or `bf16` (common.autocast), as the run that made them"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""


def persistent_success(fires: np.ndarray, k: int) -> np.ndarray:
    """fires (steps, N) bool -> (N,) bool: some run of k consecutive True frames within the horizon."""
    run = np.zeros(fires.shape[1], dtype=int)
    hit = np.zeros(fires.shape[1], dtype=bool)
    for f in fires:
        run = np.where(f, run + 1, 0)
        hit |= run >= k
    return hit


def rule_success(fires: list[np.ndarray], k: int, rollouts: list[int], classifiers: int) -> np.ndarray:
    """Imagined success per episode, (N,) bool, under one rule: in every rollout listed (indices into
    `fires`, one (steps, classifiers, N) array per imagined rollout), the first `classifiers` classifiers
    all fire on k consecutive frames."""
    return np.all([persistent_success(fires[r][:, :classifiers].all(1), k) for r in rollouts], axis=0)


class Fires:
    """Stands in for the classifier inside 05's imagined rollout: records, for each classifier, whether
    it fires on every imagined frame, (steps, M, N), and never ends an episode."""

    def __init__(self, clfs: list):
        self.clfs, self.fires = clfs, []

    def to(self, device):
        for c in self.clfs:
            c.to(device)
        return self

    def success(self, x: torch.Tensor) -> torch.Tensor:
        self.fires.append(torch.stack([c.success(x).cpu() for c in self.clfs]))
        return torch.zeros(len(x), dtype=torch.bool)


def main(args: Args) -> dict:
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    policies = args.policies or eval_mod.default_policies(task_dir)
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device).eval()
    clfs = [clf] + [reward_mod.load_reward(m).to(device).eval() for m in args.members]
    # one imagined rollout each, in this order: world_model.pt with noise seeds 1234, 1235, ... (ns of them);
    # each extra world model (seed 1234); world_model.pt with each --denoising-steps, ns noise seeds each.
    # All but the last group use the scoring sampler; 05 and 06 use seed 1234.
    ns, nw = args.noise_seeds, len(args.world_models)
    rules = [(f"k={k}", k, [0], 1) for k in args.persist]  # (name, k, rollouts, classifiers that must fire)
    if args.members:
        rules += [(f"all {len(clfs)} fire, k={k}", k, [0], len(clfs)) for k in args.persist]
    if ns > 1:
        rules += [(f"all {ns} world-model samples succeed, k={k}", k, list(range(ns)), 1) for k in args.persist]
    if args.world_models:
        rules += [(f"all {1 + nw} world models succeed, k={k}", k, [0, *range(ns, ns + nw)], 1) for k in args.persist]
    for j, n in enumerate(args.denoising_steps):
        rules += [(f"{n} Euler steps, k={k}", k, [ns + nw + j * ns], 1) for k in args.persist]
    samplers = [("scoring sampler", list(range(ns)))] + [  # (name, rollouts) of the "mean of ns samples" columns
        (f"{n} Euler steps", list(range(ns + nw + j * ns, ns + nw + (j + 1) * ns))) for j, n in enumerate(args.denoising_steps)]
    wm = wm_mod.load_world_model(args.run_dir / "world_model.pt", device, task=args.task,
                                precision=args.precision).scoring()  # as 06
    for path in args.world_models:
        if not path.exists():
            common.fail(f"--world-models: {path} does not exist; train one with 02_world_model.py --run-dir DIR")
    rollouts = [(wm, n) for n in range(1234, 1234 + ns)] + [
        (wm_mod.load_world_model(path, device, task=args.task, precision=args.precision).scoring(), 1234) for path in args.world_models]
    for n in args.denoising_steps:
        if n < 1:
            common.fail(f"--denoising-steps: {n} is not a number of sampler steps; give 1 or more")
        rollouts += [(wm.with_sampler(n), s) for s in range(1234, 1234 + ns)]
    env_cfg = bc_mod.load_policy(policies[0]).cfg.env
    seeds = common.eval_seeds(args.episodes, args.seed_offset)
    starts = torch.from_numpy(common.real_start_frames(args.task, env_cfg, seeds))
    horizon = int(env_cfg["max_steps"])
    lines = [f"{args.task}: {args.episodes} paired starts (eval seeds from offset {args.seed_offset}), threshold "
             f"{clf.cfg.threshold:.2f}; imagined success when the classifier fires on k consecutive frames", "",
             "| policy | real | " + " | ".join(f"imagined, {r[0]} (gap; per-start agreement)" for r in rules)
             + "".join(f" | {name}: mean of {ns} samples, k=1 (gap; min-max)" for name, _ in samplers if ns > 1) + " |",
             "| --- | --- |" + " --- |" * (len(rules) + len(samplers) * (ns > 1))]
    results = {}
    for p in policies:
        name = eval_mod.label(p, task_dir)
        real = common.evaluate_real(bc_mod.load_policy, p, args.task, env_cfg, seeds, args.workers, desc=f"real {name}")
        r_ok = np.array([s is not None for s in real["steps_to_success"]])
        fires = []  # per rollout: (horizon, classifiers, episodes)
        for model, noise_seed in tqdm(rollouts, desc=f"imagined {name}", unit="rollout", leave=False):
            rec = Fires(clfs)
            ppo_mod.imagined_success(bc_mod.load_policy(p).to(device), model, rec, starts, args.episodes, horizon,
                                     noise_seed=noise_seed)
            fires.append(torch.stack(rec.fires).numpy())
        row = {"real": int(r_ok.sum()), "real_per_start": r_ok.tolist()}
        cells = []
        for rule, k, which, m in rules:
            i_ok = rule_success(fires, k, which, m)
            row[rule] = {"imagined": int(i_ok.sum()), "agreement": float((i_ok == r_ok).mean())}
            cells.append(f"{int(i_ok.sum())} ({(i_ok.sum() - r_ok.sum()) * 100 / args.episodes:+.0f}; "
                         f"{(i_ok == r_ok).mean():.0%})")
        for sampler, which in samplers if ns > 1 else []:  # each sample alone, as 06 reads its one (seed 1234 first)
            ok = np.array([rule_success(fires, 1, [r], 1) for r in which])  # (ns, episodes)
            per_sample, mean = ok.sum(1).tolist(), float(ok.sum(1).mean())
            row[f"{sampler}: samples"] = {"imagined": per_sample, "mean": mean, "per_start": ok.mean(0).tolist()}
            cells.append(f"{mean:.1f} ({(mean - r_ok.sum()) * 100 / args.episodes:+.1f}; "
                         f"{min(per_sample)}-{max(per_sample)})")
        results[name] = row
        lines.append(f"| {name} | {int(r_ok.sum())}/{args.episodes} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        common.atomic_write(args.out.with_suffix(".md"), lambda f: f.write(text + "\n"), binary=False)
        common.atomic_write(args.out.with_suffix(".json"), lambda f: f.write(json.dumps(results, indent=1)), binary=False)
    return results


if __name__ == "__main__":
    common.run_main(main, Args)
