"""A tiny image env for the tests, and a worked example of a user's own env adapter.

A red square (the "gripper") moves on a dark table by 2-D actions; the task is solved when
it covers the green goal pad in the bottom-right corner. Frames are rendered with numpy in
microseconds, so the whole pipeline runs on it in seconds. Load it from any stage with
`--tasks tests.tiny_env:make` (collector) or `--task tests.tiny_env:make` (later stages).
"""

from __future__ import annotations

import numpy as np
import torch

GOAL = np.array([0.8, 0.8])
STEP = 0.15  # how far one action of magnitude 1 moves the square
RADIUS = 0.15  # success when within this distance of the goal


class TinyReach:
    """Implements the `common.EnvAdapter` interface."""

    def __init__(self, resolution: int = 16, action_repeat: int = 1, max_steps: int = 10):
        self.resolution, self.action_repeat, self.max_steps = resolution, action_repeat, max_steps
        self.action_dim = 2
        self.p = np.zeros(2)

    def render(self) -> np.ndarray:
        return render_batch(self.p[None], self.resolution)[0]

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        self.p = rng.uniform(0.1, 0.4, size=2)  # start in the top-left quarter
        return self.render()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        for _ in range(self.action_repeat):
            self.p = np.clip(self.p + STEP * np.clip(action, -1, 1), 0, 1)
        return self.render(), bool(np.linalg.norm(self.p - GOAL) < RADIUS)

    def expert_action(self, goal_shift: np.ndarray | None = None) -> np.ndarray:
        goal = GOAL if goal_shift is None else GOAL + goal_shift
        return np.clip((goal - self.p) / STEP, -1, 1).astype(np.float32)

    def close(self) -> None:
        pass


def render_batch(p: np.ndarray, res: int) -> np.ndarray:
    """Positions (N, 2) in [0, 1]^2 -> frames (N, res, res, 3) uint8 (row 0 is the top)."""
    img = np.full((len(p), res, res, 3), 40, dtype=np.uint8)
    img[:, 0, :, 2] = 200  # a blue strip along the top edge: an "upright" marker
    g = (GOAL * (res - 1)).round().astype(int)
    img[:, g[1] - 1:g[1] + 2, g[0] - 1:g[0] + 2] = (30, 200, 30)
    c = (p * (res - 1)).round().astype(int)
    for i, (x, y) in enumerate(c):
        img[i, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = (220, 30, 30)
    return img


def make(resolution: int = 16, action_repeat: int = 1, max_steps: int = 10) -> TinyReach:
    return TinyReach(resolution, action_repeat, max_steps)


class TinyVecEnv:
    """The tiny env batched with the `ImaginedEnv` interface of stage 5, so PPO can be checked
    on a "world model" that is exactly right."""

    def __init__(self, num_envs: int, horizon: int, resolution: int = 16, frame_stack: int = 2, seed: int = 0):
        self.N, self.horizon, self.res, self.S = num_envs, horizon, resolution, frame_stack
        self.rng = np.random.default_rng(seed)

    def _frames(self) -> torch.Tensor:
        return torch.from_numpy(render_batch(self.p, self.res)).movedim(-1, -3).float() / 127.5 - 1

    def reset(self) -> torch.Tensor:
        self.p = self.rng.uniform(0.1, 0.4, size=(self.N, 2))
        self.t = np.zeros(self.N, dtype=int)
        f = self._frames()
        self.stack = f[:, None].repeat(1, self.S, 1, 1, 1)
        return self.stack

    def step(self, action: torch.Tensor, auto_reset: bool = True):
        self.p = np.clip(self.p + STEP * action.clamp(-1, 1).cpu().numpy(), 0, 1)
        self.t += 1
        success = np.linalg.norm(self.p - GOAL, axis=1) < RADIUS
        done = success | (self.t >= self.horizon)
        f = self._frames()
        self.stack = torch.cat([self.stack[:, 1:], f[:, None]], 1)
        if auto_reset and done.any():
            self.p[done] = self.rng.uniform(0.1, 0.4, size=(int(done.sum()), 2))
            self.t[done] = 0
            self.stack[torch.from_numpy(done)] = self._frames()[torch.from_numpy(done)][:, None].repeat(1, self.S, 1, 1, 1)
        return self.stack, torch.from_numpy(success).float(), torch.from_numpy(done), torch.from_numpy(success)
