"""Shared test setup: headless rendering, the repo on sys.path, one torch thread per test run."""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402

torch.set_num_threads(2)

TINY = "tests.tiny_env:make"


def stage(name: str):
    return common.import_stage(name)


def benchmark(name: str):
    """`benchmarks/<name>.py` as a module, loaded once and kept in sys.modules (its dataclasses look
    their module up there)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small dataset from the tiny env: 40 expert, 40 noisy, 20 random episodes of 10 steps."""
    d = tmp_path_factory.mktemp("tiny") / "data"
    collect = stage("01_collect")
    collect.main(collect.Args(tasks=[TINY], data_dir=d, num_expert=40, num_noisy=40, num_random=20,
                              resolution=16, action_repeat=1, max_steps=10, workers=1,
                              noise_levels=(0.5, 1.0)))
    return d


TINY_ENV = {"resolution": 16, "camera": "corner", "fovy": 30.0, "action_repeat": 1, "max_steps": 10}


def policy_config(**overrides):
    """A stage-4 `PolicyConfig` for a small policy on the tiny env (16x16 frames, 2-D actions)."""
    cfg = dict(frame_stack=2, channels=(8, 16), action_dim=2, log_std_max=0.0, resolution=16, task=TINY,
               env=dict(TINY_ENV), num_demos=0)
    return stage("04_bc").PolicyConfig(**{**cfg, **overrides})
