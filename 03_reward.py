"""Stage 3 -- the sparse reward: a binary success classifier on frames (World4RL, Sec. III-C, Eq. 3).

The world model produces frames, not rewards, so the paper trains a classifier
R_psi(x_{t+1}) in {0, 1} on labelled frames of the task with binary cross-entropy:

    L(psi) = -E[ y log sigma(R_psi(x)) + (1 - y) log(1 - sigma(R_psi(x))) ]

Success frames are few, so positives are up-weighted by the negative/positive ratio. The
decision threshold is chosen on validation episodes (max F1) and stored in the checkpoint;
held-out episodes, never trained on, give precision / recall / F1. If a world model exists,
the classifier is also scored on imagined frames of held-out episodes replayed open-loop
(agreement with its verdict on the aligned real frames): the reward must work on the
frames it will actually see during refinement.

Reads `data/cpu/<task>/` (stage 1) and, if there, `runs/cpu/world_model.pt` (stage 2); writes
`runs/cpu/<task>/reward.pt` and `reward_metrics.json`. Departures from the paper (labels that stay
on after the first success, the class weight): docs/DEVIATIONS.md, "Reward".

    python 03_reward.py --task button-press
        # held-out (33 episodes, 1023 frames, 187 successes): precision 0.964 recall 0.995 F1 0.979 ...
        # on imagined frames of held-out episodes: per-step agreement with real verdicts 0.983 ...
        #                                                                          (~1 min on 2 cores)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import common

wm_mod = common.import_stage("02_world_model")  # open-loop replay for the imagined-frame check

@dataclasses.dataclass
class Args:
    task: str = "button-press"
    """the task whose success is classified"""
    data_dir: Path = Path("data/cpu")
    """dataset written by 01_collect.py"""
    run_dir: Path = Path("runs/cpu")
    """checkpoints go to <run-dir>/<task>/reward.pt; <run-dir>/world_model.pt, if there, is used to
    check the classifier on imagined frames"""
    labels: Literal["reached", "per-step", "agree"] = "reached"
    """`reached`: a frame is a success from the episode's first success on (what every stage scores:
    an episode ends at its first success); `per-step`: the simulator's flag at that frame, which can
    drop back after the success (a lever that settles back, a ball that rolls on); `agree`: the flag,
    with the frames where the two disagree (after the first success, flag dropped) left out of
    training and metrics -- no stage scores them, and they look like neither class"""
    channels: tuple[int, ...] = (32, 64, 64)
    """CNN channels (each layer halves the resolution)"""
    steps: int = 3000
    """optimizer steps"""
    batch_size: int = 64
    """frames per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """the world model's sampling for the check on imagined frames, as in 02 (the classifier trains in fp32)"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""
    seed: int = 0
    """seed for initialisation and batches"""


@dataclasses.dataclass
class RewardConfig:
    """What rebuilds a trained classifier; saved in its checkpoint with `asdict`."""

    channels: tuple[int, ...]
    resolution: int
    threshold: float  # a frame is a success when sigma(R_psi(x)) > threshold (chosen on validation)
    labels: str
    task: str
    env: dict  # common.EnvConfig of the data, as a dict

    def __post_init__(self):
        self.channels = tuple(self.channels)


# --- 1. The classifier R_psi -------------------------------------------------------------
class RewardClassifier(nn.Module):
    """Frame (B, 3, H, W) in [-1, 1] -> success logit (B,)."""

    def __init__(self, cfg: RewardConfig):
        super().__init__()
        self.cfg = cfg
        layers, c = [], 3
        for c_next in cfg.channels:
            layers += [nn.Conv2d(c, c_next, 3, stride=2, padding=1), nn.GroupNorm(8, c_next), nn.SiLU()]
            c = c_next
        # Keep the spatial map: success is about *where* small objects are (the mug at the goal).
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Linear(c * 36, 128),
                                 nn.SiLU(), nn.Linear(128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def success(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean verdict at the stored threshold, (B,)."""
        return torch.sigmoid(self(x)) > self.cfg.threshold


def load_reward(path: Path) -> RewardClassifier:
    ck = common.load_checkpoint(path, "reward", "03_reward.py")
    clf = RewardClassifier(common.config_from_checkpoint(RewardConfig, ck, path))
    clf.load_state_dict(ck["model"])
    return clf.eval()


def random_shift(x: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Random-shift augmentation (pad by replication, crop back): (B, C, H, W) -> same."""
    B, C, H, W = x.shape
    x = F.pad(x, (pad,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,))
    return x[:, :, dy:dy + H, dx:dx + W]


# --- 2. Labels and metrics ----------------------------------------------------------------------------
def success_labels(success: np.ndarray, labels: str = "reached") -> np.ndarray:
    """Per-frame targets y of one episode from its simulator flags, (L+1,) bool -> (L+1,) bool.
    `reached` makes success absorbing: y_t = max_{s <= t} success_s. The reward fires on the first
    success and the episode ends there, in imagination and in the real evaluation, so a frame after
    it is a frame of a finished task, whatever the flag says once the object settles.
    `agree` returns the flag; pair it with `scored_mask`, which drops the frames it disagrees on."""
    success = np.asarray(success, dtype=bool)
    if labels in ("per-step", "agree"):
        return success
    return np.maximum.accumulate(success)


def scored_mask(success: np.ndarray, labels: str = "reached") -> np.ndarray:
    """Which frames of one episode are trained on and scored, (L+1,) bool. All of them, except with
    `agree`: a frame after the first success whose flag has dropped (a mug carried on past the goal,
    a lever settling back) is a success for `reached` and a failure for `per-step`. No stage ever
    scores it -- episodes end at their first success -- so it is left out rather than guessed."""
    success = np.asarray(success, dtype=bool)
    if labels != "agree":
        return np.ones_like(success)
    return ~(np.maximum.accumulate(success) & ~success)


def classifier_loss(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Eq. 3, the binary cross-entropy of R_psi on success labels y (B,) in {0, 1}, with each positive
    counted `pos_weight` times (the negative/positive ratio of the training frames): successes are
    rare, and an unweighted loss is content to call every frame a failure."""
    return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)


def binary_metrics(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    pred = p > threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / max(prec + rec, 1e-9),
            "accuracy": float((pred == y).mean()), "positives": int(y.sum()), "frames": int(len(y)),
            "false_positives": fp, "false_negatives": fn}


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold with the highest F1 on validation frames."""
    grid = np.linspace(0.05, 0.95, 91)
    return float(grid[int(np.argmax([binary_metrics(p, y, t)["f1"] for t in grid]))])


@torch.no_grad()
def predict(clf: RewardClassifier, frames_u8: np.ndarray, device: torch.device) -> np.ndarray:
    out = [torch.sigmoid(clf(common.to_float(torch.from_numpy(frames_u8[i:i + 256])).to(device))).cpu()
           for i in range(0, len(frames_u8), 256)]
    return torch.cat(out).numpy()


@torch.no_grad()
def imagined_agreement(clf: RewardClassifier, wm, episodes: list[dict]) -> dict:
    """Replay held-out episodes open-loop through the world model with their real actions and
    compare the classifier's verdicts on imagined vs real frames at each step."""
    H = min(len(e["actions"]) for e in episodes)
    imagined, real = wm_mod.open_loop(wm, episodes, 0, H)  # (N, H, 3, h, w)
    dev = next(clf.parameters()).device
    v_im = clf.success(imagined.flatten(0, 1).to(dev)).view(len(episodes), H).cpu().numpy()
    v_re = clf.success(real.flatten(0, 1).to(dev)).view(len(episodes), H).cpu().numpy()
    first = lambda v: [int(np.argmax(r)) + 1 if r.any() else None for r in v]  # noqa: E731
    f_im, f_re = first(v_im), first(v_re)
    gaps = [abs(a - b) for a, b in zip(f_im, f_re) if a is not None and b is not None]
    real_succ = sum(b is not None for b in f_re)
    return {"per_step_agreement": float((v_im == v_re).mean()),
            "agreement_by_step": [float(x) for x in (v_im == v_re).mean(0)],
            "episodes": len(episodes), "real_successes": real_succ,
            "imagined_successes": sum(a is not None for a in f_im),
            "both_succeed": len(gaps),
            "mean_first_success_gap_steps": float(np.mean(gaps)) if gaps else None}


# --- 3. Training -----------------------------------------------------------------------------
def main(args: Args) -> dict:
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    meta = common.read_meta(args.data_dir)
    paths = common.list_episodes(args.data_dir, [args.task])
    heldout = [p for p in paths if common.is_heldout(p, 0.1)]
    val = [p for p in paths if common.is_heldout(p, 0.2) and not common.is_heldout(p, 0.1)]
    train = [p for p in paths if not common.is_heldout(p, 0.2)]
    load = lambda ps: [common.load_episode(p) for p in ps]  # noqa: E731
    tr, va, te = load(train), load(val), load(heldout)
    for e in tr + va + te:  # keep only the scored frames (all of them unless --labels agree)
        keep = scored_mask(e["success"], args.labels)  # from the simulator's flags, before relabelling
        e["success"] = success_labels(e["success"], args.labels)
        e["scored"] = {"frames": e["frames"][keep], "success": e["success"][keep]}
    dropped = sum(len(e["success"]) - len(e["scored"]["success"]) for e in tr + va + te)
    X = torch.from_numpy(np.concatenate([e["scored"]["frames"] for e in tr]))  # (N, H, W, 3) uint8
    Y = torch.from_numpy(np.concatenate([e["scored"]["success"] for e in tr])).float()
    wm_path = args.run_dir / "world_model.pt"
    if Y.sum() == 0:
        common.fail(f"no success frames for {args.task} in {args.data_dir}; collect expert episodes first")
    pos_weight = (len(Y) - Y.sum()) / Y.sum()  # class imbalance: up-weight the rare successes
    cfg = RewardConfig(channels=args.channels, resolution=int(meta["resolution"]), threshold=0.5, labels=args.labels,
                       task=args.task, env=dataclasses.asdict(common.env_config_from_meta(meta)))
    clf = RewardClassifier(cfg).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"reward classifier: {len(Y)} training frames, {int(Y.sum())} successes "
          f"(pos_weight {pos_weight:.1f}), {len(val)} validation and {len(heldout)} held-out episodes"
          + (f"; {dropped} unscored frames left out (--labels agree)" if args.labels == "agree" else ""))
    bar = tqdm(range(args.steps), desc="reward", unit="step")
    for step in bar:
        idx = torch.randint(len(Y), (args.batch_size,), generator=gen)
        x = random_shift(common.to_float(X[idx])).to(device)
        loss = classifier_loss(clf(x), Y[idx].to(device), pos_weight.to(device))  # Eq. 3
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(bce=f"{loss.item():.4f}", refresh=False)
    clf.eval()
    cat = lambda eps, k: np.concatenate([e["scored"][k] for e in eps])  # noqa: E731
    p_val, y_val = predict(clf, cat(va, "frames"), device), cat(va, "success")
    cfg.threshold = best_threshold(p_val, y_val)  # clf.cfg is cfg
    for e in te:  # held-out verdicts once per episode: scored as a whole and by source below
        e["scored"]["p"] = predict(clf, e["scored"]["frames"], device)
    report = {"threshold": cfg.threshold, "labels": args.labels, "unscored_frames_left_out": dropped,
              "validation": binary_metrics(p_val, y_val, cfg.threshold),
              "heldout": binary_metrics(cat(te, "p"), cat(te, "success"), cfg.threshold)}
    h = report["heldout"]
    print(f"held-out ({len(te)} episodes, {h['frames']} frames, {h['positives']} successes): "
          f"precision {h['precision']:.3f} recall {h['recall']:.3f} F1 {h['f1']:.3f} accuracy {h['accuracy']:.3f} "
          f"at threshold {cfg.threshold:.2f}")
    # Where the errors are: the same metrics per data source (expert, noisy, random, decoy, policy).
    report["heldout_by_source"] = {}
    for src in sorted({e["source"] for e in te}):
        eps = [e for e in te if e["source"] == src]
        m = binary_metrics(cat(eps, "p"), cat(eps, "success"), cfg.threshold)
        report["heldout_by_source"][src] = {"episodes": len(eps), **m}
    print("held-out errors by source: " + ", ".join(
        f"{k} ({v['episodes']} episodes) {v['false_positives']} false positives, {v['false_negatives']} missed"
        for k, v in report["heldout_by_source"].items()))
    out = args.run_dir / common.task_slug(args.task)
    common.save_checkpoint(out / "reward.pt", "reward", config=dataclasses.asdict(cfg), model=clf.state_dict(),
                           seed=args.seed)
    if Path(wm_path).exists():
        wm = wm_mod.load_world_model(Path(wm_path), device, task=args.task, precision=args.precision)
        report["imagined"] = imagined_agreement(clf, wm, te)
        r = report["imagined"]
        print(f"on imagined frames of held-out episodes: per-step agreement with real verdicts "
              f"{r['per_step_agreement']:.3f}; successes real {r['real_successes']}, imagined "
              f"{r['imagined_successes']}; first-success gap {r['mean_first_success_gap_steps']} steps")
    common.atomic_write(out / "reward_metrics.json", lambda f: f.write(json.dumps(report, indent=1)), binary=False)
    return report


common.use_answers(globals())  # exercises: WORLD4RL_ANSWERS=your_file.py swaps in your functions

if __name__ == "__main__":
    common.run_main(main, Args)
