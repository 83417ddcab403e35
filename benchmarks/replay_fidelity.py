"""Which sampler sees a policy's own real episodes as the simulator saw them?

Imagined success can differ from real success for two reasons: the world model renders the states a
policy reaches badly (one step at a time), or small errors compound once imagined frames are fed
back (closed loop). This separates them, per sampler, on each policy's real episodes (06's seeds):

- teacher-forced: every next frame x_{t+1} imagined from the *real* history x_{<=t} and the real
  action a_t. Its PSNR against the real x_{t+1}, and whether the classifier fires on it: on the
  success frame of each real success (the simulator said success there), and anywhere in each real
  failure (a success the simulator never saw);
- open loop: the real actions a_0..a_{L-1} replayed from x_0 alone, imagined frames fed back, as an
  imagined episode is, but with the actions fixed. Success: the classifier fires within the real
  episode's length L.

The real actions are the policy's mean actions (06 evaluates deterministically), recomputed from the
real frames. The classifier is also read on the real frames themselves, the reference for both. Docs: docs/RESULTS.md, "Where the samplers part".

    python benchmarks/replay_fidelity.py --task button-press --denoising-steps 3 10 \\
        --out benchmarks/results/scoring-sampler-cpu/replay_eval_starts
        # BC and every ppo_seed*/refined.pt on 06's 100 starts; ~2 min per policy on 2 cores
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

wm_mod = common.import_stage("02_world_model")
reward_mod = common.import_stage("03_reward")
bc_mod = common.import_stage("04_bc")
eval_mod = common.import_stage("06_eval")


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task"""
    run_dir: Path = Path("runs/cpu")
    """holds world_model.pt and <task>/reward.pt"""
    policies: list[Path] = dataclasses.field(default_factory=list)
    """policy checkpoints (default: <task>/bc.pt and every <task>/ppo_seed*/refined.pt)"""
    episodes: int = 100
    """real episodes per policy"""
    seed_offset: int = 0
    """evaluation seeds common.eval_seeds(episodes, seed_offset): 0 is 06_eval.py's"""
    denoising_steps: tuple[int, ...] = (3, 10)
    """Euler steps per frame of each sampler compared"""
    noise_seed: int = 1234
    """world-model sampling noise seed, as 06 uses"""
    workers: int = 2
    """processes for the real episodes"""
    out: Path | None = None
    """also write the table and the numbers here (.md and .json)"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""


@torch.no_grad()
def real_actions(pi, frames: np.ndarray) -> torch.Tensor:
    """The deterministic policy's actions along one real episode: frames (L+1, H, W, 3) uint8 -> (L, D),
    a_t from the last S frames up to x_t, the start padded with x_0 as `act_np` pads it."""
    S, L = pi.cfg.frame_stack, len(frames) - 1
    idx = (torch.arange(L)[:, None] - S + 1 + torch.arange(S)[None]).clamp(min=0)  # (L, S)
    x = common.to_float(torch.from_numpy(frames))[idx]  # (L, S, 3, H, W)
    dev = next(pi.parameters()).device
    return torch.cat([pi.dist(xb.to(dev)).mean.clamp(-1, 1).cpu() for xb in x.split(256)])


@torch.no_grad()
def replay(wm, clf, frames: list[np.ndarray], actions: list[torch.Tensor], teacher: bool,
           noise_seed: int = 1234) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Imagine every episode's frames x_1..x_L under its real actions, all episodes in lockstep.
    teacher: each step conditions on the real history (one-step predictions); else on the imagined
    one (open loop). Returns per episode the classifier's verdicts (L,) bool and PSNR (L,) against the
    real frames."""
    with common.fixed_noise(noise_seed):  # the same world-model samples on every call
        Ls = [len(a) for a in actions]
        D = actions[0].shape[1]
        hist = wm.start(torch.from_numpy(np.stack([f[0] for f in frames])))
        fires = [np.zeros(L, dtype=bool) for L in Ls]
        psnr = [np.zeros(L) for L in Ls]
        dev = next(clf.parameters()).device
        for t in tqdm(range(max(Ls)), desc="teacher-forced" if teacher else "open loop", unit="step", leave=False):
            live = torch.tensor([L > t for L in Ls])
            a_t = torch.stack([a[t] if L > t else torch.zeros(D) for a, L in zip(actions, Ls)])  # (n, D)
            hist = wm.push(hist, None, a_t)
            real_next = common.to_float(torch.from_numpy(np.stack([f[min(t + 1, len(f) - 1)] for f in frames])))
            on = live.to(wm.device)
            x = real_next.to(wm.device, copy=True)  # finished episodes keep their last real frame
            x[on] = wm.step(*(h[on] for h in hist))
            ok = clf.success(x[on].to(dev)).cpu().numpy()
            p = wm_mod.psnr(x[on].cpu(), real_next[live]).numpy()
            for j, i in enumerate(live.nonzero()[:, 0].tolist()):
                fires[i][t], psnr[i][t] = ok[j], p[j]
            hist = wm.push(hist, real_next if teacher else x, None)
    return fires, psnr


def summarise(r_ok: np.ndarray, fires: list[np.ndarray], psnr: list[np.ndarray]) -> dict:
    """The numbers of one (policy, sampler, mode): success frames read as success (real successes),
    episodes with a fire anywhere (real successes and real failures), PSNR over all imagined frames and
    over the success frames."""
    succ, fail = np.flatnonzero(r_ok), np.flatnonzero(~r_ok)
    return {"success_frame_fires": int(sum(fires[i][-1] for i in succ)),
            "fires_in_successes": int(sum(fires[i].any() for i in succ)),
            "fires_in_failures": int(sum(fires[i].any() for i in fail)),
            "psnr": float(np.concatenate(psnr).mean()),
            "psnr_success_frame": float(np.mean([psnr[i][-1] for i in succ])) if len(succ) else None}


def markdown(results: dict, task: str, episodes: int, offset: int) -> str:
    lines = [f"{task}: each policy's {episodes} real episodes (eval seeds from offset {offset}) replayed "
             "through the world model with their real actions", "",
             "| policy | sampler | real successes | success frame read as success: real frame | teacher-forced "
             "| real failures with a fire: real frames | teacher-forced | teacher-forced PSNR, dB (all; success "
             "frames) | open loop, fires within L: real successes | real failures |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in results.items():
        k, n_fail = row["real"], episodes - row["real"]
        for steps, s in row["samplers"].items():
            tf, ol = s["teacher_forced"], s["open_loop"]
            sf = "-" if tf["psnr_success_frame"] is None else f"{tf['psnr_success_frame']:.1f}"
            lines.append(f"| {name} | {steps} Euler steps | {k} | {row['real_success_frame_fires']} of {k} "
                         f"| {tf['success_frame_fires']} of {k} | {row['real_fires_in_failures']} of {n_fail} "
                         f"| {tf['fires_in_failures']} of {n_fail} "
                         f"| {tf['psnr']:.1f}; {sf} | {ol['fires_in_successes']} of {k} "
                         f"| {ol['fires_in_failures']} of {n_fail} |")
    return "\n".join(lines)


def main(args: Args) -> dict:
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    policies = args.policies or eval_mod.default_policies(task_dir)
    for p in policies:
        if not Path(p).exists():
            common.fail(f"{p} does not exist; give --policies that exist or run 04_bc.py / 05_ppo_refine.py first")
    if not args.denoising_steps or min(args.denoising_steps) < 1:
        common.fail(f"--denoising-steps {args.denoising_steps}: give one or more numbers of Euler steps, each 1 or more")
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device).eval()
    wm = wm_mod.load_world_model(args.run_dir / "world_model.pt", device, task=args.task)
    env_cfg = bc_mod.load_policy(policies[0]).cfg.env
    seeds = common.eval_seeds(args.episodes, args.seed_offset)
    results = {}
    for p in policies:
        name = eval_mod.label(p, task_dir)
        real = common.evaluate_real(bc_mod.load_policy, p, args.task, env_cfg, seeds, args.workers,
                                    keep_frames=args.episodes, desc=f"real {name}")
        frames = real["frames"]  # [(L+1, H, W, 3) uint8]: an episode ends at its first success
        r_ok = np.array([s is not None for s in real["steps_to_success"]])
        pi = bc_mod.load_policy(p).to(device)
        actions = [real_actions(pi, f) for f in frames]
        on_real = [clf.success(common.to_float(torch.from_numpy(f[1:])).to(device)).cpu().numpy() for f in frames]
        row = {"real": int(r_ok.sum()), "real_per_start": r_ok.tolist(),
               "real_success_frame_fires": int(sum(on_real[i][-1] for i in np.flatnonzero(r_ok))),
               "real_fires_in_failures": int(sum(on_real[i].any() for i in np.flatnonzero(~r_ok))),
               "samplers": {}}
        for steps in args.denoising_steps:
            m = wm.with_sampler(steps)
            row["samplers"][steps] = {mode: summarise(r_ok, *replay(m, clf, frames, actions, teacher, args.noise_seed))
                                      for mode, teacher in (("teacher_forced", True), ("open_loop", False))}
        results[name] = row
        print(markdown({name: row}, args.task, args.episodes, args.seed_offset).splitlines()[-1])
    text = markdown(results, args.task, args.episodes, args.seed_offset)
    print(text)
    if args.out:
        common.atomic_write(args.out.with_suffix(".md"), lambda f: f.write(text + "\n"), binary=False)
        common.atomic_write(args.out.with_suffix(".json"), lambda f: f.write(json.dumps(results, indent=1)), binary=False)
    return results


if __name__ == "__main__":
    common.run_main(main, Args)
