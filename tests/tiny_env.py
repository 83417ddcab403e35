"""A tiny image env for the tests, and a worked example of a user's own env adapter.

A red square (the "gripper") moves on a dark table by 2-D actions; the task is solved when
it covers the green goal pad in the bottom-right corner. Frames are rendered with numpy in
microseconds, so the whole pipeline runs on it in seconds. Load it from any stage with
`--tasks tests.tiny_env:make` (collector) or `--task tests.tiny_env:make` (later stages).

`make_glitchy` is the same task with a flaw for a reward model to learn: a lamp (the top strip
turns yellow) lights when the task is solved, and also, by a glitch, when the square sits in the
bottom-left corner, where the task is not solved. A classifier that has only seen the lamp with
success can be exploited by a policy that drives into that corner (tests/test_trust.py).
"""

from __future__ import annotations

import numpy as np
import torch

GOAL = np.array([0.8, 0.8])
LAMP_ON = (240, 220, 0)  # the top strip's colour while the lamp is lit (off: blue)
STEP = 0.15  # how far one action of magnitude 1 moves the square
RADIUS = 0.15  # success when within this distance of the goal


class TinyReach:
    """Implements the `common.EnvAdapter` interface."""

    def __init__(self, resolution: int = 16, action_repeat: int = 1, max_steps: int = 10, glitchy: bool = False):
        self.resolution, self.action_repeat, self.max_steps = resolution, action_repeat, max_steps
        self.action_dim, self.glitchy = 2, glitchy
        self.p = np.zeros(2)

    def render(self) -> np.ndarray:
        return render_batch(self.p[None], self.resolution, self.glitchy)[0]

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        self.p = rng.uniform(0.1, 0.4, size=2)  # start in the top-left quarter
        return self.render()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        for _ in range(self.action_repeat):
            self.p = np.clip(self.p + STEP * np.clip(action, -1, 1), 0, 1)
        return self.render(), bool(solved(self.p[None])[0])

    def expert_action(self, goal_shift: np.ndarray | None = None) -> np.ndarray:
        goal = GOAL if goal_shift is None else GOAL + goal_shift
        return np.clip((goal - self.p) / STEP, -1, 1).astype(np.float32)

    def close(self) -> None:
        pass


def solved(p: np.ndarray) -> np.ndarray:
    """(N, 2) positions -> (N,) bool: the square is on the goal pad."""
    return np.linalg.norm(p - GOAL, axis=-1) < RADIUS


def in_glitch_corner(p: np.ndarray) -> np.ndarray:
    """(N, 2) positions -> (N,) bool: the bottom-left corner where the glitchy env's lamp misfires."""
    return (p[:, 0] < 0.15) & (p[:, 1] > 0.85)


def render_batch(p: np.ndarray, res: int, glitchy: bool = False) -> np.ndarray:
    """Positions (N, 2) in [0, 1]^2 -> frames (N, res, res, 3) uint8 (row 0 is the top)."""
    img = np.full((len(p), res, res, 3), 40, dtype=np.uint8)
    img[:, 0, :, 2] = 200  # a blue strip along the top edge: an "upright" marker
    if glitchy:  # the lamp: the strip turns yellow when solved, and in the glitch corner
        lamp = solved(p) | in_glitch_corner(p)
        img[lamp, :2] = LAMP_ON
    g = (GOAL * (res - 1)).round().astype(int)
    img[:, g[1] - 1:g[1] + 2, g[0] - 1:g[0] + 2] = (30, 200, 30)
    c = (p * (res - 1)).round().astype(int)
    for i, (x, y) in enumerate(c):
        img[i, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = (220, 30, 30)
    return img


def make(resolution: int = 16, action_repeat: int = 1, max_steps: int = 10) -> TinyReach:
    return TinyReach(resolution, action_repeat, max_steps)


def make_glitchy(resolution: int = 16, action_repeat: int = 1, max_steps: int = 10) -> TinyReach:
    return TinyReach(resolution, action_repeat, max_steps, glitchy=True)


class TinyWorldModel:
    """The tiny env's exact dynamics behind stage 2's imagination API (`start`, `push`, `step`), so
    stage 5's `ImaginedEnv` and `imagined_success` run on a world model that is exactly right and
    every error left is the reward model's. The history tuple carries the squares' positions (N, 2)
    as a fourth entry, which `push` moves with each action."""

    def __init__(self, resolution: int = 16, glitchy: bool = False, history: int = 2):
        self.res, self.glitchy, self.T = resolution, glitchy, history
        self.device, self.num_steps, self.sampler = torch.device("cpu"), 0, "exact"

    def _frames(self, p: torch.Tensor) -> torch.Tensor:
        img = render_batch(p.numpy(), self.res, self.glitchy)
        return torch.from_numpy(img).movedim(-1, -3).float() / 127.5 - 1  # (N, 3, H, W)

    def start(self, first_frames: torch.Tensor) -> tuple:
        """Histories from start frames (N, H, W, 3) uint8; the position is read off the red square."""
        f = first_frames.numpy().astype(int)
        red = (f[..., 0] > 200) & (f[..., 1] < 100)  # (N, H, W)
        ys, xs = np.arange(self.res)[:, None], np.arange(self.res)[None, :]
        n = red.sum((1, 2))
        p = np.stack([(red * xs).sum((1, 2)) / n, (red * ys).sum((1, 2)) / n], 1) / (self.res - 1)
        p = torch.from_numpy(p).float()
        frames = self._frames(p)[:, None].repeat(1, self.T, 1, 1, 1)  # (N, T, 3, H, W), padded as in stage 2
        return frames, torch.zeros(len(p), self.T, 2), torch.zeros(len(p), self.T), p

    @staticmethod
    def push(hist: tuple, new_frame: torch.Tensor | None, new_action: torch.Tensor | None) -> tuple:
        frames, actions, mask, p = hist
        if new_action is not None:
            a = new_action.float().clamp(-1, 1)
            actions = torch.cat([actions[:, 1:], a[:, None]], 1)
            mask = torch.cat([mask[:, 1:], torch.ones_like(mask[:, :1])], 1)
            p = (p + STEP * a).clamp(0, 1)
        if new_frame is not None:
            frames = torch.cat([frames[:, 1:], new_frame[:, None]], 1)
        return frames, actions, mask, p

    def step(self, frames, actions, mask, p) -> torch.Tensor:
        return self._frames(p)


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
        success = solved(self.p)
        done = success | (self.t >= self.horizon)
        f = self._frames()
        self.stack = torch.cat([self.stack[:, 1:], f[:, None]], 1)
        if auto_reset and done.any():
            self.p[done] = self.rng.uniform(0.1, 0.4, size=(int(done.sum()), 2))
            self.t[done] = 0
            self.stack[torch.from_numpy(done)] = self._frames()[torch.from_numpy(done)][:, None].repeat(1, self.S, 1, 1, 1)
        return self.stack, torch.from_numpy(success).float(), torch.from_numpy(done), torch.from_numpy(success)
