"""Stage 2 under `torchrun`: two gloo processes on the CPU train one world model with DDP, and resume."""

import json
import os
import subprocess
import sys

import torch

import common
from conftest import TINY

TINY_WM = ["--tasks", TINY, "--history", "2", "--channels", "8", "16", "--cond-dim", "32", "--eval-horizon", "4",
           "--batch-size", "16", "--ckpt-every", "20", "--device", "cpu", "--lr", "1e-3"]


def torchrun(args: list[str], nproc: int = 2) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(common.REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(common.REPO / "02_world_model.py"), *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=common.REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_two_processes_train_one_model_and_resume(tiny_data, tmp_path):
    r = tmp_path / "runs"
    args = TINY_WM + ["--data-dir", str(tiny_data), "--run-dir", str(r)]
    out = torchrun(args + ["--steps", "60"])
    assert "2 processes" in out and "resuming" not in out
    rep = json.loads((r / "world_model_eval" / "world_model_fidelity.json").read_text())
    # DDP averages the gradients, so both processes hold the same weights (and EMA) after every step
    assert rep["processes"] == 2 and rep["max_param_difference_across_processes"] == 0.0
    assert rep["step"] == 60 and rep["train_loss_last"] < 0.7 * rep["train_loss_first"], rep
    ck = common.load_checkpoint(r / "world_model.pt", "world_model")
    assert ck["step"] == 60
    # resume under torchrun: both processes load step 60 and train on to 80 in step
    out = torchrun(args + ["--steps", "80"])
    assert "resuming from" in out and "at step 60" in out
    rep = json.loads((r / "world_model_eval" / "world_model_fidelity.json").read_text())
    assert rep["step"] == 80 and rep["max_param_difference_across_processes"] == 0.0
    ck2 = common.load_checkpoint(r / "world_model.pt", "world_model")
    assert ck2["step"] == 80 and any(not torch.equal(ck["ema"][k], ck2["ema"][k]) for k in ck["ema"])
