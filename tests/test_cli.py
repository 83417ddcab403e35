"""Every stage answers --help with its documented flags."""

import subprocess
import sys

import pytest

from conftest import REPO

STAGES = ["01_collect.py", "02_world_model.py", "03_reward.py", "04_bc.py", "05_ppo_refine.py", "06_eval.py"]


@pytest.mark.parametrize("script", STAGES)
def test_help(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--seed" in r.stdout and "--data-dir" in r.stdout and "--run-dir" in r.stdout


@pytest.mark.parametrize("script", ["benchmarks/threshold_sweep.py", "benchmarks/six_table.py"])
def test_benchmark_help(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--run-dir" in r.stdout and "--tasks" in r.stdout or "--task" in r.stdout
