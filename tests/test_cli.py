"""Every stage answers --help with exactly its `Args` fields as flags, enum choices listed."""

import dataclasses
import os
import re
import subprocess
import sys
import typing

import pytest

from conftest import REPO, stage

STAGES = ["01_collect", "02_world_model", "03_reward", "04_bc", "05_ppo_refine", "06_eval"]


def help_flags(script: str) -> tuple[set[str], str]:
    env = {**os.environ, "COLUMNS": "200"}  # one flag per line, unwrapped
    r = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    flags = set()
    for line in r.stdout.splitlines():
        head = line.strip(" │")
        if head.startswith("--"):  # a flag line: "--name {choices}" or "--flag, --no-flag"
            flags |= set(re.findall(r"--[a-z][a-z0-9-]*", head.split("  ")[0]))
    return flags, r.stdout


def expected_flags(args_cls) -> set[str]:
    out = set()
    for f in dataclasses.fields(args_cls):
        name = "--" + f.name.replace("_", "-")
        out |= {name, "--no-" + f.name.replace("_", "-")} if f.type in (bool, "bool") else {name}
    return out


@pytest.mark.parametrize("name", STAGES)
def test_help_lists_exactly_the_args_fields(name):
    flags, text = help_flags(f"{name}.py")
    args_cls = stage(name).Args
    assert flags == expected_flags(args_cls), flags ^ expected_flags(args_cls)
    assert {"--seed", "--data-dir"} <= flags
    # enum knobs are typed Literal, so --help lists their choices
    for f in dataclasses.fields(args_cls):
        hints = typing.get_type_hints(args_cls)
        if typing.get_origin(hints[f.name]) is typing.Literal:
            choices = "{" + ",".join(typing.get_args(hints[f.name])) + "}"
            assert f"--{f.name.replace('_', '-')} {choices}" in text, (f.name, choices)


def test_enum_flags_are_checked_by_the_parser():
    r = subprocess.run([sys.executable, "02_world_model.py", "--action-encoding", "three-hot"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "three-hot" in r.stderr + r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize("script,flags", [
    ("benchmarks/threshold_sweep.py", {"--run-dir", "--task", "--thresholds", "--sampler"}),
    ("benchmarks/six_table.py", {"--run-dir", "--tasks"}),
    ("benchmarks/decoys.py", {"--data-dir", "--tasks", "--num-decoy", "--shift", "--mode", "--max-short"}),
    ("benchmarks/persistence_sweep.py", {"--run-dir", "--task", "--episodes", "--seed-offset", "--persist"}),
    ("benchmarks/ppo_real_curve.py", {"--run-dir", "--task", "--real-every", "--real-episodes", "--target-kl"}),
    ("benchmarks/overoptimization.py", {"--run-dir", "--task", "--real-episodes", "--eval-seed", "--eval-every"}),
])
def test_benchmark_help(script, flags):
    got, _ = help_flags(script)
    assert flags <= got, flags - got
