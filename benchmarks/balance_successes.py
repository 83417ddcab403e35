"""A copy of a dataset (as links) in which the newest policy rollouts do not raise the share of
successful episodes: all their failures are kept, and of their successes only as many as keep the
whole dataset's success share at `--share` (by default the share the dataset had before them).

Why: each round of the refine -> collect -> retrain loop adds rollouts of better policies, so the
data fills with successes (button-press at the CPU defaults: 42% of episodes in round 1, 45% in
round 2, 56% in round 3), and a world model and classifier trained on it read every policy more
optimistically (docs/RESULTS.md, "A third round"). The failures of the refined policies are what
the next round needs; their successes look like the ones already there.

    python benchmarks/balance_successes.py --data-dir data/cpu-round3 --out data/cpu-round3-balanced \
        --from-index 300          # holds round 2's share: 239 of 530 episodes, 45%
    # then 02 and 03 on data/cpu-round3-balanced as on any data folder

Episodes are linked, not copied; the output folder must not exist yet.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


@dataclasses.dataclass
class Args:
    data_dir: Path
    """the dataset to draw from (01_collect.py's layout: <data_dir>/<task>/<source>_<index>.npz)"""
    out: Path
    """the new dataset folder (must not exist)"""
    task: str = "button-press"
    from_index: int = 300
    """policy rollouts with this index or above are the new ones; those below are kept whole"""
    share: float | None = None
    """success share of the whole dataset to keep; None: the share of the data before the new
    rollouts (every episode but policy rollouts from `--from-index` on), to the percent"""
    seed: int = 0
    """which successes are kept (a seeded draw)"""


def main(args: Args) -> None:
    episodes = common.list_episodes(args.data_dir, [args.task])  # fails in one line on a wrong folder or task
    src = episodes[0].parent
    if args.out.exists():
        common.fail(f"{args.out} exists: give --out a new folder")
    if args.share is not None and not 0 < args.share < 1:
        common.fail(f"--share must be between 0 and 1, not {args.share}")
    keep, new_successes = [], []
    n_success = n_old = n_old_success = 0
    for p in episodes:
        source, index = p.stem.rsplit("_", 1)
        success = bool(np.load(p)["success"].any())
        new = source == "policy" and int(index) >= args.from_index
        if new and success:
            new_successes.append(p)
            continue
        keep.append(p)
        n_success += success
        if not new:
            n_old += 1
            n_old_success += success
    share = args.share
    if share is None:  # hold the share of the data before the new rollouts
        if n_old == 0 or n_old_success in (0, n_old):
            common.fail(f"the {n_old} episodes before --from-index {args.from_index} have no success share "
                        "to hold: pass --share")
        share = round(n_old_success / n_old, 2)
    # (n_success + x) / (len(keep) + x) = share  ->  x successes of the new rollouts are kept
    x = int(round((share * len(keep) - n_success) / (1 - share)))
    x = min(max(x, 0), len(new_successes))
    rng = np.random.default_rng(args.seed)
    chosen = [new_successes[k] for k in sorted(rng.choice(len(new_successes), x, replace=False))]
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / src.name).mkdir(parents=True)
    shutil.copy(args.data_dir / "meta.json", tmp / "meta.json")
    for p in keep + chosen:
        os.symlink(p.resolve(), tmp / src.name / p.name)
    tmp.rename(args.out)
    total = len(keep) + x
    print(f"{total} episodes into {args.out}: kept {x} of {len(new_successes)} new successful rollouts; "
          f"success share {(n_success + x) / total:.1%} (held at {share:.2f})")


if __name__ == "__main__":
    common.run_main(main, Args)
