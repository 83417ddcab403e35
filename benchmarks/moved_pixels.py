"""Where does a world model's error sit: on the pixels that move, or on those that stay?

Whole-frame PSNR averages over a 48x48 frame of which a few percent change in a step, so a small
object (soccer's ball: 2-3 pixels) barely moves it. This splits 02's open-loop fidelity (held-out
episodes, their real actions replayed from x_{t0} for H steps, the same fixed sampling noise) by a
mask read off the real frames: the pixels where the real frame x_{t0+h} differs from the start frame
x_{t0} by more than `threshold` (of [-1, 1]) in a channel ("moved": copying the last frame is wrong
there), and the rest ("static": copying is right there, so any error is the model's own). Each
set's squared error is pooled over its pixels in all episodes and steps before the PSNR is taken.
Docs: docs/RESULTS.md, "Six tasks at the CPU defaults".

    python benchmarks/moved_pixels.py --tasks soccer --run-dirs runs/cpu-soccer
        # one row per world model (<run dir>/world_model.pt) on the task's held-out episodes; ~10 s each on 2 cores
    python benchmarks/moved_pixels.py --tasks button-press --run-dirs runs/cpu
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

wm_mod = common.import_stage("02_world_model")


@dataclasses.dataclass
class Args:
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["soccer"])
    """tasks whose held-out episodes are replayed (the world models must know them)"""
    data_dir: Path = Path("data/cpu")
    """dataset written by 01_collect.py"""
    run_dirs: list[Path] = dataclasses.field(default_factory=lambda: [Path("runs/cpu-soccer")])
    """folders holding world_model.pt, one row each"""
    horizon: int = 16
    """H, open-loop steps (02's fidelity report uses 16)"""
    t0: int = 0
    """the step the replay starts from"""
    threshold: float = 0.1
    """a pixel has moved where a channel differs from the start frame by more than this"""
    out: Path | None = None
    """where the table goes (markdown); default: printed only"""


def split_psnr(imagined: torch.Tensor, real: torch.Tensor, start: torch.Tensor, threshold: float) -> dict:
    """imagined, real (N, H, 3, h, w) and start (N, 3, h, w), all in [-1, 1]: the share of moved pixels,
    and PSNR (dB, as 02's `psnr`) of the model over the moved and the static pixels and of copy-last
    over the moved ones (copy-last is exact on the static ones, up to `threshold`)."""
    moved = (real - start[:, None]).abs().amax(2) > threshold  # (N, H, h, w)
    err = ((imagined - real) / 2).pow(2).mean(2)  # (N, H, h, w) per-pixel squared error, channels averaged
    err_copy = ((start[:, None] - real) / 2).pow(2).mean(2)
    db = lambda e: float(-10 * e.mean().clamp(min=1e-10).log10()) if e.numel() else float("nan")  # noqa: E731
    return {"moved_share": float(moved.float().mean()), "psnr_model": db(err), "psnr_moved_model": db(err[moved]),
            "psnr_moved_copy_last": db(err_copy[moved]), "psnr_static_model": db(err[~moved])}


def main(args: Args) -> str:
    tasks = common.expand_tasks(args.tasks)
    heldout = [common.load_episode(p) for p in common.list_episodes(args.data_dir, tasks, split="heldout")]
    heldout = [e for e in heldout if len(e["actions"]) >= args.t0 + args.horizon]
    if not heldout:
        common.fail(f"no held-out episode of {' '.join(tasks)} in {args.data_dir} lasts {args.t0 + args.horizon} "
                    f"steps; run 01_collect.py for these tasks, or lower --horizon")
    start = common.to_float(torch.stack([torch.from_numpy(e["frames"][args.t0]) for e in heldout]))
    lines = [f"{len(heldout)} held-out episodes of {' '.join(tasks)}, H = {args.horizon} from t0 = {args.t0}, "
             f"moved: differs from x_t0 by more than {args.threshold}", "",
             "| world model | moved pixels | PSNR, whole frame (pooled) | PSNR, moved pixels | copy-last, moved pixels "
             "| PSNR, static pixels |", "| --- " * 6 + "|"]
    print("\n".join(lines))
    for run_dir in args.run_dirs:
        path = run_dir / "world_model.pt"
        if not path.exists():
            common.fail(f"no world model at {path}; train one with 02_world_model.py --run-dir {run_dir}")
        wm = wm_mod.load_world_model(path, torch.device("cpu"), task=tasks[0])
        imagined, real = wm_mod.open_loop(wm, heldout, args.t0, args.horizon)
        s = split_psnr(imagined, real, start, args.threshold)
        lines.append(f"| {run_dir} | {s['moved_share']:.1%} | {s['psnr_model']:.2f} dB | {s['psnr_moved_model']:.2f} dB "
                     f"| {s['psnr_moved_copy_last']:.2f} dB | {s['psnr_static_model']:.2f} dB |")
        print(lines[-1])
    text = "\n".join(lines) + "\n"
    if args.out:
        common.atomic_write(args.out, lambda f: f.write(text), binary=False)
    return text


if __name__ == "__main__":
    common.run_main(main, Args)
