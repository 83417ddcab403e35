"""World-model fidelity tables from the `<name>_fidelity.json` files 02_world_model.py writes:
one summary row per file (mean 16-step open-loop PSNR / SSIM against copy-last-frame, and the
smallest margin over copy-last from step 4 on), then the per-step rows of the first file.

    python benchmarks/wm_table.py runs/gpu_six/ablation/wm_*_fidelity.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def summary_row(path: Path, t0: str = "t0=0", from_step: int = 4) -> str:
    d = json.loads(Path(path).read_text())
    r = d[t0]
    pm, pc = np.array(r["psnr_model"]), np.array(r["psnr_copy_last"])
    sm, sc = np.array(r["ssim_model"]), np.array(r["ssim_copy_last"])
    k = from_step - 1
    return (f"| {Path(path).name.removesuffix('_fidelity.json')} | {d['step']} | {d['train_seconds'] / 60:.1f} "
            f"| {r['episodes']} | {pm.mean():.2f} | {pc.mean():.2f} | {sm.mean():.3f} | {sc.mean():.3f} "
            f"| {(pm[k:] - pc[k:]).min():+.2f} | {(sm[k:] - sc[k:]).min():+.3f} |")


def main(paths: list[str]) -> str:
    if not paths:
        raise SystemExit("usage: python benchmarks/wm_table.py <fidelity.json> [...]")
    out = ("| model | steps | train min | held-out episodes | PSNR | copy-last PSNR | SSIM | copy-last SSIM "
           "| min PSNR margin, steps 4-16 | min SSIM margin, steps 4-16 |\n" + "| --- " * 10 + "|\n")
    out += "\n".join(summary_row(Path(p)) for p in paths) + "\n"
    r = json.loads(Path(paths[0]).read_text())["t0=0"]
    H = len(r["psnr_model"])
    out += f"\n| {Path(paths[0]).name.removesuffix('_fidelity.json')}, step | " + \
        " | ".join(str(i + 1) for i in range(H)) + " |\n" + "| --- " * (H + 1) + "|\n"
    for key in ("psnr_model", "psnr_copy_last", "ssim_model", "ssim_copy_last"):
        fmt = "{:.1f}" if key.startswith("psnr") else "{:.3f}"
        out += f"| {key} | " + " | ".join(fmt.format(v) for v in r[key]) + " |\n"
    print(out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
