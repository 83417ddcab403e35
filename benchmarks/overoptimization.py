"""How far PPO can push the policy before imagination stops telling the truth: stage 5 as it is,
with every candidate of its stopping rule kept and scored the way `06_eval.py` scores a policy.

The learned reward (classifier on world-model frames) is a proxy for real success. Optimising a
proxy first raises both, then only the proxy (Gao et al., *Scaling Laws for Reward Model
Overoptimization*, ICML 2023, measure this against the KL distance from the starting policy). This
script draws that curve for one PPO seed: for iteration 0 (BC) and every `--eval-every`-th
iteration, how far the mean action has moved from BC's on the held-out episodes' frames, the
stopping rule's own score (held-out imagined success), and on 06's paired starts the imagined
success, the real success, the gap and how often the classifier fires on real failures.
Refinement never sees these real episodes. Docs: docs/RESULTS.md, "How far PPO can go".

    python benchmarks/overoptimization.py --task button-press --run-dir runs/oo --seed 0
        # writes runs/oo/button-press/ppo_seed0/overoptimization.{json,md}; about PPO's time plus
        # half a minute per candidate on 2 cores. The run dir needs world_model.pt and the task's
        # bc.pt and reward.pt (copy or link them from runs/cpu); PPO resumes, scored candidates are kept.
    python benchmarks/overoptimization.py --curves runs/oo/button-press/ppo_seed*/overoptimization.json
        # no PPO: for each --max-action-shift the curves allow, the policy stage 5 would keep for
        # every seed and its gap; the limit belongs to one world model and classifier pair, so read
        # it off that pair's own curves (docs/RESULTS.md, "Another 6,400-step model")
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ppo = common.import_stage("05_ppo_refine")
bc_mod = common.import_stage("04_bc")
wm_mod = common.import_stage("02_world_model")
reward_mod = common.import_stage("03_reward")
eval_mod = common.import_stage("06_eval")


@dataclasses.dataclass
class Args(ppo.Args):
    max_action_shift: float = 0.0
    """as in 05_ppo_refine.py; here 0 (no limit) by default, so the curve goes on past stage 5's trust region"""
    real_episodes: int = 100
    """real episodes per candidate, on 06_eval.py's seeds (offset `--eval-seed` x 100,000); each has an
    imagined twin from its first frame"""
    eval_seed: int = 0
    """06_eval.py's --seed: which block of evaluation seeds"""
    workers: int = 2
    """processes for the real episodes"""
    curves: tuple[Path, ...] = ()
    """overoptimization.json files (one per PPO seed) to read limits off instead of running anything"""
    tolerance: float = 0.10
    """with --curves: the largest imagined-minus-real gap, either way, that counts as honest"""


def markdown(rows: list[dict], task: str, seed: int) -> str:
    head = (f"# {task}, PPO seed {seed}: imagination against reality along the run\n\n"
            "| iteration | mean-action shift from BC | held-out imagined (stopping rule) | 06 starts: imagined "
            "| real (95% CI) | imagined - real | classifier fires on real failures "
            "| 06 starts: imagined with PPO's sampler |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = []
    for r in rows:
        lo, hi = r["real_ci95"]
        im_train = r.get("imagined_training_sampler")  # cached rows may lack it
        lines.append(f"| {r['iteration']} | {r['mean_action_shift']:.3f} | {r['heldout_imagined']:.1%} "
                     f"| {r['imagined']:.0%} | {r['real']:.0%} ({lo:.0%}-{hi:.0%}) | {r['gap'] * 100:+.0f} "
                     f"| {r['fires']} of {r['real_failures']} | {'-' if im_train is None else f'{im_train:.0%}'} |")
    return head + "\n".join(lines) + "\n"


def kept_under(rows: list[dict], limit: float, min_improvement: float) -> dict:
    """The row of the policy stage 5 would keep with `--max-action-shift limit`, read off one curve:
    scored iterations in order, each kept if `ppo.keeps` says so, until the first beyond the limit
    (which ends refinement). rows[0] is BC (iteration 0)."""
    bc = best = rows[0]
    for r in rows[1:]:
        if limit and r["mean_action_shift"] > limit:
            break
        if ppo.keeps(r["heldout_imagined"], best["heldout_imagined"], bc["heldout_imagined"], min_improvement):
            best = r
    return best


def limit_table(curves: list[list[dict]], min_improvement: float, tolerance: float) -> tuple[list[dict], float | None]:
    """For every limit at which some curve's kept policy changes (each scored shift, and 0 = none), the
    policy kept per curve: [{"limit", "kept": [row per curve]}]; and the largest limit under which every
    kept policy's imagined success lies within `tolerance` of its real one (None if there is none)."""
    limits = sorted({r["mean_action_shift"] for rows in curves for r in rows[1:]}) + [0.0]
    table = [{"limit": L, "kept": [kept_under(rows, L, min_improvement) for rows in curves]} for L in limits]
    honest = [t["limit"] for t in table if all(abs(k["gap"]) <= tolerance + 1e-9 for k in t["kept"])]
    finite = [L for L in honest if L > 0]
    return table, (0.0 if 0.0 in honest else max(finite) if finite else None)


def summarize(args: Args) -> tuple[list[dict], float | None]:
    curves = []
    for path in args.curves:
        if not path.exists():
            common.fail(f"{path} does not exist; run this script with --seed S first (it writes ppo_seedS/overoptimization.json)")
        curves.append(json.loads(path.read_text()))
    table, best = limit_table(curves, args.min_improvement, args.tolerance)
    names = [p.parent.name if p.name == "overoptimization.json" else p.stem for p in args.curves]
    print("| --max-action-shift from | " + " | ".join(f"{n}: kept iteration, real / imagined (gap)" for n in names)
          + " |\n| --- |" + " --- |" * len(curves))
    shown = None
    for t in table:  # a row where the kept policies change; the limits up to the next row keep the same
        kept = [k["iteration"] for k in t["kept"]]
        if kept == shown and t["limit"]:
            continue
        shown = kept
        cells = [f"{k['iteration']}: {k['real']:.0%} / {k['imagined']:.0%} ({k['gap'] * 100:+.0f})" for k in t["kept"]]
        print(f"| {t['limit']:.3f} | " if t["limit"] else "| none | ", " | ".join(cells), " |", sep="")
    print("no limit among these keeps every seed within the tolerance" if best is None else
          f"the largest limit that keeps every seed within {args.tolerance:.0%}: "
          + ("none needed" if best == 0 else f"{best:.3f} (and anything up to the next row's)"))
    return table, best


def main(args: Args) -> list[dict]:
    if args.curves:
        return summarize(args)[0]
    task_dir = args.run_dir / common.task_slug(args.task)
    for need in (args.run_dir / "world_model.pt", task_dir / "bc.pt", task_dir / "reward.pt"):
        if not need.exists():
            common.fail(f"{need} is missing; copy or link it from the main run (e.g. runs/cpu) into --run-dir")
    out = task_dir / f"ppo_seed{args.seed}"
    cand_dir = out / "candidates"
    cand_dir.mkdir(parents=True, exist_ok=True)
    pi_bc = bc_mod.load_policy(task_dir / "bc.pt")
    x_held = ppo.heldout_frames(args.data_dir, args.task, pi_bc.cfg.frame_stack)  # (n, S, 3, H, W), as stage 5's

    def keep_candidate(iteration: int, pi, row: dict) -> None:
        if "imagined_heldout_success" in row:  # the stopping rule scored this iteration
            bc_mod.save_policy(cand_dir / f"it{iteration:03d}.pt", "ppo", pi, seed=args.seed, iteration=iteration,
                               imagined=row["imagined_heldout_success"])

    log = ppo.main(args, after_iteration=keep_candidate)
    heldout_score = {0: log["bc_imagined"]["success_rate"]}
    heldout_score.update({r["iteration"]: r["imagined_heldout_success"] for r in log["iterations"]
                          if "imagined_heldout_success" in r})

    device = common.pick_device(args.device)
    wm = wm_mod.load_world_model(args.run_dir / "world_model.pt", device, task=args.task)
    wm_score = wm.scoring()  # as 05's stopping rule and 06 score a policy
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device)
    seeds = common.eval_seeds(args.real_episodes, offset=args.eval_seed * 100_000)
    cache = out / "overoptimization.json"
    rows = {r["iteration"]: r for r in json.loads(cache.read_text())} if cache.exists() else {}
    candidates = {0: task_dir / "bc.pt", **{int(p.stem[2:]): p for p in sorted(cand_dir.glob("it*.pt"))}}
    for it, path in candidates.items():
        if it in rows:
            continue
        pi = bc_mod.load_policy(path)
        real = common.evaluate_real(bc_mod.load_policy, path, args.task, pi.cfg.env, seeds, args.workers,
                                    keep_frames=args.real_episodes, desc=f"real it {it}")
        frames = real.pop("frames")
        starts = torch.from_numpy(np.stack([f[0] for f in frames]))  # (n, H, W, 3): 06's paired starts
        horizon = int(pi.cfg.env["max_steps"])
        im = ppo.imagined_success(pi.to(device), wm_score, clf, starts, len(frames), horizon)
        im_train = ppo.imagined_success(pi, wm, clf, starts, len(frames), horizon)  # in the sampler PPO trains in
        paired = eval_mod.paired_gap(real, im, frames, clf)
        rows[it] = {"iteration": it, "mean_action_shift": ppo.mean_action_shift(pi.cpu(), pi_bc, x_held),
                    "heldout_imagined": heldout_score.get(it), "imagined": im["success_rate"],
                    "imagined_training_sampler": im_train["success_rate"],
                    "real": real["success_rate"], "real_ci95": real["ci95"],
                    "gap": im["success_rate"] - real["success_rate"],
                    "fires": paired["classifier_fires_on_real_failures"],
                    "real_failures": len(frames) - paired["real_successes"], "agreement": paired["agreement"]}
        ordered = [rows[k] for k in sorted(rows)]
        common.atomic_write(cache, lambda f: f.write(json.dumps(ordered, indent=1)), binary=False)
        print(f"it {it}: shift {rows[it]['mean_action_shift']:.3f}, imagined {im['success_rate']:.0%}, "
              f"real {real['success_rate']:.0%}")
    ordered = [rows[k] for k in sorted(rows)]
    md = markdown(ordered, args.task, args.seed)
    common.atomic_write(out / "overoptimization.md", lambda f: f.write(md), binary=False)
    print(md)
    return ordered


if __name__ == "__main__":
    common.run_main(main, Args)
