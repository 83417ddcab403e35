"""Stage 6 -- evaluation in the real simulator (or robot) (World4RL, Sec. IV, Tables I-III).

For every policy checkpoint (BC of stage 4, refined policies of stage 5), on the *same*
seeded real episodes: success rate with a 95% Wilson interval and steps to success. Then
the simulator-gap report: the same policy run in imagination (world model + classifier,
with the world model's scoring sampler, as stage 5's stopping rule scores) from the first
frame of each of those real episodes, so every real episode has an imagined
twin from the same start, side by side with its real numbers -- refinement can only be
trusted as far as these agree; and the classifier's per-step agreement on imagined vs real
frames of held-out episodes replayed open-loop. World-model fidelity (PSNR/SSIM vs
copy-last-frame, two-hot vs one-hot when both checkpoints exist). Videos of real rollouts,
of the world model's open loop against the real episode, and of the starts where the two worlds
disagree (real failure, imagined success: what refinement may be exploiting).

Reads the checkpoints of stages 2-5 and `data/cpu/<task>/`; writes
`runs/cpu/<task>/eval/results.json`, `results.md` and videos.

    python 06_eval.py --task button-press
        # bc: real 31.0% (22.8%-40.6%), imagined 37.0%
        # ppo_seed0/refined: real 48.0% (38.5%-57.7%), imagined 41.0%
        # then the tables of results.md                                          (~1 min on 2 cores)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import common

wm_mod = common.import_stage("02_world_model")
reward_mod = common.import_stage("03_reward")
bc_mod = common.import_stage("04_bc")
ppo_mod = common.import_stage("05_ppo_refine")


@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task to evaluate on"""
    data_dir: Path = Path("data/cpu")
    """dataset of stage 1 (held-out episodes and start frames)"""
    run_dir: Path = Path("runs/cpu")
    """where stages 2-5 wrote their checkpoints"""
    policies: list[Path] = dataclasses.field(default_factory=list)
    """policy checkpoints to compare (default: <task>/bc.pt and every <task>/ppo_seed*/refined.pt)"""
    episodes: int = 100
    """seeded real episodes per policy (the same seeds for each)"""
    imagined_episodes: int = 100
    """imagined episodes per policy for the simulator-gap report, each from the first frame of a real
    evaluation episode (episode j from real episode j mod --episodes: a multiple K of --episodes gives
    every start K world-model samples, averaged per start, a less noisy gap; 0: skip)"""
    fidelity_horizon: int = 16
    """H of the open-loop fidelity evaluation"""
    videos: int = 3
    """real episodes per policy saved as video, and as many starts where the real episode fails and
    its imagined twin succeeds (disagree_<policy>.mp4: real on top, imagined below)"""
    workers: int = 2
    """processes for the real evaluation"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """the world model's sampling (imagined column, fidelity), as in 02 and 05"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""
    seed: int = 0
    """offset of the evaluation seeds"""


def label(path: Path, task_dir: Path) -> str:
    try:
        return str(Path(path).relative_to(task_dir).with_suffix(""))
    except ValueError:
        return str(path)


def default_policies(task_dir: Path) -> list[Path]:
    """BC (stage 4) and every refined policy of stage 5 in a task's run folder."""
    return [task_dir / "bc.pt", *sorted(task_dir.glob("ppo_seed*/refined.pt"))]


def mean_action_weights(path: Path) -> dict:
    """The weights that decide a policy's mean action: all but log_std. The evaluation acts with
    the mean, so two checkpoints equal here (a refined.pt whose stopping rule kept BC) score alike."""
    sd = common.load_checkpoint(Path(path), ("bc", "ppo"), "04_bc.py or 05_ppo_refine.py")["policy"]
    return {k: v for k, v in sd.items() if k != "log_std"}


def simulator_gap(real: dict, imagined: dict) -> dict:
    """How far imagination (world model + classifier) is from the real env for one policy.
    `trusted` when the two success rates' 95% intervals overlap."""
    (rl, rh), (il, ih) = real["ci95"], imagined["ci95"]
    r_steps, i_steps = real["mean_steps_to_success"], imagined["mean_steps_to_success"]
    return {"success_gap": imagined["success_rate"] - real["success_rate"],
            "steps_to_success_gap": (i_steps - r_steps) if r_steps is not None and i_steps is not None else None,
            "trusted": bool(il <= rh and rl <= ih)}


def paired_gap_interval(r_ok, i_ok) -> tuple[float, float, float]:
    """Imagined minus real success over paired starts, with a 95% normal interval on the per-start
    differences d_i = i_i - r_i (i_i: the start's imagined success, 0/1 or the fraction of its world-model
    samples that succeed): mean(d) +- 1.96 sd(d) / sqrt(n). Pairing removes the starts' own difficulty,
    so the interval is as narrow as the two worlds' disagreement allows."""
    d = np.asarray(i_ok, dtype=float) - np.asarray(r_ok, dtype=float)  # (n,)
    n = len(d)
    half = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("inf")
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def per_start_share(i_ok, n: int) -> np.ndarray:
    """(n,) share of each start's imagined episodes that succeed; imagined episode j (of K n) starts from j % n."""
    start = np.arange(len(i_ok)) % n
    return np.bincount(start, weights=np.asarray(i_ok, dtype=float), minlength=n) / np.bincount(start, minlength=n)


def paired_outcomes(r_ok: list[bool], i_ok: list[bool]) -> dict:
    """Real outcome per start r_ok (n,) against imagined outcomes i_ok (m,), m >= n, where imagined
    episode j starts from start j % n: with m = K n, each start has K world-model samples. Each start
    counts once, its imagined success being the fraction p_i of its samples that succeed, so the 2x2
    table sums to n and the counts are averages over the samples (integers when K = 1)."""
    r = np.asarray(r_ok, dtype=bool)  # (n,)
    i = np.asarray(i_ok, dtype=float)  # (m,)
    n, p = len(r), per_start_share(i, len(r))  # (n,) p_i
    cell = lambda rr, ii: f"real_{'success' if rr else 'fail'}_imagined_{'success' if ii else 'fail'}"  # noqa: E731
    table = {cell(True, True): p[r].sum(), cell(True, False): (1 - p[r]).sum(),
             cell(False, True): p[~r].sum(), cell(False, False): (1 - p[~r]).sum()}
    return {"episodes": n, "samples_per_start": len(i) / n, "real_successes": int(r.sum()),
            "imagined_successes": float(p.sum()), "table": {k: float(v) for k, v in table.items()},
            "gap_ci95": paired_gap_interval(r, p), "agreement": float(np.where(r, p, 1 - p).mean())}


def paired_gap(real: dict, imagined: dict, real_frames: list[np.ndarray], clf) -> dict:
    """The same policy from the *same* starts in both worlds: real episode i and imagined episode i
    (and i + n, i + 2n, ... when there are several imagined episodes per start) begin at the same frame.
    Returns the 2x2 table of outcomes (paired_outcomes), so a gap is seen per start (e.g.
    real near misses that imagination scores as successes), not only on average; and how many
    real failures the classifier would call a success on their *real* frames (if many, the gap is
    the classifier's; if few, the world model's), with the same split of each kind of error
    (05's classifier_split)."""
    n = len(real_frames)
    r_ok = [s is not None for s in real["steps_to_success"][:n]]
    i_ok = np.asarray([s is not None for s in imagined["steps_to_success"]], dtype=float)  # (K n,)
    out = paired_outcomes(r_ok, i_ok)
    share = per_start_share(i_ok, n)  # (n,)
    dev = next(clf.parameters()).device
    real_fire = [bool(reward_mod.predict(clf, f, dev).max() > clf.cfg.threshold) for f in real_frames]  # (n,)
    out.update(ppo_mod.classifier_split(r_ok, share, real_fire))  # whose errors: classifier or world model
    return out


def compare_to_bc(bc: dict, refined: dict) -> dict:
    """The headline for one refined policy, on the same seeded real episodes as BC: the gain in
    points, whether the two 95% intervals are disjoint (a clear improvement), and whether it fell
    below BC by more than BC's interval (refinement that went backwards)."""
    (bl, bh), (rl, rh) = bc["ci95"], refined["ci95"]
    gain = refined["success_rate"] - bc["success_rate"]
    return {"gain": gain, "improved": bool(rl > bh), "worse": bool(refined["success_rate"] < bl),
            "intervals_overlap": bool(rl <= bh and bl <= rh)}


def save_rollout_video(path: Path, frames: list[np.ndarray], scale: int = 4) -> None:
    L = max(len(f) for f in frames)
    padded = [np.concatenate([f, np.repeat(f[-1:], L - len(f), 0)]) for f in frames]  # hold the last frame
    grid = np.concatenate(padded, axis=2).repeat(scale, 1).repeat(scale, 2)  # episodes side by side
    common.save_video(path, grid, fps=8)


def save_disagreement_video(path: Path, real: dict, imagined: dict, real_frames: list[np.ndarray],
                            imagined_frames: list[np.ndarray], n: int) -> int:
    """Up to n paired starts where the real episode fails and its imagined twin succeeds: real on
    top, imagined below, each held at its last frame. These are the states refinement may be
    exploiting; one look tells a classifier that fires on real frames from a world model that
    imagines a success the simulator does not make. Returns how many were saved (no file if 0)."""
    pick = [i for i in range(len(real_frames))
            if real["steps_to_success"][i] is None and imagined["steps_to_success"][i] is not None][:n]
    if not pick:
        return 0
    pairs = []
    for i in pick:
        r, im = real_frames[i], imagined_frames[i]  # (L+1, H, W, 3) uint8 each
        L = max(len(r), len(im))
        hold = lambda f: np.concatenate([f, np.repeat(f[-1:], L - len(f), 0)])  # noqa: E731
        pairs.append(np.concatenate([hold(r), hold(im)], axis=1))  # (L, 2H, W, 3)
    save_rollout_video(path, pairs)
    return len(pick)


def markdown(results: dict) -> str:
    im_cfg = results.get("imagination")
    lines = [f"### {results['task']}: real success on {results['episodes']} seeded episodes"
             + (f"; imagined with {im_cfg['denoising_steps']} {im_cfg['sampler']} steps per frame" if im_cfg else ""),
             "", "| policy | real success | 95% CI | mean steps to success | imagined success | imagined 95% CI | "
             "imagined steps to success | gap (imagined - real) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results["policies"].items():
        re, im = r["real"], r.get("imagined")
        steps = f"{re['mean_steps_to_success']:.1f}" if re["mean_steps_to_success"] else "-"
        ims = "- | - | - | -"
        if im:
            g = r["gap"]
            i_steps = f"{im['mean_steps_to_success']:.1f}" if im["mean_steps_to_success"] else "-"
            ims = (f"{im['success_rate']:.1%} | {im['ci95'][0]:.1%}-{im['ci95'][1]:.1%} | {i_steps} | "
                   f"{g['success_gap']:+.1%}{'' if g['trusted'] else ' (intervals do not overlap)'}")
        twin = f" (= {r['same_mean_action_as']}: same mean action)" if "same_mean_action_as" in r else ""
        lines.append(f"| {name}{twin} | {re['successes']}/{re['episodes']} = {re['success_rate']:.1%} | "
                     f"{re['ci95'][0]:.1%}-{re['ci95'][1]:.1%} | {steps} | {ims} |")
    paired = {n: r["paired"] for n, r in results["policies"].items() if "paired" in r}
    if paired:
        k = max(q.get("samples_per_start", 1) for q in paired.values())
        lines += ["", "Per start (real episode i and imagined episode i begin at the same frame"
                  + (f"; {k:g} imagined episodes per start, counted as their average" if k > 1 else "") + "):", "",
                  "| policy | starts | real successes | imagined successes | real fail, imagined success | "
                  "real success, imagined fail | agreement | imagined - real, paired 95% CI | "
                  "classifier fires on real frames of real failures | the classifier's share of the real fail, "
                  "imagined success (fires on the real frames) | of the real success, imagined fail: the classifier silent "
                  "on the real frames up to the simulator's success (the rest the world model's) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        c = lambda x: f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"  # noqa: E731 (averaged counts)
        for n, q in paired.items():
            t = q["table"]
            gap, lo, hi = q["gap_ci95"]
            lines.append(f"| {n} | {q['episodes']} | {q['real_successes']} | "
                         f"{c(q['imagined_successes'])} | {c(t['real_fail_imagined_success'])} | "
                         f"{c(t['real_success_imagined_fail'])} | {q['agreement']:.0%} | "
                         f"{gap * 100:+.0f} ({lo * 100:+.0f} to {hi * 100:+.0f}) | "
                         f"{q['classifier_fires_on_real_failures']} of {q['episodes'] - q['real_successes']} | "
                         + (f"{c(q['false_positives_classifier'])} | {c(q['misses_classifier'])} |"
                            if "misses_classifier" in q else "- | - |"))  # results from before the split
    if results.get("vs_bc"):
        lines += ["", "| refined policy | real gain over BC | verdict |", "| --- | --- | --- |"]
        for name, c in results["vs_bc"].items():
            verdict = ("better: the 95% intervals do not overlap" if c["improved"] else
                       "worse: below BC's 95% interval" if c["worse"] else "not distinguishable from BC")
            lines.append(f"| {name} | {c['gain'] * 100:+.1f} points | {verdict} |")
    for name, c in results.get("ppo_curves", {}).items():
        its = c["iterations"]
        speed = (f"{c['imagined_steps_per_s']:.1f} imagined steps/s; time share "
                 + ", ".join(f"{k} {v:.0%}" for k, v in c["time_share"].items()) if c["imagined_steps_per_s"]
                 else "no PPO iteration ran")
        lines += ["", f"Refinement `{name}` in imagination (iteration 0 = BC; kept: iteration {c['kept']}; {speed}):", "",
                  "| iteration | " + " | ".join(str(r["iteration"]) for r in its) + " |",
                  "| --- |" + " --- |" * len(its),
                  "| imagined success, training (sampled actions) | "
                  + " | ".join(f"{r['imagined_train_success']:.2f}" if "imagined_train_success" in r else "-" for r in its) + " |",
                  "| imagined success, held-out starts (mean action) | "
                  + " | ".join(f"{r['imagined_heldout_success']:.2f}" if "imagined_heldout_success" in r else "-"
                               for r in its) + " |",
                  "| mean-action shift from BC, held-out frames | "
                  + " | ".join(f"{r['mean_action_shift']:.3f}" if "mean_action_shift" in r else "-" for r in its) + " |"]
    if "classifier_agreement" in results:
        a = results["classifier_agreement"]
        lines += ["", f"Classifier on imagined vs real frames of {a['episodes']} held-out episodes replayed "
                      f"open-loop: per-step agreement {a['per_step_agreement']:.1%}; successes real "
                      f"{a['real_successes']}, imagined {a['imagined_successes']}; mean first-success gap "
                      f"{a['mean_first_success_gap_steps']} steps."]
    for name, f in results.get("fidelity", {}).items():
        lines += ["", f"World model `{name}`, {f['horizon']}-step open loop from t0={f['t0']} "
                      f"({f['episodes']} held-out episodes): PSNR {np.mean(f['psnr_model']):.2f} dB "
                      f"(copy-last {np.mean(f['psnr_copy_last']):.2f}), SSIM {np.mean(f['ssim_model']):.3f} "
                      f"(copy-last {np.mean(f['ssim_copy_last']):.3f}).", "",
                  "| step | " + " | ".join(str(h + 1) for h in range(f["horizon"])) + " |",
                  "| --- |" + " --- |" * f["horizon"]]
        for key, fmt in (("psnr_model", ".1f"), ("psnr_copy_last", ".1f"), ("ssim_model", ".3f"),
                         ("ssim_copy_last", ".3f")):
            lines.append(f"| {key} | " + " | ".join(format(v, fmt) for v in f[key]) + " |")
    return "\n".join(lines) + "\n"


def main(args: Args) -> dict:
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    task_dir = args.run_dir / common.task_slug(args.task)
    policies = args.policies or default_policies(task_dir)
    policies = [p for p in policies if Path(p).exists()] or common.fail(
        f"no policy checkpoints in {task_dir}; run 04_bc.py (and 05_ppo_refine.py) first")
    out = task_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    seeds = common.eval_seeds(args.episodes, offset=args.seed * 100_000)
    results: dict = {"task": args.task, "episodes": args.episodes, "policies": {}, "fidelity": {}}
    wm_path = args.run_dir / "world_model.pt"
    wm = wm_mod.load_world_model(wm_path, device, task=args.task, precision=args.precision) if wm_path.exists() else None
    clf = reward_mod.load_reward(task_dir / "reward.pt").to(device) if (task_dir / "reward.pt").exists() else None
    heldout = [common.load_episode(p) for p in common.list_episodes(args.data_dir, [args.task], split="heldout")]

    # --- 1. Real success of each policy on the same seeded episodes ---
    imagine = wm is not None and clf is not None and args.imagined_episodes > 0
    if imagine:  # policies are scored with the world model's scoring sampler, as 05's stopping rule scores them
        wm_score = wm.scoring()
        results["imagination"] = {"denoising_steps": wm_score.num_steps, "sampler": wm_score.sampler}
    n_paired = min(args.imagined_episodes, args.episodes) if imagine else 0
    done: dict[str, dict] = {}  # name -> mean-action weights of the policies already evaluated
    for p in policies:
        name = label(p, task_dir)
        w = mean_action_weights(p)
        twin = next((n for n, v in done.items() if v.keys() == w.keys() and all(torch.equal(v[k], w[k]) for k in w)), None)
        if twin is not None:  # same mean action, same seeds, same imagination noise: same numbers
            results["policies"][name] = {**results["policies"][twin], "path": str(p), "same_mean_action_as": twin}
            print(f"{name}: acts as {twin} (the stopping rule kept it); its results are {twin}'s, not re-run")
            continue
        done[name] = w
        pi = bc_mod.load_policy(p)
        r = common.evaluate_real(bc_mod.load_policy, p, args.task, pi.cfg.env, seeds, args.workers,
                                 keep_frames=max(args.videos, n_paired), desc=f"real {name}")
        frames = r.pop("frames")  # [(L+1, H, W, 3) uint8] of the first real episodes
        if args.videos and frames:
            save_rollout_video(out / f"real_{name.replace('/', '_')}.mp4", frames[:args.videos])
        results["policies"][name] = {"path": str(p), "real": r}
        # --- 2. The same policy in imagination, from the same starts (the simulator gap) ---
        if imagine:
            starts = torch.from_numpy(np.stack([f[0] for f in frames[:n_paired]]))  # (n, H, W, 3)
            im = ppo_mod.imagined_success(pi.to(device), wm_score, clf, starts, args.imagined_episodes,
                                          int(pi.cfg.env["max_steps"]), keep_frames=args.videos > 0)
            im_frames = im.pop("frames", [])
            if im_frames:
                save_disagreement_video(out / f"disagree_{name.replace('/', '_')}.mp4", r, im,
                                        frames[:n_paired], im_frames, args.videos)
            results["policies"][name]["imagined"] = im
            results["policies"][name]["gap"] = simulator_gap(r, im)
            results["policies"][name]["paired"] = paired_gap(r, im, frames[:n_paired], clf)
        print(f"{name}: real {r['success_rate']:.1%} ({r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})"
              + (f", imagined {im['success_rate']:.1%}" if imagine else ""))

    for log_path in sorted(task_dir.glob("ppo_seed*/log.json")):
        lg = json.loads(log_path.read_text())
        if "best" in lg:  # a finished run
            its = [{"iteration": 0, "imagined_heldout_success": lg["bc_imagined"]["success_rate"],
                    "mean_action_shift": 0.0}, *lg["iterations"]]
            results.setdefault("ppo_curves", {})[log_path.parent.name] = {
                "iterations": its, "kept": lg["best"]["iteration"], "time_share": lg["time_share"],
                "imagined_steps_per_s": lg["imagined_steps_per_s"]}
    bc_name = label(task_dir / "bc.pt", task_dir)
    if bc_name in results["policies"]:
        results["vs_bc"] = {n: compare_to_bc(results["policies"][bc_name]["real"], r["real"])
                            for n, r in results["policies"].items() if n != bc_name}

    # --- 3. Classifier agreement and world-model fidelity on held-out episodes ---
    if wm is not None and clf is not None:
        results["classifier_agreement"] = reward_mod.imagined_agreement(clf, wm, heldout)
    for ck in sorted(args.run_dir.glob("world_model*.pt")):
        m = wm_mod.load_world_model(ck, device, task=args.task, precision=args.precision)
        L = min(len(e["actions"]) for e in heldout)
        H = min(args.fidelity_horizon, L)
        results["fidelity"][ck.stem] = wm_mod.evaluate_fidelity(m, heldout, H, 0)
        if ck == wm_path:
            imagined, real = wm_mod.open_loop(m, heldout[:4], 0, L)
            wm_mod.write_video(out / "world_model_real_vs_imagined.mp4", real, imagined)
    common.atomic_write(out / "results.json", lambda f: f.write(json.dumps(results, indent=1)), binary=False)
    md = markdown(results)
    common.atomic_write(out / "results.md", lambda f: f.write(md), binary=False)
    print(md)
    return results


if __name__ == "__main__":
    common.run_main(main, Args)
