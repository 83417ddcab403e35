"""The classroom kit proves itself: every stub fails its grader, the project's own functions pass
it, typical student bugs fail with the quantity they get wrong, and a student's function can be
swapped into a stage."""

import os
import subprocess
import sys

from conftest import REPO

GRADE = [sys.executable, "-m", "exercises.grade"]
ENV = {**os.environ, "MUJOCO_GL": "egl"}


def run(*args, env=None):
    return subprocess.run([*GRADE, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env or ENV)


def case_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith(("PASS", "FAIL"))]


def test_every_stub_fails_and_every_reference_passes():
    stubs = run("--all")
    lines = case_lines(stubs.stdout)
    assert stubs.returncode == 1 and len(lines) >= 18, stubs.stdout + stubs.stderr  # 18 cases today
    assert all(line.startswith("FAIL") and "NotImplementedError" in line for line in lines), stubs.stdout
    ref = run("--all", "--reference")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    assert case_lines(ref.stdout) == [line.replace("FAIL", "PASS", 1).split(":")[0] for line in lines]
    for name in ("two_hot", "edm", "sampler", "bc_nll", "classifier_loss", "gae", "ppo_clip"):
        assert f"{name}: " in ref.stdout and "cases pass" in ref.stdout


BUGS = {
    # two-hot with K counted as intervals: bin values b_k = low + k (high - low) / K
    "two_hot": ("""import torch
def two_hot(x, low, high, num_bins):
    x = x.clamp(low, high)
    pos = (x - low) / (high - low) * num_bins
    k = pos.detach().floor().clamp(max=num_bins - 2).long()
    w = pos - k
    out = torch.zeros(*x.shape, num_bins, dtype=x.dtype)
    out = out.scatter(-1, k.unsqueeze(-1), (1 - w).unsqueeze(-1))
    return out.scatter(-1, (k + 1).unsqueeze(-1), w.unsqueeze(-1))
""", "the paper's example: 0.6 at 0.1, 0.4 at 0.2): got"),
    # GAE without the done mask
    "gae": ("""import torch
def gae(rewards, values, dones, next_value, gamma, lam):
    adv, last = torch.zeros_like(rewards), torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        v_next = next_value if t == len(rewards) - 1 else values[t + 1]
        last = rewards[t] + gamma * v_next - values[t] + gamma * lam * last
        adv[t] = last
    return adv, adv + values
""", "A_1, the last step of an episode (done_1 = 1: nothing of the next episode may enter): got"),
    # the clipped surrogate with min and max swapped (the optimistic bound)
    "ppo_clip": ("""import torch
def clipped_policy_loss(newlogprob, oldlogprob, advantages, clip_coef):
    logratio = newlogprob - oldlogprob
    ratio = logratio.exp()
    pg = torch.min(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
    return pg, ((ratio - 1) - logratio).mean(), ((ratio - 1).abs() > clip_coef).float().mean(), ratio
""", "pg_loss for ratios (1.5, 0.5), advantages (+1, -1), eps 0.2"),
}


def test_typical_bugs_fail_with_the_quantity_they_get_wrong(tmp_path):
    for name, (code, quantity) in BUGS.items():
        f = tmp_path / f"{name}_bug.py"
        f.write_text(code)
        r = run(name, "--file", str(f))
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        fails = [line for line in case_lines(r.stdout) if line.startswith("FAIL")]
        assert any(quantity in line for line in fails), (name, r.stdout)


def test_grader_errors_are_one_line(tmp_path):
    r = run("three_hot")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown exercise three_hot") and "Traceback" not in r.stderr
    (tmp_path / "empty.py").write_text("x = 1\n")
    r = run("gae", "--file", str(tmp_path / "empty.py"))
    assert r.returncode == 2 and "defines no gae" in r.stderr and "Traceback" not in r.stderr


def test_a_students_function_is_used_by_the_stage(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("def two_hot(x, low, high, num_bins):\n    raise RuntimeError('student two_hot called')\n")
    code = ("import common; wm = common.import_stage('02_world_model'); import torch\n"
            "wm.two_hot(torch.zeros(1), -1.0, 1.0, 21)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**ENV, "WORLD4RL_ANSWERS": str(f)})
    assert "student two_hot called" in r.stderr and "using your two_hot" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "02_world_model.py", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={**ENV, "WORLD4RL_ANSWERS": str(tmp_path / "missing.py")})
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
