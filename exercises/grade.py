"""Grade an exercise: run the project's own tests for a function against your implementation.

    python -m exercises.grade two_hot                       # your answer in exercises/two_hot.py
    python -m exercises.grade gae --file my_gae.py          # or in a file of your own
    python -m exercises.grade --all                         # every exercise, from exercises/<name>.py
    python -m exercises.grade --all --reference             # the project's own functions (all pass)
    python -m exercises.grade --list

For each test case it prints PASS, or FAIL with the quantity that differs and the value it should
have. The tests are `tests/test_functions.py::test_<name>_*`; while they run, the stage module's
function is replaced by yours (as `WORLD4RL_ANSWERS` does for a whole pipeline run).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (the stage that defines the functions, the functions, what the exercise is)
EXERCISES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "two_hot": ("02_world_model", ("two_hot",), "two-hot action encoding (Eq. 5)"),
    "edm": ("02_world_model", ("edm_scalings", "denoising_loss"), "EDM preconditioning and the denoising loss (Eqs. 4, 7)"),
    "sampler": ("02_world_model", ("euler_step", "heun_step"), "one Euler and one Heun step of the sampler"),
    "bc_nll": ("04_bc", ("gaussian_nll",), "the BC negative log-likelihood with the std cap (Eqs. 1-2)"),
    "classifier_loss": ("03_reward", ("classifier_loss",), "the class-weighted success-classifier loss (Eq. 3)"),
    "gae": ("05_ppo_refine", ("gae",), "GAE: the advantages and the critic's targets (Eq. 9)"),
    "ppo_clip": ("05_ppo_refine", ("clipped_policy_loss",), "the clipped surrogate, approx-KL, clip fraction (Eq. 8)"),
}


class UsageError(Exception):
    pass


def load_answer(name: str, path: Path) -> dict:
    """The functions of exercise `name` from the file at `path`."""
    if not path.exists():
        raise UsageError(f"no file {path}; write your answer there or pass --file")
    spec = importlib.util.spec_from_file_location(f"answer_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001  (a student's file: report any error in one line)
        raise UsageError(f"{path} does not import: {type(e).__name__}: {e}") from None
    missing = [f for f in EXERCISES[name][1] if not callable(getattr(mod, f, None))]
    if missing:
        raise UsageError(f"{path} defines no {', '.join(missing)}; exercise '{name}' asks for "
                         f"{', '.join(EXERCISES[name][1])}")
    return {f: getattr(mod, f) for f in EXERCISES[name][1]}


class Report:
    """A pytest plugin that keeps each test's outcome and the first line of its failure."""

    def __init__(self):
        self.results: dict[str, tuple[bool, str]] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.failed):
            msg = ""
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                msg = (crash.message if crash else str(report.longrepr)).strip().splitlines()[0]
                msg = msg.removeprefix("AssertionError: ")
            self.results[report.nodeid.split("::")[-1]] = (report.passed, msg)


def grade(names: list[str], files: dict[str, Path] | None = None, reference: bool = False) -> dict[str, list]:
    """Run each exercise's tests with the stage functions replaced by the answers; returns, per
    exercise, [(test name, passed, message)]."""
    import pytest

    sys.path.insert(0, str(REPO))
    import common

    answers = {} if reference else {n: load_answer(n, (files or {}).get(n, REPO / "exercises" / f"{n}.py"))
                                    for n in names}
    saved = []
    for n, funcs in answers.items():
        mod = common.import_stage(EXERCISES[n][0])
        for f, fn in funcs.items():
            saved.append((mod, f, getattr(mod, f)))
            setattr(mod, f, fn)
    report = Report()
    try:
        keyword = " or ".join(f"test_{n}_" for n in names)
        pytest.main([str(REPO / "tests" / "test_functions.py"), "-k", keyword, "-p", "no:terminal",
                     "-p", "no:cacheprovider", "-W", "ignore"], plugins=[report])
    finally:
        for mod, f, fn in saved:
            setattr(mod, f, fn)
    return {n: [(t, ok, msg) for t, (ok, msg) in report.results.items() if t.startswith(f"test_{n}_")]
            for n in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exercises.grade", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"exercises: {', '.join(EXERCISES)}")
    p.add_argument("--file", type=Path, help="your answer (one exercise); default exercises/<name>.py")
    p.add_argument("--all", action="store_true", help="every exercise")
    p.add_argument("--reference", action="store_true", help="grade the project's own functions")
    p.add_argument("--list", action="store_true", help="list the exercises")
    a = p.parse_args(argv)
    if a.list:
        for i, (n, (stage, funcs, what)) in enumerate(EXERCISES.items(), 1):
            print(f"{i}. {n:16s} {what}: {', '.join(funcs)} in {stage}.py")
        return 0
    names = list(EXERCISES) if a.all else a.names
    try:
        unknown = [n for n in names if n not in EXERCISES]
        if not names or unknown:
            raise UsageError(f"unknown exercise {', '.join(unknown)}; pick from {', '.join(EXERCISES)}" if unknown
                             else "name an exercise (or --all, --list)")
        if a.file and len(names) != 1:
            raise UsageError("--file goes with exactly one exercise")
        results = grade(names, {names[0]: a.file} if a.file else None, a.reference)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for n, cases in results.items():
        k = sum(ok for _, ok, _ in cases)
        print(f"{n}: {k}/{len(cases)} cases pass ({EXERCISES[n][2]})")
        for t, ok, msg in cases:
            print(f"  {'PASS' if ok else 'FAIL'}  {t}" + ("" if ok else f": {msg}"))
        failed += k < len(cases) or not cases
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    sys.exit(main())
