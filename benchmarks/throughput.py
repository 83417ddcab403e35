"""Throughput, measured in one run on one machine (ratios are what to compare across machines).

1. Collection: the bare simulator (physics steps + a fast headless render per decision, no
   policy, no saving) against the collector's own loop (`01_collect.run_episode` with the
   scripted expert, plus writing the episode), frames/s on one worker (one process).
2. Imagination (with `--run-dir`, which holds stage 2-4 checkpoints): the machine's matmul
   GFLOP/s in fp32 and bf16 (bf16 only on a CPU that runs it natively); FLOPs of one imagined
   transition (denoiser x sampler steps, classifier, policy); transitions/s of the whole imagined-env step (policy + world model +
   classifier) on the old path (fp32, 32 envs in one call, the 1.1 M-parameter U-Net with
   channels `--old-channels`, random weights: speed does not depend on them) and on the current
   default (the run's world model, `--precision auto`, 05's default number of envs); world-model
   training samples/s on the old path vs the default; and 05's PPO loop (rollout + update + its share of the stopping rule) against
   the bare imagined-env step at the same settings. On a CPU with bf16 units, the default step and
   world-model training are also timed forced to fp32: what a CPU without them, at the same fp32
   rate, would run.

    python benchmarks/throughput.py --task button-press --resolution 48 --episodes 10
    python benchmarks/throughput.py --run-dir runs/cpu --data-dir data/cpu --episodes 4 --out throughput.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """Meta-World task"""
    resolution: int = 48
    """frame size (collection part; with --run-dir the data's own)"""
    action_repeat: int = 4
    """physics steps per decision"""
    max_steps: int = 30
    """decisions per episode"""
    episodes: int = 10
    """episodes per collection measurement"""
    run_dir: Path | None = None
    """a run folder with world_model.pt and <task>/{reward,bc}.pt: also time imagination and PPO"""
    data_dir: Path = Path("data/cpu")
    """dataset of that run (start frames)"""
    device: str = "auto"
    """device for the models"""
    old_channels: tuple[int, ...] = (32, 64, 64, 64)
    """U-Net channels of the old path (the GPU profile's wider U-Net, run in fp32)"""
    out: Path | None = None
    """write the numbers as JSON here"""


def bare_simulator_fps(env: common.MetaWorldAdapter, episodes: int) -> float:
    """Physics + render only: random actions, nothing recorded."""
    rng = np.random.default_rng(0)
    t0, n = time.perf_counter(), 0
    for ep in range(episodes):
        env.env.seed(ep)
        env.env.reset()
        env.render()
        for _ in range(env.max_steps):
            a = rng.uniform(-1, 1, 4)
            for _ in range(env.action_repeat):
                env.env.step(a)
            env.render()
            n += 1
    return n / (time.perf_counter() - t0)


def collector_fps(env: common.MetaWorldAdapter, episodes: int) -> float:
    collect = common.import_stage("01_collect")
    t0, n = time.perf_counter(), 0
    with tempfile.TemporaryDirectory() as d:
        for ep in range(episodes):
            frames, actions, success = collect.run_episode(env, ep, "expert")
            common.save_episode(Path(d) / f"expert_{ep:04d}.npz", frames, actions, success, env.task, "expert", ep)
            n += len(actions)
    return n / (time.perf_counter() - t0)


# --- Imagination ------------------------------------------------------------------------------
def matmul_gflops(dtype, n: int = 2048, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def flops(fn) -> int:
    """FLOPs of one call (torch.utils.flop_counter counts matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timed(fn, warmup: int = 1, reps: int = 3) -> float:
    """Seconds per call of `fn`, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def imagined_env_step_tps(ppo, wm, clf, pi, starts, num_envs: int, steps: int = 8) -> float:
    """Transitions/s of the full imagined-env step: policy sample + world model + classifier."""
    import torch

    env = ppo.ImaginedEnv(wm, clf, starts, num_envs, 30, pi.cfg.frame_stack, torch.Generator().manual_seed(0))
    obs = env.reset()

    def step() -> None:
        nonlocal obs
        with torch.no_grad():
            a = pi.dist(obs).sample().clamp(-1, 1)
        obs, *_ = env.step(a)

    return num_envs / timed(step, warmup=1, reps=steps)


def wm_training_sps(wm_mod, cfg, precision: str, device, batch: int = 32, reps: int = 8) -> float:
    """World-model training samples/s (forward, backward, clip, AdamW) on batches of the data's shapes."""
    import torch

    D = wm_mod.Denoiser(cfg).to(device)
    opt = torch.optim.AdamW(D.parameters(), lr=3e-4)
    T, res, A = cfg.history, cfg.resolution, cfg.action_dim
    x0, frames = torch.randn(batch, 3, res, res, device=device), torch.randn(batch, T, 3, res, res, device=device)
    actions, mask = torch.rand(batch, T, A, device=device) * 2 - 1, torch.ones(batch, T, device=device)

    def train_step() -> None:
        with common.autocast(device, precision):
            loss = D.loss(x0, frames, actions, mask, -0.4, 1.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(D.parameters(), 1.0)
        opt.step()

    return batch / timed(train_step, warmup=2, reps=reps)


def ppo_loop(ppo, wm, clf, pi, train_starts, heldout_starts, args) -> dict:
    """One PPO iteration of 05 (rollout + GAE + update), plus one stopping-rule evaluation spread
    over `eval_every` iterations, as 05's loop runs them. Returns seconds of each part."""
    import torch

    critic = ppo.Critic(pi.cfg).to(wm.device)
    opt_pi = torch.optim.Adam(pi.parameters(), lr=args.learning_rate, eps=1e-5)
    opt_v = torch.optim.Adam(critic.parameters(), lr=args.critic_lr, eps=1e-5)
    env = ppo.ImaginedEnv(wm, clf, train_starts, args.num_envs, 30, pi.cfg.frame_stack,
                          torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    b, _, _ = ppo.collect_rollout(pi, critic, env, 30, args, {})
    t1 = time.perf_counter()
    ppo.ppo_update(pi, critic, opt_pi, opt_v, b, args, train_actor=True)
    t2 = time.perf_counter()
    ppo.imagined_success(pi, wm.scoring(), clf, heldout_starts, args.eval_episodes, 30)  # as 05 scores
    t3 = time.perf_counter()
    return {"rollout_s": t1 - t0, "update_s": t2 - t1, "stopping_rule_s_per_iteration": (t3 - t2) / args.eval_every}


def imagination(args: Args) -> dict:
    import torch

    wm_mod, ppo = common.import_stage("02_world_model"), common.import_stage("05_ppo_refine")
    reward_mod, bc_mod = common.import_stage("03_reward"), common.import_stage("04_bc")
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    wm = wm_mod.load_world_model(args.run_dir / "world_model.pt", device, task=args.task)
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device)
    pi = bc_mod.load_policy(task_dir / "bc.pt").to(device)
    train_starts = ppo.start_frames(args.data_dir, args.task, "train")
    heldout_starts = ppo.start_frames(args.data_dir, args.task, "heldout")
    res, S, T = wm.cfg.resolution, pi.cfg.frame_stack, wm.cfg.history
    # The matmuls run on the CPU. Without AVX-512 bf16 or AMX a bf16 matmul is emulated, about 70x
    # slower than fp32 (minutes at this size), and `--precision auto` never uses it: not measured there.
    bf16_cpu = common.bf16_fast(torch.device("cpu"))
    out: dict = {"matmul_gflops_fp32": matmul_gflops(torch.float32),
                 "matmul_gflops_bf16": matmul_gflops(torch.bfloat16) if bf16_cpu else None,
                 "bf16_fast_here": common.bf16_fast(device)}
    if bf16_cpu:
        print(f"matmul 2048x2048: fp32 {out['matmul_gflops_fp32']:.0f} GFLOP/s, bf16 {out['matmul_gflops_bf16']:.0f} "
              f"GFLOP/s ({out['matmul_gflops_bf16'] / out['matmul_gflops_fp32']:.1f}x)")
    else:
        print(f"matmul 2048x2048: fp32 {out['matmul_gflops_fp32']:.0f} GFLOP/s; bf16 not measured (emulated on this "
              f"CPU: no AVX-512 bf16 or AMX, so --precision auto runs fp32)")
    # The FLOP limit of the default path is the matmul rate of the precision it runs in.
    limit_dtype = "bf16" if out["bf16_fast_here"] else "fp32"
    limit_gflops = out[f"matmul_gflops_{limit_dtype}"]

    # The old path: the wider U-Net in fp32, 32 envs in one call.
    old_cfg = dataclasses.replace(wm.cfg, channels=tuple(args.old_channels))
    old_wm = wm_mod.WorldModel(wm_mod.Denoiser(old_cfg), device, "fp32")
    old_wm.chunk = 1 << 30

    # FLOPs of one imagined transition.
    hist = wm.start(train_starts[:1])
    x = torch.zeros(1, 3, res, res, device=device)
    f_clf = flops(lambda: clf(x))
    f_pi = flops(lambda: pi.dist(hist[0][:, -S:]))
    for name, m in (("old", old_wm), ("new", wm)):
        f_den = flops(lambda: m.D(x, torch.ones(1, device=device), *hist))
        per_transition = f_den * m.num_steps + f_clf + f_pi
        out[f"{name}_gflop_per_transition"] = per_transition / 1e9
        out[f"{name}_mflop_denoiser_forward"] = f_den / 1e6
        print(f"one imagined transition, {name} U-Net {list(m.cfg.channels)}: denoiser {f_den / 1e6:.0f} MFLOP x "
              f"{m.num_steps} steps, classifier {f_clf / 1e6:.1f}, policy {f_pi / 1e6:.1f} = "
              f"{per_transition / 1e9:.2f} GFLOP; FLOP limit {out['matmul_gflops_fp32'] / per_transition * 1e9:.0f}/s "
              f"fp32" + (f", {out['matmul_gflops_bf16'] / per_transition * 1e9:.0f}/s bf16" if bf16_cpu else ""))
    out["flop_limit_precision"] = limit_dtype
    out["flop_limit_transitions_per_s"] = limit_gflops / out["new_gflop_per_transition"]

    # The imagined-env step: old path against the default.
    default = ppo.Args()
    old = imagined_env_step_tps(ppo, old_wm, clf, pi, train_starts, 32)
    wm.precision = default.precision
    new = imagined_env_step_tps(ppo, wm, clf, pi, train_starts, default.num_envs)
    out.update(imagined_tps_old=old, imagined_tps_new=new, imagined_speedup=new / old,
               new_path=f"precision {default.precision}, {default.num_envs} envs, chunks of {min(wm.chunk, 4096)}",
               new_fraction_of_flop_limit=new / out["flop_limit_transitions_per_s"])
    print(f"imagined-env step: old path (fp32, U-Net {list(args.old_channels)}, 32 envs) {old:.0f}/s; default "
          f"({out['new_path']}) {new:.0f}/s: {new / old:.2f}x, {out['new_fraction_of_flop_limit']:.0%} of "
          f"the {limit_dtype} FLOP limit")
    if out["bf16_fast_here"]:
        # The default world model forced to fp32: what a CPU with this fp32 rate and no bf16 units
        # (no AVX-512 bf16, no AMX) would run, since `--precision auto` stays in fp32 there.
        wm.precision = "fp32"
        new_fp32 = imagined_env_step_tps(ppo, wm, clf, pi, train_starts, default.num_envs)
        wm.precision = default.precision
        out.update(imagined_tps_new_fp32=new_fp32, imagined_bf16_over_fp32=new / new_fp32)
        print(f"the same default step forced to fp32 (as on a CPU without bf16 units): {new_fp32:.0f}/s; "
              f"bf16 runs it {new / new_fp32:.2f}x faster")

    # World-model training.
    tr_old = wm_training_sps(wm_mod, old_cfg, "fp32", device)
    tr_new = wm_training_sps(wm_mod, wm.cfg, "auto", device)
    out.update(wm_train_sps_fp32=tr_old, wm_train_sps_default=tr_new, wm_train_speedup=tr_new / tr_old)
    print(f"world-model training, batch 32: old path {tr_old:.0f} samples/s, default {tr_new:.0f}: {tr_new / tr_old:.2f}x")
    if out["bf16_fast_here"]:
        tr_fp32 = wm_training_sps(wm_mod, wm.cfg, "fp32", device)
        out.update(wm_train_sps_default_fp32=tr_fp32, wm_train_bf16_over_fp32=tr_new / tr_fp32)
        print(f"the default world model trained in fp32 (as on a CPU without bf16 units): {tr_fp32:.0f} samples/s; "
              f"bf16 trains it {tr_new / tr_fp32:.2f}x faster")

    # 05's PPO loop against the bare step at the same settings.
    parts = ppo_loop(ppo, wm, clf, pi, train_starts, heldout_starts, default)
    steps = default.num_envs * 30
    loop = steps / sum(parts.values())
    out.update(ppo_parts_s=parts, ppo_loop_tps=loop, ppo_loop_over_bare_step=loop / new)
    print(f"05's loop at its defaults: {loop:.0f} training transitions/s = {loop / new:.0%} of the bare step "
          f"(rollout {parts['rollout_s']:.1f} s, update {parts['update_s']:.1f} s, stopping rule "
          f"{parts['stopping_rule_s_per_iteration']:.1f} s per iteration)")
    return out


def main(args: Args) -> dict:
    warnings.filterwarnings("ignore")
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "task": args.task}
    if args.run_dir:
        if not (args.run_dir / "world_model.pt").exists():
            common.fail(f"no world_model.pt in {args.run_dir}; run stages 2-4 there first (bash run_all.sh)")
        out.update(common.read_meta(args.data_dir))
        args.resolution = int(out["resolution"])
    env = common.MetaWorldAdapter(args.task, args.resolution, action_repeat=args.action_repeat,
                                  max_steps=args.max_steps)
    bare = bare_simulator_fps(env, args.episodes)
    coll = collector_fps(env, args.episodes)
    env.close()
    out.update(resolution=args.resolution, action_repeat=args.action_repeat, bare_simulator_frames_per_s=bare,
               collector_frames_per_s=coll, collector_share=coll / bare)
    print(f"{out['machine']}; one worker, {args.task} at {args.resolution}x{args.resolution}, repeat "
          f"{args.action_repeat}: bare simulator {bare:.1f} frames/s, collector {coll:.1f} frames/s ({coll / bare:.0%})")
    if args.run_dir:
        out.update(imagination(args))
        print(f"imagined over real simulator steps/s: {out['imagined_tps_new'] / bare:.2f}x")
    if args.out:
        common.atomic_write(args.out, lambda f: f.write(json.dumps(out, indent=1)), binary=False)
    return out


if __name__ == "__main__":
    common.run_main(main, Args)
