"""The six-task tables, one row per task, from the files the stages leave behind.

Stages 3 and 4 (`benchmarks/six_tasks.sh`): reward-classifier metrics on held-out episodes and the BC
policy's real success. With `--refine-run-dir` (`benchmarks/gpu_six.sh`, then `06_eval.py` per task),
a second table: BC against the refined policy, in imagination (05's held-out starts) and in the real
simulator (06's seeded episodes, the same seeds for both). Each folder flag takes one folder for all
tasks (one world model serves them) or one per task, in the order of --tasks (a world model per task,
as `benchmarks/six_cpu.sh` trains them).

    python benchmarks/six_table.py --run-dir runs/six --tasks six
    python benchmarks/six_table.py --run-dir runs/six --tasks six --refine-run-dir runs/gpu_six
    python benchmarks/six_table.py --tasks soccer door-lock --run-dir runs/cpu-soccer runs/cpu-door-lock \
        --refine-run-dir runs/cpu-soccer runs/cpu-door-lock --out runs/six_cpu.md
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

PAPER_BC, PAPER_REFINED = 0.515, 0.675  # average real success over the six tasks, imitation -> World4RL (the paper)


@dataclasses.dataclass
class Args:
    run_dir: list[Path] = dataclasses.field(default_factory=lambda: [Path("runs/six")])
    """where 03_reward.py and 04_bc.py wrote <task>/reward_metrics.json and <task>/bc_eval.json: one folder,
    or one per task"""
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["six"])
    """tasks, one row each (suites allowed)"""
    f1_target: float = 0.95
    """the classifier's F1 target; rows below it are marked"""
    refine_run_dir: list[Path] | None = None
    """where 05_ppo_refine.py and 06_eval.py wrote <task>/ppo_seed*/log.json and <task>/eval/results.json:
    one folder, or one per task"""
    out: Path | None = None
    """where the tables go (markdown); default <first --run-dir>/six_tasks.md"""


def per_task(dirs: list[Path], tasks: list[str], flag: str) -> list[Path]:
    """One folder for every task, or one per task in order."""
    if len(dirs) == 1:
        return dirs * len(tasks)
    if len(dirs) != len(tasks):
        common.fail(f"{flag} got {len(dirs)} folders for {len(tasks)} tasks ({' '.join(tasks)}): "
                    f"give one folder, or one per task in the order of --tasks")
    return dirs


def row(run_dir: Path, task: str, f1_target: float) -> str:
    d = run_dir / common.task_slug(task)
    cells = [task]
    if (d / "reward_metrics.json").exists():
        m = json.loads((d / "reward_metrics.json").read_text())
        h = m["heldout"]
        mark = "" if h["f1"] >= f1_target else " (below target)"
        cells += [f"{h['frames']} ({h['positives']})", f"{h['precision']:.3f}", f"{h['recall']:.3f}",
                  f"{h['f1']:.3f}{mark}", f"{m['threshold']:.2f}"]
    else:
        cells += ["not run"] + [""] * 4
    if (d / "bc_eval.json").exists():
        b = json.loads((d / "bc_eval.json").read_text())
        r = b["real"]
        lo, hi = r["ci95"]
        cells += [str(b["num_demos"]), f"{r['successes']}/{r['episodes']} = {r['success_rate']:.0%}",
                  f"{lo:.1%}-{hi:.1%}"]
    else:
        cells += ["not run", "", ""]
    return "| " + " | ".join(cells) + " |"


def refine_rows(run_dir: Path, task: str) -> list[str]:
    """One row per refined policy of `task`: imagined success (BC -> kept iteration) and real success."""
    d = run_dir / common.task_slug(task)
    res = d / "eval" / "results.json"
    if not res.exists():
        return [f"| {task} | not evaluated |" + " |" * 5]
    r = json.loads(res.read_text())
    bc = r["policies"]["bc"]["real"]
    rows = []
    for name, c in r.get("vs_bc", {}).items():
        log = d / Path(name).parent / "log.json"
        imag = "-"
        if log.exists():
            lg = json.loads(log.read_text())
            kept = f"it. {lg['best']['iteration']}" if lg["best"]["iteration"] else "kept BC"
            v = lg.get("imagination_validity")
            if v and v["J"] is not None and v["J"] < v["min_validity"]:  # 05: imagination cannot tell BC's outcomes
                kept = f"kept BC: J {v['J']:.2f} < {v['min_validity']}, PPO not run"
            elif lg.get("no_room_above_bc"):  # 05: BC's imagined success leaves no room for the stopping rule
                kept = "kept BC: no room above BC in imagination, PPO not run"
            imag = f"{lg['bc_imagined']['success_rate']:.0%} -> {lg['best']['success_rate']:.0%} ({kept})"
        p = r["policies"][name]["real"]
        verdict = ("better" if c["improved"] else "worse" if c["worse"] else "no difference") + \
            (", intervals overlap" if c["intervals_overlap"] else ", intervals disjoint")
        rows.append(f"| {task} | {name} | {imag} | {bc['successes']}/{bc['episodes']} "
                    f"({bc['ci95'][0]:.0%}-{bc['ci95'][1]:.0%}) | {p['successes']}/{p['episodes']} "
                    f"({p['ci95'][0]:.0%}-{p['ci95'][1]:.0%}) | {c['gain'] * 100:+.0f} | {verdict} |")
    return rows


def average_row(dirs: list[Path], tasks: list[str]) -> str:
    """BC's and the refined policies' real success averaged over the evaluated tasks (a task's refined
    success: the mean over its seeds), beside the paper's six-task average."""
    bc, refined = [], []
    for d, t in zip(dirs, tasks):
        res = d / common.task_slug(t) / "eval" / "results.json"
        if res.exists():
            r = json.loads(res.read_text())
            seeds = [r["policies"][name]["real"]["success_rate"] for name in r.get("vs_bc", {})]
            if seeds:
                bc.append(r["policies"]["bc"]["real"]["success_rate"])
                refined.append(sum(seeds) / len(seeds))
    if not bc:
        return ""
    b, f = sum(bc) / len(bc), sum(refined) / len(refined)
    return (f"| average over {len(bc)} of {len(tasks)} tasks | mean over seeds | | {b:.1%} | {f:.1%} "
            f"| {(f - b) * 100:+.1f} | the paper, six tasks: {PAPER_BC:.1%} -> {PAPER_REFINED:.1%} "
            f"({(PAPER_REFINED - PAPER_BC) * 100:+.1f}) |")


def main(args: Args) -> str:
    tasks = common.expand_tasks(args.tasks)
    run_dirs = per_task(args.run_dir, tasks, "--run-dir")
    head = ("| task | held-out frames (successes) | precision | recall | F1 | threshold | BC demos "
            "| BC real success | 95% CI |\n" + "| --- " * 9 + "|\n")
    table = head + "\n".join(row(d, t, args.f1_target) for d, t in zip(run_dirs, tasks)) + "\n"
    if args.refine_run_dir is not None:
        refine_dirs = per_task(args.refine_run_dir, tasks, "--refine-run-dir")
        table += ("\n| task | refined policy | imagined success, BC -> kept | BC real (95% CI) "
                  "| refined real (95% CI) | gain (points) | verdict |\n" + "| --- " * 7 + "|\n")
        table += "\n".join(r for d, t in zip(refine_dirs, tasks) for r in refine_rows(d, t)) + "\n"
        avg = average_row(refine_dirs, tasks)
        table += avg + "\n" if avg else ""
    out = args.out or run_dirs[0] / "six_tasks.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    common.atomic_write(out, lambda f: f.write(table), binary=False)
    print(table)
    return table


if __name__ == "__main__":
    common.run_main(main, Args)
