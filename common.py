"""Plumbing shared by the six World4RL stages (no algorithm lives here).

- Env adapters: one small interface (`EnvAdapter`) through which every stage talks to an
  environment -- Meta-World, any gymnasium env that renders `rgb_array`, or a user's own
  robot loaded from a `module:factory` spec.
- The episode dataset: one `.npz` file per episode plus a `meta.json` per data directory.
- Frames as tensors (`to_float`, `to_uint8`) and the transition sampler (`Transitions`) that stages
  2 and 4 train on; real-environment evaluation of a policy checkpoint (`evaluate_real`), which
  stages 4, 5 and 6 share.
- Checkpoints (atomic save, `weights_only=True` load, stage check, config dataclasses rebuilt from
  them), seeding, device choice, the one precision switch (`autocast`), one-line fatal errors,
  importing an earlier stage's module.

Dataset format (a user with recorded robot demos can write it with `save_episode`):

    <data_dir>/meta.json                     resolution, camera, action_repeat, max_steps, action_dim
    <data_dir>/<task>/<source>_<index>.npz   one episode each:
        frames   uint8   (L+1, H, W, 3)  upright RGB; frames[0] is the reset frame
        actions  float32 (L, D)          actions as executed, in [-1, 1]
        success  bool    (L+1,)          success[t] labels frames[t] (success[0] is False)
        task     str, source str (expert / noisy / random / decoy / nearmiss / policy / demo), seed int64
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import random
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede `import mujoco`

REPO = Path(__file__).resolve().parent
DATA_FORMAT_VERSION = 1
SOURCES = ("expert", "noisy", "random", "policy", "demo")

SUITES = {
    "six": ["coffee-pull", "lever-pull", "soccer", "door-lock", "button-press", "drawer-close"],
    "mt10": ["reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close",
             "button-press-topdown", "peg-insert-side", "window-open", "window-close"],
}


# --------------------------------------------------------------------------------------
# Errors: one line, no traceback
# --------------------------------------------------------------------------------------
class UserError(Exception):
    """A problem with the user's input (paths, flags, files). Printed as one line."""


def fail(msg: str) -> None:
    raise UserError(msg)


def run_main(main: Callable[[Any], Any], args_cls: type) -> None:
    """Parse `Args` with tyro and run `main`; a `UserError` becomes one line and exit 2."""
    import tyro

    args = tyro.cli(args_cls)
    try:
        main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        sys.exit(130)


def expand_tasks(tasks: list[str]) -> list[str]:
    """`["six"]` -> the six task names; names are kept as given otherwise."""
    out: list[str] = []
    for t in tasks:
        out.extend(SUITES.get(t, [t]))
    return out


# --------------------------------------------------------------------------------------
# Seeding and devices
# --------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stable_seed(*parts: Any) -> int:
    """A seed that depends only on its parts (not on Python's hash salt)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name} asked for, but CUDA is not available; use --device cpu")
    if torch.device(name).type == "cuda":
        # TF32 matmuls/convs: ~fp32 accuracy for these small nets, much faster on Ampere and later.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16")


def bf16_fast(device) -> bool:
    """Whether bf16 autocast trains this project's networks faster than fp32 here: a CPU with
    AVX-512 bf16 or AMX (elsewhere on a CPU bf16 is emulated and slower). Not on a GPU: there fp32
    already runs its matmuls and convolutions in TF32 on the tensor cores (`pick_device`), and at
    48x48 the small U-Net is launch-bound, so autocast's casts are extra kernels that cost more than
    bf16 saves (an H200: 2,963 samples/s in fp32 against 2,289 in bf16, docs/RESULTS.md). Larger
    images or networks may turn this around: `--precision bf16` asks for it."""
    import torch

    if device.type == "cuda":
        return False
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())


def autocast(device, precision: str = "auto"):
    """The one switch for reduced precision, so the algorithm reads the same with it on or off.

    `bf16`: convolutions and matmuls in bfloat16 (torch.autocast), weights, optimiser states,
    norms and losses in fp32; `fp32`: nothing changes (TF32 on a GPU); `auto`: bf16 where
    `bf16_fast(device)`. On a CPU with AMX a bf16 matmul runs several times faster than fp32 (docs/RESULTS.md)."""
    import contextlib

    import torch

    if precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    if precision == "fp32" or (precision == "auto" and not bf16_fast(device)):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def maybe_compile(module, enabled: bool):
    """`torch.compile` the module when asked (the other speed switch beside `autocast`): the same
    module, traced into fused kernels on first use. It needs a C++ compiler on a CPU and pays off on
    long runs only (the first steps compile)."""
    import torch

    return torch.compile(module) if enabled else module


# --------------------------------------------------------------------------------------
# Distributed training: `torchrun --nproc_per_node N <stage>.py ...`
# --------------------------------------------------------------------------------------
def init_distributed(device_name: str = "auto"):
    """Under torchrun (which sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address), join the
    process group and return (rank, world_size, device): NCCL with one GPU per process (LOCAL_RANK),
    gloo on CPUs. Run alone, nothing to join: (0, 1, pick_device(device_name))."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def rng_state(gen=None) -> dict:
    """The global CPU (and CUDA) random streams, and `gen`'s if given: what a resumed run must restore
    to draw the same numbers an uninterrupted one would, or what a side computation restores after."""
    import torch

    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    if gen is not None:
        st["gen"] = gen.get_state()
    return st


def set_rng_state(st: dict, gen=None) -> None:
    """Put back what rng_state saved (CUDA's only on a machine with as many devices)."""
    import torch

    torch.set_rng_state(st["cpu"])
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])
    if gen is not None:
        gen.set_state(st["gen"])


@contextlib.contextmanager
def fixed_noise(seed: int):
    """Draw the random numbers inside the block from `seed`, then put the global streams back: a
    measurement (imagined success, an open-loop rollout) reads the same samples whenever it runs, and
    does not move the random numbers of what runs after it."""
    import torch

    saved = rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


def finish_distributed() -> None:
    """Leave the process group, if one was joined. Every rank waits here for the others first (rank 0
    may still be writing its report): a gloo process that tears down while its peer is busy can abort
    at exit ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank0_decides(flag: bool, device) -> bool:
    """Rank 0's value of `flag` on every rank (a time budget must stop all ranks at the same step, or
    the others wait forever in the next gradient all-reduce); alone, `flag` itself."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def max_rank_difference(*modules) -> float:
    """The largest |difference| between any rank's parameters and rank 0's (0.0 alone): DDP keeps
    ranks in step by averaging gradients, so anything but 0 means the ranks trained different models."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    flat = torch.cat([p.detach().float().flatten() for m in modules for p in m.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def import_stage(name: str):
    """Import an earlier stage's module; stage files start with digits (e.g. `02_world_model`)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(name)


# The functions a student may write (exercises/): with WORLD4RL_ANSWERS=my_file.py[,other.py] set,
# a stage uses the ones these files define in place of its own (see TEACHING.md).
ANSWERABLE = ("two_hot", "edm_scalings", "denoising_loss", "euler_step", "heun_step", "gaussian_nll",
              "classifier_loss", "gae", "clipped_policy_loss")


def use_answers(namespace: dict[str, Any]) -> list[str]:
    """Replace a stage's functions by a student's, where WORLD4RL_ANSWERS names files that define them.

    Called at the end of a stage module with its `globals()`; returns the names replaced. Only the
    functions in `ANSWERABLE` are taken; a file that does not exist stops the run with one line."""
    paths = [p for p in os.environ.get("WORLD4RL_ANSWERS", "").split(",") if p.strip()]
    replaced = []
    for p in paths:
        path = Path(p.strip()).expanduser()
        if not path.exists():  # at import time, outside run_main: say it in one line here
            print(f"error: WORLD4RL_ANSWERS names {path}, which does not exist; give a .py file with your "
                  f"functions", file=sys.stderr)
            sys.exit(2)
        spec = importlib.util.spec_from_file_location(f"answers_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in ANSWERABLE:
            if name in namespace and callable(getattr(mod, name, None)):
                namespace[name] = getattr(mod, name)
                replaced.append(name)
                print(f"{Path(namespace.get('__file__', 'stage')).name}: using your {name} from {path}",
                      file=sys.stderr)
    return replaced


# --------------------------------------------------------------------------------------
# Env adapters
# --------------------------------------------------------------------------------------
class EnvAdapter(Protocol):
    """What every stage needs from an environment (simulated or real).

    Frames are upright RGB, uint8, (resolution, resolution, 3). Actions are float arrays in
    [-1, 1]^action_dim. `step` returns the next frame and whether the task is solved in it.
    """

    action_dim: int
    max_steps: int  # decisions per episode
    resolution: int

    def reset(self, seed: int) -> np.ndarray: ...
    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]: ...
    # The scripted expert's action, None where there is none. `goal_shift` (x, y), optional: aim it
    # that far from the true goal instead (a decoy: the task done in the wrong place).
    def expert_action(self, goal_shift: np.ndarray | None = None) -> np.ndarray | None: ...
    def close(self) -> None: ...


class MetaWorldAdapter:
    """A Meta-World v3 task, rendered headless and fast.

    Speed: the default shadow map and multisampling make a frame ~10x slower to render on a
    CPU, so both are turned off. The corner cameras render upside down, so rows are flipped.
    Each `reset(seed)` draws a fresh object/goal placement from `seed` (not one of the 50
    fixed MT1 variations), so any number of distinct seeded episodes is available.
    """

    def __init__(self, task: str, resolution: int = 64, camera: str = "corner",
                 fovy: float = 30.0, action_repeat: int = 4, max_steps: int = 30):
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World envs)
        import metaworld.policies as policies
        import mujoco

        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env_name = f"{task}-v3" if not task.endswith("-v3") else task
        if env_name not in ALL_V3_ENVIRONMENTS:
            fail(f"unknown Meta-World task '{task}'; pick one of: "
                 + ", ".join(sorted(k[:-3] for k in ALL_V3_ENVIRONMENTS)))
        if action_repeat * max_steps > 500:
            fail(f"action_repeat*max_steps = {action_repeat * max_steps} exceeds Meta-World's 500 steps")
        wrapped = gym.make("Meta-World/MT1", env_name=env_name, seed=0)
        e = wrapped
        while not hasattr(e, "tasks"):
            e = e.env
        self.env = wrapped.unwrapped  # the raw Sawyer env: no time limit, no auto-reset
        self.env.set_task(e.tasks[0])  # sets observability flags; placement is re-drawn below
        self.env._freeze_rand_vec = False
        self.env.seeded_rand_vec = True
        m = self.env.model
        m.vis.quality.shadowsize = 0
        m.vis.quality.offsamples = 0
        names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]
        if camera not in names:
            fail(f"unknown camera '{camera}'; this task has: {', '.join(names)}")
        self.cam_id = names.index(camera)
        m.cam_fovy[self.cam_id] = fovy
        self.flip = camera.startswith("corner")
        self.renderer = mujoco.Renderer(m, resolution, resolution)
        self._mujoco = mujoco
        pol_name = "Sawyer" + "".join(w.capitalize() for w in env_name[:-3].split("-")) + "V3Policy"
        pol_name = pol_name.replace("PegInsertSide", "PegInsertionSide")
        self.expert = getattr(policies, pol_name)() if hasattr(policies, pol_name) else None
        self.task, self.resolution, self.action_repeat, self.max_steps = task, resolution, action_repeat, max_steps
        self.action_dim = 4
        self._obs: np.ndarray | None = None

    def render(self) -> np.ndarray:
        self.renderer.update_scene(self.env.data, camera=self.cam_id)
        flags = self.renderer.scene.flags
        flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        img = self.renderer.render()
        return np.ascontiguousarray(img[::-1] if self.flip else img)

    def reset(self, seed: int) -> np.ndarray:
        self.env.seed(int(seed))
        self._obs, _ = self.env.reset()
        return self.render()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        for _ in range(self.action_repeat):
            self._obs, _, _, _, info = self.env.step(a)
        return self.render(), bool(info["success"])

    def expert_action(self, goal_shift: np.ndarray | None = None) -> np.ndarray | None:
        if self.expert is None:
            return None
        obs = self._obs
        if goal_shift is not None:  # the experts read the goal from the last 3 entries of obs
            obs = obs.copy()
            obs[-3:-1] += goal_shift
        return np.clip(self.expert.get_action(obs), -1, 1).astype(np.float32)

    def close(self) -> None:
        if self.renderer is not None:
            try:
                self.renderer.close()
            except Exception:  # EGL teardown can complain; nothing to recover
                pass
            self.renderer = None


class GymAdapter:
    """Any gymnasium env with a continuous (Box) action space that renders `rgb_array`.

    Success is read from `info["is_success"]` or `info["success"]` when the env gives it.
    """

    def __init__(self, env_id: str, resolution: int = 64, action_repeat: int = 1,
                 max_steps: int = 100):
        import gymnasium as gym

        try:
            self.env = gym.make(env_id, render_mode="rgb_array")
        except gym.error.Error as e:
            fail(f"cannot make gymnasium env '{env_id}': {e}")
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box):
            fail(f"gymnasium env '{env_id}' has a {type(space).__name__} action space; only Box is supported")
        self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.action_dim = int(np.prod(space.shape))
        self.resolution, self.action_repeat, self.max_steps = resolution, action_repeat, max_steps

    def _frame(self) -> np.ndarray:
        from PIL import Image

        img = Image.fromarray(self.env.render()).resize((self.resolution,) * 2, Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)[..., :3]

    def reset(self, seed: int) -> np.ndarray:
        self.env.reset(seed=int(seed))
        return self._frame()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        a = self.low + (np.clip(action, -1, 1) + 1) / 2 * (self.high - self.low)
        success = False
        for _ in range(self.action_repeat):
            _, _, term, trunc, info = self.env.step(a.reshape(self.env.action_space.shape))
            success = bool(info.get("is_success", info.get("success", False)))
            if term or trunc:
                break
        return self._frame(), success

    def expert_action(self, goal_shift: np.ndarray | None = None) -> np.ndarray | None:
        return None

    def close(self) -> None:
        self.env.close()


@dataclasses.dataclass
class EnvConfig:
    """How to build an env; stored in dataset metadata and in checkpoints."""

    resolution: int = 64
    camera: str = "corner"
    fovy: float = 30.0
    action_repeat: int = 4
    max_steps: int = 30


def make_env(spec: str, cfg: EnvConfig) -> EnvAdapter:
    """Build an env from a spec.

    - `coffee-pull` or `metaworld:coffee-pull`: a Meta-World v3 task.
    - `gym:Pendulum-v1`: a gymnasium env.
    - `my_robot:make_env` or `pkg.module:factory`: the user's own adapter; the factory is
      called as `factory(resolution=..., action_repeat=..., max_steps=...)` and must return
      an object with the `EnvAdapter` methods.
    """
    kind, _, rest = spec.partition(":")
    if not rest:
        return MetaWorldAdapter(spec, cfg.resolution, cfg.camera, cfg.fovy, cfg.action_repeat, cfg.max_steps)
    if kind == "metaworld":
        return MetaWorldAdapter(rest, cfg.resolution, cfg.camera, cfg.fovy, cfg.action_repeat, cfg.max_steps)
    if kind == "gym":
        return GymAdapter(rest, cfg.resolution, cfg.action_repeat, cfg.max_steps)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        factory = getattr(importlib.import_module(kind), rest)
    except (ImportError, AttributeError) as e:
        fail(f"cannot load env factory '{spec}' ({e}); expected 'module:function'")
    env = factory(resolution=cfg.resolution, action_repeat=cfg.action_repeat, max_steps=cfg.max_steps)
    missing = [m for m in ("reset", "step", "close", "action_dim", "max_steps") if not hasattr(env, m)]
    if missing:
        fail(f"env factory '{spec}' returned an object without {', '.join(missing)}")
    return env


def task_slug(spec: str) -> str:
    """A directory name for an env spec (`tests.tiny_env:make` -> `tests.tiny_env-make`)."""
    return spec.replace("metaworld:", "").replace(":", "-").replace("/", "_")


# --------------------------------------------------------------------------------------
# The episode dataset
# --------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write to `path.tmp` through `write(f)`, then rename: a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
    os.replace(tmp, path)


def save_video(path: Path, frames, fps: int = 8) -> bool:
    """Write uint8 frames (a list of (H, W, 3) or an (N, H, W, 3) array) as an mp4 through a temporary
    name. Without an ffmpeg backend (`pip install imageio-ffmpeg`) say so in one line and go on: a
    video is never worth a crash."""
    import imageio.v2 as imageio

    path = Path(path)
    tmp = path.with_name("tmp_" + path.name)  # keeps the .mp4 suffix: imageio picks its writer by it
    try:
        imageio.mimsave(tmp, list(frames), fps=fps, format="FFMPEG")
    except Exception as e:  # noqa: BLE001  (missing plugin, codec, or disk: all mean "no video")
        tmp.unlink(missing_ok=True)
        print(f"warning: video {path} not written ({type(e).__name__}: {e}); is imageio-ffmpeg installed?")
        return False
    os.replace(tmp, path)
    return True


def episode_path(data_dir: Path, task: str, source: str, index: int) -> Path:
    return Path(data_dir) / task_slug(task) / f"{source}_{index:04d}.npz"


def save_episode(path: Path, frames: np.ndarray, actions: np.ndarray, success: np.ndarray,
                 task: str, source: str, seed: int) -> None:
    frames = np.asarray(frames, dtype=np.uint8)
    actions = np.asarray(actions, dtype=np.float32)
    success = np.asarray(success, dtype=bool)
    L = len(actions)
    assert frames.shape[0] == L + 1 and success.shape == (L + 1,), "frames/success need L+1 entries"
    atomic_write(path, lambda f: np.savez(f, frames=frames, actions=actions, success=success,
                                          task=np.array(task), source=np.array(source),
                                          seed=np.array(seed, dtype=np.int64)))


def load_episode(path: Path) -> dict[str, Any]:
    """Load one episode; a truncated or corrupt file is reported by name."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ep = {k: z[k] for k in ("frames", "actions", "success", "task", "source", "seed")}
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        fail(f"corrupt episode file {path} ({type(e).__name__}); delete it and rerun 01_collect.py to recollect it")
    ep["task"], ep["source"], ep["seed"] = str(ep["task"]), str(ep["source"]), int(ep["seed"])
    return ep


def write_meta(data_dir: Path, meta: dict[str, Any]) -> None:
    """Write dataset metadata, or check it matches what is already there."""
    p = Path(data_dir) / "meta.json"
    meta = {"format_version": DATA_FORMAT_VERSION, **meta}
    if p.exists():
        old = read_meta(data_dir)
        diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if diff:
            fail(f"{p} was written with other settings {diff} (theirs, yours); "
                 f"use another --data-dir or the same settings")
        return
    atomic_write(p, lambda f: f.write(json.dumps(meta, indent=2)), binary=False)


def read_meta(data_dir: Path) -> dict[str, Any]:
    p = Path(data_dir) / "meta.json"
    if not p.exists():
        fail(f"no dataset at {data_dir} (missing {p}); run 01_collect.py first")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        fail(f"corrupt dataset metadata {p}; delete it and rerun 01_collect.py")


def env_config_from_meta(meta: dict[str, Any]) -> EnvConfig:
    return EnvConfig(**{f.name: meta[f.name] for f in dataclasses.fields(EnvConfig)})


def is_heldout(path: Path, val_frac: float = 0.1) -> bool:
    """Stable train/held-out split by file name (the same for every stage and every run)."""
    return (stable_seed(Path(path).parent.name, Path(path).name) % 1000) < val_frac * 1000


def list_episodes(data_dir: Path, tasks: list[str] | None = None,
                  sources: tuple[str, ...] | None = None, split: str = "all",
                  val_frac: float = 0.1) -> list[Path]:
    """Episode files under `data_dir` (optionally for some tasks/sources/split), sorted."""
    read_meta(data_dir)
    dirs = [Path(data_dir) / task_slug(t) for t in tasks] if tasks else \
        [d for d in sorted(Path(data_dir).iterdir()) if d.is_dir()]
    paths = []
    for d in dirs:
        paths += sorted(p for p in d.glob("*.npz")
                        if sources is None or p.name.split("_")[0] in sources)
    if split == "train":
        paths = [p for p in paths if not is_heldout(p, val_frac)]
    elif split == "heldout":
        paths = [p for p in paths if is_heldout(p, val_frac)]
    if not paths:
        fail(f"no {split} episodes for tasks={tasks} sources={sources} in {data_dir}; run 01_collect.py first")
    return paths



# --------------------------------------------------------------------------------------
# Frames as tensors, and the transition sampler every training stage draws from
# --------------------------------------------------------------------------------------
def to_float(frames_u8):
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames_u8.movedim(-1, -3).float() / 127.5 - 1


def to_uint8(x):
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    import torch

    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)


class Transitions:
    """All frames of some episodes in one tensor; samples (history, actions, next frame) batches.

    Stage 2 trains the world model on them; stage 4 uses the same history of S frames (padded by
    repeating frame 0 before the episode start) and the newest action a_t as its (x, a) pairs."""

    def __init__(self, paths: list[Path], T: int):
        import torch
        from tqdm import tqdm

        eps = [load_episode(p) for p in tqdm(paths, desc="load episodes", leave=False)]
        self.frames = torch.from_numpy(np.concatenate([e["frames"] for e in eps]))  # (N, H, W, 3) uint8
        # one zero action after each episode's last, so actions line up with frames: (N, D)
        self.actions = torch.from_numpy(np.concatenate(
            [np.concatenate([e["actions"], np.zeros_like(e["actions"][:1])]) for e in eps]))
        lengths = torch.tensor([len(e["actions"]) for e in eps])
        self.starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), lengths[:-1] + 1]), 0)
        self.lengths, self.T, self.episodes = lengths, T, eps
        # Valid (episode, t) pairs: predict frame t+1 from frames <= t.
        self.index = torch.cat([torch.stack([torch.full((int(L),), i), torch.arange(int(L))], 1)
                                for i, L in enumerate(lengths)])

    def batch(self, n: int, gen):
        import torch

        ep, t = self.index[torch.randint(len(self.index), (n,), generator=gen)].T
        return self.gather(ep, t)

    def gather(self, ep, t):
        """History frames (n, T, 3, H, W), actions (n, T, D), mask (n, T), next frame (n, 3, H, W).
        Row -1 of the history is time t: frames[:, -1] = x_t and actions[:, -1] = a_t; mask 0 marks
        the padding before the episode start (its frames repeat x_0, its actions are 0)."""
        import torch

        offs = torch.arange(self.T) - self.T + 1  # -T+1 .. 0
        tt = t[:, None] + offs[None]  # (n, T)
        mask = (tt >= 0).float()
        idx = self.starts[ep][:, None] + tt.clamp(min=0)  # before the start: repeat frame 0
        frames = to_float(self.frames[idx])
        actions = self.actions[idx] * mask[..., None]
        x0 = to_float(self.frames[self.starts[ep] + t + 1])
        return frames, actions, mask, x0


# --------------------------------------------------------------------------------------
# Real-environment evaluation of a policy checkpoint (stages 4, 5, 6 and the benchmarks)
# --------------------------------------------------------------------------------------
def eval_seeds(n: int, offset: int = 0) -> list[int]:
    """Seeds for evaluation episodes: disjoint from the collection seeds by construction."""
    return [stable_seed("eval", i) for i in range(offset, offset + n)]


_EVAL_CACHE: tuple | None = None  # per worker process: (key, policy, env), reused across episodes


def _eval_worker(job: tuple) -> tuple[int, bool, int | None, np.ndarray | None]:
    load_policy, path, spec, cfg, seed, keep_frames, deterministic = job
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    global _EVAL_CACHE
    if _EVAL_CACHE is None or _EVAL_CACHE[0] != (path, spec):
        _EVAL_CACHE = ((path, spec), load_policy(Path(path)), make_env(spec, EnvConfig(**cfg)))
    _, pi, env = _EVAL_CACHE
    frames = [env.reset(seed)]
    rng = np.random.default_rng(seed)
    first = None
    for t in range(env.max_steps):
        frame, success = env.step(pi.act_np(frames, rng, deterministic))
        frames.append(frame)
        if success:  # an episode ends at its first success, as in every stage
            first = t + 1
            break
    return seed, first is not None, first, (np.stack(frames) if keep_frames else None)


def evaluate_real(load_policy: Callable[[Path], Any], policy_path: Path, spec: str, env_cfg: dict,
                  seeds: list[int], workers: int = 2, keep_frames: int = 0, deterministic: bool = True,
                  desc: str = "real eval") -> dict:
    """Run a policy checkpoint on seeded real episodes, `workers` processes with one env each.
    `load_policy(path)` (stage 4's) rebuilds the policy in each worker; it must have `act_np`.
    An episode succeeds at its first success and ends there."""
    from tqdm import tqdm

    jobs = [(load_policy, str(policy_path), spec, env_cfg, s, i < keep_frames, deterministic)
            for i, s in enumerate(seeds)]
    results, t0 = {}, time.time()
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        bar = tqdm(pool.imap_unordered(_eval_worker, jobs), total=len(jobs), desc=desc, unit="ep")
        for seed, ok, first, frames in bar:
            results[seed] = (ok, first, frames)
            bar.set_postfix(success=f"{np.mean([r[0] for r in results.values()]):.2f}", refresh=False)
    ordered = [results[s] for s in seeds]
    k = sum(r[0] for r in ordered)
    steps = [r[1] for r in ordered if r[1] is not None]
    return {"episodes": len(seeds), "successes": k, "success_rate": k / len(seeds),
            "ci95": wilson_interval(k, len(seeds)),
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
            "steps_to_success": [r[1] for r in ordered], "seconds": time.time() - t0,
            "frames": [r[2] for r in ordered[:keep_frames]]}


def real_start_frames(spec: str, env_cfg: dict, seeds: list[int]) -> np.ndarray:
    """The first frame of each seeded real episode, (n, H, W, 3) uint8: where stage 6 starts the
    imagined twin of each real evaluation episode (a reset and a render, no step)."""
    env = make_env(spec, EnvConfig(**env_cfg))
    try:
        return np.stack([env.reset(s) for s in seeds])
    finally:
        env.close()

# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------
def save_checkpoint(path: Path, stage: str, **payload: Any) -> None:
    """Atomically save a dict of tensors and plain values, tagged with the stage that wrote it."""
    import torch

    atomic_write(Path(path), lambda f: torch.save({"stage": stage, **payload}, f))


def load_checkpoint(path: Path, stage: str | tuple[str, ...], hint: str = "") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` and check which stage (or stages) wrote it."""
    import torch

    path = Path(path)
    if not path.exists():
        fail(f"missing checkpoint {path}; run {hint or stage} first")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle error, ...
        fail(f"corrupt checkpoint {path} ({type(e).__name__}); delete it and rerun {hint or stage}")
    stages = (stage,) if isinstance(stage, str) else stage
    if not isinstance(ck, dict) or ck.get("stage") not in stages:
        got = ck.get("stage") if isinstance(ck, dict) else type(ck).__name__
        fail(f"{path} is a checkpoint of stage '{got}', expected {' or '.join(stages)}; pass the output of {hint or stage}")
    return ck


def config_from_checkpoint(cls: type, ck: dict[str, Any], path: Path):
    """Rebuild a model's config dataclass (`cls`) from the dict a checkpoint saved with `asdict`."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    got = set(ck["config"])
    if not required <= got <= names:  # a field with a default may be missing: it takes the default
        fail(f"{path} holds a {cls.__name__} with fields {sorted((got - names) | (required - got))} that this "
             f"code does not match; it was written by another version of the stage: retrain it")
    return cls(**ck["config"])


def tensorboard_writer(run_dir: Path, args: Any):
    """A TensorBoard writer (or None when tensorboard is not installed), with the args logged."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    w = SummaryWriter(str(run_dir))
    w.add_text("args", "\n".join(f"{k}: {v}" for k, v in dataclasses.asdict(args).items()))
    return w


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, float(c - h)), min(1.0, float(c + h)))
