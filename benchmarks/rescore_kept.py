"""Read the stopping rule's choice again: fresh world-model noise, or another world model.

Stage 5 keeps the best of several held-out imagined scores (BC's included) and a refined policy only if
it beats BC's by `--min-improvement`. Two ways its choice could be checked without a real step:
- **fresh noise** (`--noise-seed`, `--episodes`): the highest of several noisy readings reads high (the
  optimizer's curse, Smith & Winkler 2006), and a reading with sampling noise the choice never saw does
  not; if the kept policy's margin over BC shrinks below the bar there, it was chosen on noise;
- **another world model** (`--world-models`, e.g. 02 with `--seed 1` into another run dir): a policy
  that exploits errors of the world model it was refined in need not succeed in a second one trained
  on the same data (model disagreement as uncertainty: Kidambi et al. 2020, Yu et al. 2020).
Each policy is read as the stopping rule reads it: mean action, `--episodes` episodes from the task's
held-out start frames (cycled), the scoring sampler, one noise seed for every policy. The real outcome
to compare with is 06's.

    python benchmarks/rescore_kept.py --task lever-pull --run-dir R --noise-seed 4321 --episodes 256
    python benchmarks/rescore_kept.py --task lever-pull --run-dir R --world-models R2/world_model.pt
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

wm_mod = common.import_stage("02_world_model")
reward_mod = common.import_stage("03_reward")
bc_mod = common.import_stage("04_bc")
ppo = common.import_stage("05_ppo_refine")


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task"""
    data_dir: Path = Path("data/cpu")
    """stage 1's dataset (the held-out start frames)"""
    run_dir: Path = Path("runs/cpu")
    """holds world_model.pt, <task>/reward.pt, <task>/bc.pt and <task>/ppo_seed*/refined.pt"""
    policies: list[Path] = dataclasses.field(default_factory=list)
    """policy checkpoints, the first the baseline the others are measured against (default: <task>/bc.pt,
    then every <task>/ppo_seed*/refined.pt)"""
    world_models: list[Path] = dataclasses.field(default_factory=list)
    """world models to read in (default: <run-dir>/world_model.pt, the one the policies were refined in)"""
    episodes: int = 128
    """imagined episodes per policy and world model (05's --eval-episodes: 128)"""
    noise_seed: int = 1234
    """world-model sampling noise (05's stopping rule: 1234)"""
    out: Path | None = None
    """also write the table and the numbers here (.md and .json)"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""


def main(args: Args) -> dict:
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    policies = args.policies or [task_dir / "bc.pt", *sorted(task_dir.glob("ppo_seed*/refined.pt"))]
    world_models = args.world_models or [args.run_dir / "world_model.pt"]
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device)
    horizon = int(common.read_meta(args.data_dir)["max_steps"])
    starts = ppo.start_frames(args.data_dir, args.task, "heldout")
    names = [str(p.relative_to(task_dir)) if p.is_relative_to(task_dir) else str(p) for p in policies]
    rates: dict[str, dict[str, float]] = {}  # world model -> policy -> imagined success
    for w in world_models:
        wm = wm_mod.load_world_model(w, device, task=args.task).scoring()
        for name, p in zip(names, policies):
            r = ppo.imagined_success(bc_mod.load_policy(p).to(device), wm, clf, starts, args.episodes, horizon,
                                     noise_seed=args.noise_seed)
            rates.setdefault(str(w), {})[name] = r["success_rate"]
            print(f"{w}: {name} {r['success_rate']:.1%}", flush=True)
    lines = [f"{args.task}: held-out imagined success, mean action, {args.episodes} episodes from "
             f"{len(starts)} held-out starts, noise seed {args.noise_seed}, scoring sampler", "",
             "| policy | " + " | ".join(f"{w} | minus BC" for w in rates) + " |",
             "| --- |" + " --- | --- |" * len(rates)]
    for i, name in enumerate(names):
        cells = [f"{r[name]:.1%} | " + (f"{(r[name] - r[names[0]]) * 100:+.1f}" if i else "-") for r in rates.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        common.atomic_write(args.out.with_suffix(".md"), lambda f: f.write(text + "\n"), binary=False)
        common.atomic_write(args.out.with_suffix(".json"), lambda f: f.write(json.dumps(
            {"args": {k: str(v) for k, v in dataclasses.asdict(args).items()}, "imagined": rates}, indent=1)),
            binary=False)
    return rates


if __name__ == "__main__":
    common.run_main(main, Args)
