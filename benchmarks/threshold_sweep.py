"""How the reward classifier's threshold moves imagined success, for one policy.

A policy's imagined trajectory does not depend on the threshold (the policy acts on frames; the
threshold only decides where an episode would end), so the policy is rolled out once for the whole
horizon from the same start frames as `06_eval.py`'s imagined episodes (the first frames of its
seeded real evaluation episodes; `--starts heldout` for the held-out dataset episodes' first frames,
which stage 5's stopping rule uses), the classifier's probability is kept for every imagined frame,
and each threshold's first success is read off afterwards. Next to it, the classifier's precision,
recall and F1 on the held-out real frames at the same threshold (labels as the checkpoint was
trained with), and the policy's real success from `06_eval.py` or `04_bc.py` if on disk.

    python benchmarks/threshold_sweep.py --task button-press --data-dir data/cpu --run-dir runs/gpu
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch

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
    data_dir: Path = Path("data/cpu")
    """stage-1 dataset (held-out start frames and frames)"""
    run_dir: Path = Path("runs/gpu")
    """holds world_model.pt and <task>/reward.pt"""
    policy: Path | None = None
    """policy checkpoint (default <run-dir>/<task>/bc.pt)"""
    episodes: int = 100
    """imagined episodes"""
    starts: str = "eval"
    """`eval`: the first frames of 06_eval.py's seeded real episodes (seed offset 0), one per episode,
    as 06 does; `heldout`: the held-out dataset episodes' first frames, cycled"""
    denoising_steps: int = 0
    """sampler steps per imagined frame (0: the world model's scoring sampler, as 06 uses)"""
    sampler: Literal["", "euler", "heun"] = ""
    """Euler or Heun (empty: the world model's scoring sampler's, Euler)"""
    thresholds: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
    """classifier thresholds to score"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""


class Recorder:
    """Stands in for the classifier inside 05's imagined rollout: keeps sigma(R_psi(x)) of every
    imagined frame, (steps, N), and never ends an episode."""

    def __init__(self, clf):
        self.clf, self.p = clf, []

    def to(self, device):
        self.clf.to(device)
        return self

    def success(self, x: torch.Tensor) -> torch.Tensor:
        self.p.append(torch.sigmoid(self.clf(x)).cpu())
        return torch.zeros(len(x), dtype=torch.bool)


def main(args: Args) -> str:
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    policy = args.policy or task_dir / "bc.pt"
    pi = bc_mod.load_policy(policy).to(device).eval()
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device).eval()
    wm = wm_mod.load_world_model(args.run_dir / "world_model.pt", device, task=args.task).scoring()  # as 06
    wm = wm.with_sampler(args.denoising_steps or wm.num_steps, args.sampler or wm.sampler)
    if args.starts == "eval":
        starts = torch.from_numpy(common.real_start_frames(args.task, pi.cfg.env, common.eval_seeds(args.episodes)))
    elif args.starts == "heldout":
        starts = ppo_mod.start_frames(args.data_dir, args.task, "heldout")
    else:
        common.fail(f"--starts must be eval or heldout, not '{args.starts}'")
    horizon = int(pi.cfg.env["max_steps"])
    rec = Recorder(clf)
    ppo_mod.imagined_success(pi, wm, rec, starts, args.episodes, horizon)
    p_im = torch.stack(rec.p).numpy()  # (horizon, episodes)
    heldout = [common.load_episode(p) for p in common.list_episodes(args.data_dir, [args.task], split="heldout")]
    labels = clf.cfg.labels
    keep = [reward_mod.scored_mask(e["success"], labels) for e in heldout]  # all frames unless `agree`
    y = np.concatenate([reward_mod.success_labels(e["success"], labels)[k] for e, k in zip(heldout, keep)])
    p_re = np.concatenate([reward_mod.predict(clf, e["frames"][k], device) for e, k in zip(heldout, keep)])
    real = None  # the policy's real success, from 06's results (keyed as 06 labels it) or 04's own
    if (task_dir / "eval" / "results.json").exists():
        d = json.loads((task_dir / "eval" / "results.json").read_text())
        key = eval_mod.label(Path(policy).resolve(), task_dir.resolve())
        real = d["policies"].get(key, {}).get("real")
    if real is None and Path(policy) == task_dir / "bc.pt" and (task_dir / "bc_eval.json").exists():
        real = json.loads((task_dir / "bc_eval.json").read_text())["real"]
    out = [f"{args.task}, {policy} in {args.run_dir / 'world_model.pt'} ({wm.num_steps} {wm.sampler} steps), "
           f"{args.episodes} imagined episodes from {len(starts)} {args.starts} starts; real success: "
           + (f"{real['successes']}/{real['episodes']} = {real['success_rate']:.0%}" if real else "not on disk")
           + f"; stored threshold {clf.cfg.threshold:.2f} ({labels} labels)", "",
           "| threshold | imagined success | gap to real (points) | agreement with real, per start | "
           "held-out precision | recall | F1 |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    # Per start: 06's real episode i began at the frame imagined episode i began at (--starts eval).
    r_ok = None
    if real and args.starts == "eval" and len(real.get("steps_to_success", [])) >= args.episodes:
        r_ok = np.array([s is not None for s in real["steps_to_success"][:args.episodes]])
    for th in args.thresholds:
        i_ok = (p_im > th).any(0)
        k = int(i_ok.sum())
        m = reward_mod.binary_metrics(p_re, y, th)
        gap = f"{(k / args.episodes - real['success_rate']) * 100:+.0f}" if real else "-"
        agree = f"{(i_ok == r_ok).mean():.0%}" if r_ok is not None else "-"
        out.append(f"| {th:.2f} | {k}/{args.episodes} = {k / args.episodes:.0%} | {gap} | {agree} | "
                   f"{m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    common.run_main(main, Args)
