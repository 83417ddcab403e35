"""Does imagination know where a policy succeeds? Youden's J on 06's paired starts, read from its results.

Stage 5 refines only where imagination tells BC's real successes from its real failures start by start
(`--min-validity`, on stage 4's 50 evaluation episodes: the first 50 of 06's 100 seeded starts). This reads
the same statistic off `06_eval.py`'s `results.json` files, which hold each policy's real and imagined
outcome per start, so the bar can be set against runs whose refinement outcome is known: for each policy,
sensitivity (imagined success among real successes), false-positive rate (imagined success among real
failures), J = the difference (`05_ppo_refine.imagination_validity`), and a refined policy's real gain over
BC on the same starts. No model is loaded and nothing is stepped.

    python benchmarks/validity_table.py --results benchmarks/results/*/*results.json --starts 50
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ppo = common.import_stage("05_ppo_refine")


@dataclasses.dataclass
class Args:
    results: list[Path]
    """06_eval.py results.json files (each policy's per-start real and imagined outcomes)"""
    starts: int = 50
    """read the first this many paired starts (50: stage 4's evaluation episodes; 0: all)"""
    out: Path | None = None
    """also write the table here (.md)"""


def rows(results: dict, starts: int) -> list[dict]:
    """One row per policy of one 06 results.json with per-start outcomes: its validity and, for a
    refined policy, its real gain over BC on the same starts."""
    out, bc = [], None
    for name, p in results["policies"].items():
        real, imag = p["real"]["steps_to_success"], p["imagined"]["steps_to_success"]
        n = min(len(real), len(imag), starts or len(real))  # imagined episode i starts where real episode i does
        r_ok, i_ok = [s is not None for s in real[:n]], [s is not None for s in imag[:n]]
        row = {"policy": name, **ppo.imagination_validity(r_ok, i_ok), "real_rate": sum(r_ok) / n}
        if name == "bc":
            bc = row["real_rate"]
        elif bc is not None:
            row["real_gain"] = row["real_rate"] - bc
        out.append(row)
    return out


def main(args: Args) -> list[dict]:
    table = ["| results | policy | starts | real successes | imagined among them | real failures | imagined among "
             "them | J | real gain over BC (points) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    found = []
    for path in args.results:
        if not path.exists():
            common.fail(f"{path} does not exist; give 06_eval.py results.json files")
        res = json.loads(path.read_text())
        pols = res.get("policies", {}).values()
        if not pols or not all("steps_to_success" in p.get("imagined", {}) for p in pols):
            common.fail(f"{path} holds no per-start imagined outcomes; give a results.json of 06_eval.py")
        if any(p.get("paired", {}).get("episodes") != p["real"]["episodes"] for p in pols):
            print(f"{path}: left out, its imagined episodes are not the real episodes' twins (06 before they were)")
            continue
        for w in rows(res, args.starts):
            found.append({"results": str(path), **w})
            neg = w["starts"] - w["real_successes"]
            J = "-" if w["J"] is None else f"{w['J']:.2f}"
            gain = f"{w['real_gain'] * 100:+.0f}" if "real_gain" in w else "-"
            table.append(f"| {path.parent.name}/{path.name} | {w['policy']} | {w['starts']} | {w['real_successes']} | "
                         f"{w['true_positives']} | {neg} | {w['false_positives']} | {J} | {gain} |")
    text = "\n".join(table)
    print(text)
    if args.out:
        common.atomic_write(args.out, lambda f: f.write(text + "\n"), binary=False)
    return found


if __name__ == "__main__":
    common.run_main(main, Args)
