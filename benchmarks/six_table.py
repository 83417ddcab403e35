"""The six-task table of stages 3 and 4: reward-classifier metrics on held-out episodes and the BC
policy's real success, one row per task, from the files `benchmarks/six_tasks.sh` leaves behind.

    python benchmarks/six_table.py --run-dir runs/six --tasks six
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
    """the classifier's F1 target (issue 4); rows below it are marked"""


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


def main(args: Args) -> str:
    head = ("| task | held-out frames (successes) | precision | recall | F1 | threshold | BC demos "
            "| BC real success | 95% CI |\n" + "| --- " * 9 + "|\n")
    table = head + "\n".join(row(args.run_dir, t, args.f1_target) for t in common.expand_tasks(args.tasks)) + "\n"
    common.atomic_write(args.run_dir / "six_tasks.md", lambda f: f.write(table), binary=False)
    print(table)
    return table


if __name__ == "__main__":
    common.run_main(main, Args)
