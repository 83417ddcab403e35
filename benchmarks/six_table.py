"""The six-task tables, one row per task, from the files the stages leave behind.

Stages 3 and 4 (`benchmarks/six_tasks.sh`): reward-classifier metrics on held-out episodes and the BC
policy's real success. With `--refine-run-dir` (`benchmarks/gpu_six.sh`, then `06_eval.py` per task),
a second table: BC against the refined policy, in imagination (05's held-out starts) and in the real
simulator (06's seeded episodes, the same seeds for both).

    python benchmarks/six_table.py --run-dir runs/six --tasks six
    python benchmarks/six_table.py --run-dir runs/six --tasks six --refine-run-dir runs/gpu_six
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


@dataclasses.dataclass
class Args:
    run_dir: Path = Path("runs/six")
    """where 03_reward.py and 04_bc.py wrote <task>/reward_metrics.json and <task>/bc_eval.json"""
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["six"])
    """tasks, one row each (suites allowed)"""
    f1_target: float = 0.95
    """the classifier's F1 target; rows below it are marked"""
    refine_run_dir: Path | None = None
    """where 05_ppo_refine.py and 06_eval.py wrote <task>/ppo_seed*/log.json and <task>/eval/results.json"""


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
        return [f"| {task} | not evaluated |" + " |" * 7]
    r = json.loads(res.read_text())
    bc = r["policies"]["bc"]["real"]
    rows = []
    for name, c in r.get("vs_bc", {}).items():
        log = d / Path(name).parent / "log.json"
        imag = "-"
        if log.exists():
            lg = json.loads(log.read_text())
            imag = (f"{lg['bc_imagined']['success_rate']:.0%} -> {lg['best']['success_rate']:.0%} "
                    f"(it. {lg['best']['iteration']})")
        p = r["policies"][name]["real"]
        verdict = ("better" if c["improved"] else "worse" if c["worse"] else "no difference") + \
            (", intervals overlap" if c["intervals_overlap"] else ", intervals disjoint")
        rows.append(f"| {task} | {name} | {imag} | {bc['successes']}/{bc['episodes']} "
                    f"({bc['ci95'][0]:.0%}-{bc['ci95'][1]:.0%}) | {p['successes']}/{p['episodes']} "
                    f"({p['ci95'][0]:.0%}-{p['ci95'][1]:.0%}) | {c['gain'] * 100:+.0f} | {verdict} |")
    return rows


def main(args: Args) -> str:
    head = ("| task | held-out frames (successes) | precision | recall | F1 | threshold | BC demos "
            "| BC real success | 95% CI |\n" + "| --- " * 9 + "|\n")
    table = head + "\n".join(row(args.run_dir, t, args.f1_target) for t in common.expand_tasks(args.tasks)) + "\n"
    if args.refine_run_dir is not None:
        table += ("\n| task | refined policy | imagined success, BC -> kept | BC real (95% CI) "
                  "| refined real (95% CI) | gain (points) | verdict |\n" + "| --- " * 7 + "|\n")
        table += "\n".join(r for t in common.expand_tasks(args.tasks)
                           for r in refine_rows(args.refine_run_dir, t)) + "\n"
    common.atomic_write(args.run_dir / "six_tasks.md", lambda f: f.write(table), binary=False)
    print(table)
    return table


if __name__ == "__main__":
    common.run_main(main, Args)
