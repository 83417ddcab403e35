"""The shell scripts: every one parses, and bad settings stop them with one line before any stage runs."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO

SCRIPTS = sorted(p.relative_to(REPO) for p in [*REPO.glob("*.sh"), *REPO.glob("benchmarks/*.sh"), REPO / ".ci" / "run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_script_parses(script):
    r = subprocess.run(["bash", "-n", str(script)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def run_bash(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env})


@pytest.mark.parametrize("env, says", [
    ({"PROFILE": "laptop"}, "PROFILE must be cpu, class or gpu"),
    ({"ROUNDS": "0"}, "ROUNDS must be a number from 1 to 9"),
    ({"WORKERS": "all"}, "WORKERS must be a number from 1 to 99"),
    ({"PRECISION": "fp16"}, "PRECISION must be auto, fp32 or bf16"),
])
def test_run_all_rejects_bad_settings(env, says):
    r = run_bash("run_all.sh", **env)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "+ python" not in r.stdout  # nothing ran


def test_next_round_rejects_missing_inputs(tmp_path):
    r = run_bash("benchmarks/next_round.sh")
    assert r.returncode != 0 and "set FROM_DATA" in r.stderr
    r = run_bash("benchmarks/next_round.sh", FROM_DATA=str(tmp_path / "nope"), FROM_RUNS=str(tmp_path), TO="x")
    assert r.returncode == 2 and "no episodes in" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "d" / "button-press").mkdir(parents=True)
    r = run_bash("benchmarks/next_round.sh", FROM_DATA=str(tmp_path / "d"), FROM_RUNS=str(tmp_path), TO="x")
    assert r.returncode == 2 and "ppo_seed0/refined.pt" in r.stderr
    for i in (0, 1, 3):  # policy_0002 missing, as in a balanced copy: new rollouts would land in the hole
        (tmp_path / "d" / "button-press" / f"policy_{i:04d}.npz").touch()
    r = run_bash("benchmarks/next_round.sh", FROM_DATA=str(tmp_path / "d"), FROM_RUNS=str(tmp_path), TO="x")
    assert r.returncode == 2 and "gaps in its policy_*.npz" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "d" / "button-press" / "policy_0002.npz").touch()  # no gap: on to the next check
    r = run_bash("benchmarks/next_round.sh", FROM_DATA=str(tmp_path / "d"), FROM_RUNS=str(tmp_path), TO="x")
    assert r.returncode == 2 and "ppo_seed0/refined.pt" in r.stderr
    assert not (REPO / "data" / "x").exists() and not (REPO / "runs" / "x").exists()  # nothing written


def run_all_calls(tmp_path, **env: str) -> list[str]:
    """The stage commands `run_all.sh` runs with `env`, recorded by a stand-in `python`."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "python").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    (shim / "python").chmod(0o755)
    (tmp_path / "calls").unlink(missing_ok=True)
    r = run_bash("run_all.sh", **env, PATH=f"{shim}:{os.environ['PATH']}")
    assert r.returncode == 0, r.stderr
    return (tmp_path / "calls").read_text().splitlines()


def test_run_all_gives_another_task_its_own_run_folder(tmp_path):
    """The world model sits beside the tasks' folders, so a second task in the default run folder
    would meet the first task's model."""
    task = "reach-probe"  # a name no real run uses: the stand-in writes nothing under runs/ but a log
    try:
        calls = run_all_calls(tmp_path, TASK=task)
        stages = [c.split()[0] for c in calls]
        assert stages == ["01_collect.py", "04_bc.py", "01_collect.py", "02_world_model.py", "03_reward.py",
                          "05_ppo_refine.py", "06_eval.py"], calls
        for c in calls:  # data stays shared (per-task folders); every run path is the task's own
            assert f"--tasks {task}" in c or f"--task {task}" in c, c
            if not c.startswith("01_collect.py"):
                assert f"--run-dir runs/cpu-{task}" in c, c
        assert f"--policy runs/cpu-{task}/{task}/bc.pt" in calls[2]
    finally:
        shutil.rmtree(REPO / "runs" / f"cpu-{task}", ignore_errors=True)


def test_run_all_fp32_reaches_every_stage_that_runs_a_world_model(tmp_path):
    """PRECISION=fp32 computes what a CPU without bf16 units does: 02, 03, 05 and 06 get the flag,
    in their own run folder (a bf16 world model must not be resumed as an fp32 one); 01 and 04,
    which run no world model, keep the shared data."""
    task = "reach-probe"
    try:
        calls = run_all_calls(tmp_path, TASK=task, PRECISION="fp32")
        with_flag = [c.split()[0] for c in calls if "--precision fp32" in c]
        assert with_flag == ["02_world_model.py", "03_reward.py", "05_ppo_refine.py", "06_eval.py"], calls
        assert all(f"--run-dir runs/cpu-{task}-fp32" in c for c in calls if not c.startswith("01_collect.py"))
        assert not any("--data-dir" in c for c in calls), calls  # the default data/cpu
        calls = run_all_calls(tmp_path, TASK=task)  # auto: no flag at all, the commands of the docstrings
        assert not any("--precision" in c for c in calls), calls
    finally:
        for d in (f"cpu-{task}", f"cpu-{task}-fp32"):
            shutil.rmtree(REPO / "runs" / d, ignore_errors=True)


def test_six_cpu_runs_each_task_in_its_own_folder_and_tables_them(tmp_path):
    """benchmarks/six_cpu.sh: run_all.sh once per task (a world model each, BC from 10 demonstrations),
    then one table whose folders are the ones run_all.sh wrote, in the order of the tasks."""
    tasks = ["reach-probe", "push-probe"]
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    (shim / "python").chmod(0o755)
    try:
        r = run_bash("benchmarks/six_cpu.sh", TASKS=" ".join(tasks), PRECISION="fp32",
                     PATH=f"{shim}:{os.environ['PATH']}")
        assert r.returncode == 0, r.stderr
        calls = (tmp_path / "calls").read_text().splitlines()
        bc = [c for c in calls if c.startswith("04_bc.py")]
        assert [c.split("--task ")[1].split()[0] for c in bc] == tasks
        assert all("--num-demos 10" in c and f"--run-dir runs/cpu-{t}-fp32" in c for c, t in zip(bc, tasks)), bc
        dirs = " ".join(f"runs/cpu-{t}-fp32" for t in tasks)
        assert calls[-1] == (f"benchmarks/six_table.py --tasks {' '.join(tasks)} --run-dir {dirs} "
                             f"--refine-run-dir {dirs} --out runs/six_cpu.md"), calls[-1]
    finally:
        for t in tasks:
            shutil.rmtree(REPO / "runs" / f"cpu-{t}-fp32", ignore_errors=True)
