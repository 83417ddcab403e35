"""Stage 2 -- the diffusion transition model (World4RL, Sec. III-B, Eqs. 4-7).

An action-conditioned video model that predicts the next frame x_{t+1} from the last T
frames x_{t-T+1..t} and their actions a_{t-T+1..t}. Actions enter through the paper's
two-hot encoding (Eq. 5): each action dimension becomes K weights on K evenly spaced bin
values. The denoiser follows EDM (Karras et al. 2022) preconditioning (Eq. 4):

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), history, z)

with F a U-Net that sees the noisy next frame stacked on channels with the T past frames,
and gets the noise level and the encoded actions z in every residual block through
adaptive group norm. Training regresses F on (x0 - c_skip x_noisy) / c_out (Eq. 7) at
log-normal noise levels; sampling runs Euler (or Heun) steps of a Karras schedule: 3 per frame
while PPO trains in imagination, 10 when imagination scores a policy (`WorldModel.scoring`).
Training is task-agnostic: no task id enters the model.

Reads `data/cpu/` (stage 1); writes `runs/cpu/world_model.pt` (+ TensorBoard logs) and, at the
end, a fidelity report and a real|imagined video in `runs/cpu/world_model_eval/`. An interrupted
run resumes from its last checkpoint. Departures from the paper (what K counts, noise on the
conditioning frames, EMA, the small U-Net): docs/DEVIATIONS.md, "World model".

    python 02_world_model.py --tasks button-press
        # world model: 0.85 M parameters, 10410 training transitions, 33 held-out episodes, device cpu
        # open-loop from t0=0, H=16, 33 held-out episodes: PSNR 25.26 dB (copy-last 18.68), SSIM 0.867 ...
        #                                                  (~10 min on 2 cores with AMX; 3,200 steps)
    python 02_world_model.py --tasks button-press --action-encoding one-hot --out-name world_model_onehot.pt
        # the paper's ablation; 06_eval.py then reports both models' fidelity
    torchrun --standalone --nproc_per_node 4 02_world_model.py --tasks six --device cuda
        # data-parallel (the paper trained on 4 GPUs): DDP averages gradients, each process draws its
        # own batches (so a step sees 4 x --batch-size), rank 0 writes; NCCL on GPUs, gloo on CPUs
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import common
from common import Transitions, to_float, to_uint8


@dataclasses.dataclass
class Args:
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["button-press"])
    """tasks whose episodes train the model (suites `six`, `mt10` allowed); no task id is used"""
    data_dir: Path = Path("data/cpu")
    """dataset written by 01_collect.py"""
    run_dir: Path = Path("runs/cpu")
    """where the checkpoint and logs go"""
    out_name: str = "world_model.pt"
    """checkpoint file name inside run_dir"""
    history: int = 4
    """T, past frames and actions the model is conditioned on"""
    num_bins: int = 21
    """K, bin values per action dimension, -1 to 1 (two-hot, Eq. 5; K values are K-1 intervals)"""
    action_encoding: Literal["two-hot", "one-hot"] = "two-hot"
    """the paper's two-hot, or one-hot (all weight on the nearest bin: the paper's ablation)"""
    channels: tuple[int, ...] = (16, 32, 64, 64)
    """U-Net channels per resolution level (few at full resolution, where a CPU spends its time)"""
    cond_dim: int = 128
    """width of the conditioning vector (noise level + actions) fed to AdaGN"""
    sigma_data: float = 0.5
    """sigma_data of EDM: the std of the data (frames scaled to [-1, 1])"""
    p_mean: float = -0.4
    """mean of ln(sigma) during training (log-normal noise levels)"""
    p_std: float = 1.2
    """std of ln(sigma) during training"""
    cond_noise_max: float = 0.1
    """conditioning frames get N(0, s^2) noise, s ~ U(0, this), so the model tolerates its own errors"""
    steps: int = 3200
    """optimizer steps"""
    max_minutes: float = 0.0
    """stop training after this many minutes (0: no time limit); resume continues the step count"""
    batch_size: int = 32
    """samples per step (per process under torchrun: a step then sees N x batch_size)"""
    lr: float = 3e-4
    """AdamW learning rate"""
    ema_decay: float = 0.999
    """exponential moving average of the weights, used for sampling"""
    denoising_steps: int = 3
    """sampler steps per generated frame while PPO trains in imagination"""
    score_denoising_steps: int = 10
    """Euler steps per frame when imagination scores a policy (05's stopping rule, 06's imagined column):
    3.3x the cost of 3 steps, and BC's imagined success comes closer to its real success (docs/RESULTS.md)"""
    sampler: Literal["euler", "heun"] = "euler"
    """first-order Euler, or Heun (second order, ~2x the denoiser calls); docs/DEVIATIONS.md"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast, fp32, or auto (bf16 where the hardware runs it fast); training and sampling"""
    compile: bool = False
    """torch.compile the training step's network (needs a C++ compiler on a CPU; the first steps compile)"""
    eval_horizon: int = 16
    """H, open-loop steps of the fidelity evaluation"""
    ckpt_every: int = 500
    """checkpoint every this many steps (resume picks up from the last)"""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`"""
    seed: int = 0
    """seed for batches, noise and initialisation"""


@dataclasses.dataclass
class WorldModelConfig:
    """What rebuilds a trained world model; saved in its checkpoint with `asdict`."""

    history: int  # T
    num_bins: int  # K
    action_encoding: str
    channels: tuple[int, ...]
    cond_dim: int
    sigma_data: float
    denoising_steps: int  # the sampler that PPO trains in
    sampler: str
    action_dim: int
    resolution: int
    env: dict  # common.EnvConfig of the data, as a dict
    tasks: list[str]  # the tasks it was trained on (no task id enters the model)
    score_denoising_steps: int = 10  # Euler steps of the sampler that scores policies (WorldModel.scoring)

    def __post_init__(self):
        self.channels, self.tasks = tuple(self.channels), list(self.tasks)


# --- 1. Two-hot action encoding (Eq. 5) ------------------------------------------------
def two_hot(x: torch.Tensor, low: float, high: float, num_bins: int) -> torch.Tensor:
    """Two-hot weights over `num_bins` bin values evenly spaced from `low` to `high`.

    For b_k <= x <= b_{k+1}: t[k] = (b_{k+1} - x) / (b_{k+1} - b_k), t[k+1] = (x - b_k) / (...),
    zero elsewhere. x of any shape -> x.shape + (num_bins,); differentiable in x.
    """
    x = x.clamp(low, high)
    pos = (x - low) / (high - low) * (num_bins - 1)  # continuous bin index in [0, K-1]
    k = pos.detach().floor().clamp(max=num_bins - 2).long()  # left neighbour b_k
    w = pos - k  # (x - b_k) / (b_{k+1} - b_k): weight of the right neighbour
    out = torch.zeros(*x.shape, num_bins, dtype=x.dtype, device=x.device)
    out = out.scatter(-1, k.unsqueeze(-1), (1 - w).unsqueeze(-1))
    return out.scatter(-1, (k + 1).unsqueeze(-1), w.unsqueeze(-1))


def one_hot(x: torch.Tensor, low: float, high: float, num_bins: int) -> torch.Tensor:
    """The ablation: all weight on the nearest bin (not differentiable in x)."""
    pos = ((x.clamp(low, high) - low) / (high - low) * (num_bins - 1)).round().long()
    return F.one_hot(pos, num_bins).to(x.dtype)


# --- 2. EDM preconditioning (Eq. 4) ----------------------------------------------------
def edm_scalings(sigma: torch.Tensor, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022, Table 1."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def euler_step(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
               sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma, from noise
    level sigma down to sigma_next. `denoise(x, sigma)` is D; sigma and sigma_next are scalars."""
    d = (x - denoise(x, sigma)) / sigma  # dx/dsigma
    return x + (sigma_next - sigma) * d


def heun_step(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
              sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Heun step (Karras et al. 2022, Alg. 1): the Euler step, then the average of the slopes at
    both ends. The last step, to sigma_next = 0, has no slope at its end and stays Euler."""
    d = (x - denoise(x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


def denoising_loss(F_x: torch.Tensor, x0: torch.Tensor, x_noisy: torch.Tensor, c_skip: torch.Tensor,
                   c_out: torch.Tensor) -> torch.Tensor:
    """Eq. 7: the mean squared error of F's output F_x against its target (x0 - c_skip x_noisy) / c_out,
    with unit weight. All (B, 3, H, W) but c_skip, c_out (B, 1, 1, 1). Since D - x0 = c_out (F_x - target),
    this is EDM's lambda(sigma) ||D - x0||^2 with lambda = 1 / c_out^2 (tests/test_parts.py)."""
    target = (x0 - c_skip * x_noisy) / c_out
    return F.mse_loss(F_x, target)


def karras_sigmas(n: int, sigma_min: float = 2e-3, sigma_max: float = 5.0, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min, then 0 (Karras et al. 2022, Eq. 5)."""
    ramp = torch.linspace(0, 1, n)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1)])


# --- 3. The U-Net F with adaptive group norm --------------------------------------------
class AdaGN(nn.Module):
    """GroupNorm whose scale and shift come from the conditioning vector: x * (1 + s) + b."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(32, channels // 4), channels, affine=False)
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1, self.conv1 = AdaGN(c_in, cond_dim), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = AdaGN(c_out, cond_dim), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.skip(x) + h


class UNet(nn.Module):
    """F(input (B, 3 + 3T, H, W), cond (B, cond_dim)) -> (B, 3, H, W)."""

    def __init__(self, in_ch: int, channels: tuple[int, ...], cond_dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        c = channels[0]
        for c_next in channels:
            self.down.append(ResBlock(c, c_next, cond_dim))
            c = c_next
        self.mid = ResBlock(c, c, cond_dim)
        self.up = nn.ModuleList()
        for c_skip in reversed(channels):
            self.up.append(ResBlock(c + c_skip, c_skip, cond_dim))
            c = c_skip
        self.norm_out = nn.GroupNorm(min(32, c // 4), c)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # F starts at 0, so D starts as c_skip * x
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, cond)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)  # (B, C, H/2^i, W/2^i)
        h = self.mid(h, cond)
        for i, block in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), cond)
        return self.conv_out(F.silu(self.norm_out(h)))


# --- 4. The denoiser D: conditioners -> F on the scaled input -> wrapped output (Eq. 6) --
class Denoiser(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        T, D, K, C = cfg.history, cfg.action_dim, cfg.num_bins, cfg.cond_dim
        self.sigma_data = cfg.sigma_data
        self.encode = two_hot if cfg.action_encoding == "two-hot" else one_hot
        # A two-hot vector times a matrix is a weighted sum of bin embeddings.
        self.action_emb = nn.Linear(T * D * K, C)
        self.noise_freqs = nn.Parameter(torch.randn(C // 2) * 4, requires_grad=False)
        self.cond_mlp = nn.Sequential(nn.Linear(C, C), nn.SiLU(), nn.Linear(C, C))
        self.F = UNet(3 + 3 * T, cfg.channels, C)

    def condition(self, c_noise: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """c_noise (B,), actions (B, T, D) in [-1, 1], mask (B, T): 0 marks padding before the start."""
        z = self.encode(actions, -1.0, 1.0, self.cfg.num_bins) * mask[:, :, None, None]  # (B, T, D, K)
        f = c_noise[:, None] * self.noise_freqs[None] * 2 * math.pi
        noise_emb = torch.cat([f.cos(), f.sin()], dim=1)  # Fourier features, (B, cond_dim)
        return self.cond_mlp(noise_emb + self.action_emb(z.flatten(1)))

    def precondition(self, x: torch.Tensor, sigma: torch.Tensor, frames: torch.Tensor, actions: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conditioners, then F on the scaled input (Eq. 4). x (B, 3, H, W) noisy next frame, sigma (B,),
        frames (B, T, 3, H, W), actions (B, T, D), mask (B, T). Returns F_x (B, 3, H, W) and c_skip,
        c_out (B, 1, 1, 1): D(x; sigma) = c_skip x + c_out F_x. Training and sampling both go through here."""
        c_skip, c_out, c_in, c_noise = [c[:, None, None, None] for c in edm_scalings(sigma, self.sigma_data)]
        cond = self.condition(c_noise.flatten(), actions, mask)
        F_x = self.F(torch.cat([c_in * x, frames.flatten(1, 2)], 1), cond)
        return F_x, c_skip, c_out

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, frames: torch.Tensor,
                actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), history, z)."""
        F_x, c_skip, c_out = self.precondition(x, sigma, frames, actions, mask)
        return c_skip * x + c_out * F_x

    def loss(self, x0: torch.Tensor, frames: torch.Tensor, actions: torch.Tensor,
             mask: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
        """Eq. 7: || F(c_in x_noisy) - (x0 - c_skip x_noisy) / c_out ||^2 at ln(sigma) ~ N(p_mean, p_std^2).

        This is EDM's loss lambda(sigma) ||D(x_noisy) - x0||^2 with lambda = 1 / c_out^2, written on F:
        D - x0 = c_out (F_x - target), so unit weight on F is EDM's lambda(sigma) on D
        (tests/test_maths.py checks the two agree)."""
        sigma = (torch.randn(x0.shape[0], device=x0.device) * p_std + p_mean).exp()
        x_noisy = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
        F_x, c_skip, c_out = self.precondition(x_noisy, sigma, frames, actions, mask)
        return denoising_loss(F_x, x0, x_noisy, c_skip, c_out)

    @torch.no_grad()
    def sample(self, frames: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
               num_steps: int = 3, sampler: str = "euler") -> torch.Tensor:
        """Generate x_{t+1} (B, 3, H, W) in [-1, 1] from the history."""
        sigmas = karras_sigmas(num_steps).to(frames.device)
        step = heun_step if sampler == "heun" else euler_step
        denoise = lambda x, s: self(x, s.expand(len(x)), frames, actions, mask)  # noqa: E731  D(x; s)
        x = torch.randn_like(frames[:, -1]) * sigmas[0]
        for i in range(num_steps):
            x = step(denoise, x, sigmas[i], sigmas[i + 1])
        return x.clamp(-1, 1)


# --- 5. Training helpers: conditioning-frame noise and the EMA ----------------------------
def noisy_history(frames: torch.Tensor, cond_noise_max: float) -> torch.Tensor:
    """Noise-augment the conditioning frames (B, T, 3, H, W): N(0, s^2) with s ~ U(0, cond_noise_max)
    per sample. At imagination time the history is the model's own output, never exactly real."""
    s_aug = torch.rand(len(frames), 1, 1, 1, 1, device=frames.device) * cond_noise_max
    return frames + s_aug * torch.randn_like(frames)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """ema <- decay' ema + (1 - decay') model, with decay' = min(decay, (1 + step) / (10 + step)): a warm-up,
    so that early on the average does not hold on to the untrained start (at 0.999 without it, 22% of
    the step-0 weights would remain after 1,500 steps)."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - d)


class DenoisingLoss(nn.Module):
    """Eq. 7 as a module. DistributedDataParallel averages across processes the gradients of what runs
    in the forward of the module it wraps, so under torchrun it wraps the loss, not D alone."""

    def __init__(self, D: Denoiser, p_mean: float, p_std: float):
        super().__init__()
        self.D, self.p_mean, self.p_std = D, p_mean, p_std

    def forward(self, x0: torch.Tensor, frames: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.D.loss(x0, frames, actions, mask, self.p_mean, self.p_std)


# --- 6. The imagination API used by later stages -----------------------------------------
class WorldModel:
    """A frozen denoiser plus rolling histories: N imagined environments stepped in one call."""

    def __init__(self, denoiser: Denoiser, device: torch.device, precision: str = "auto"):
        self.D = denoiser.to(device).eval()
        self.cfg, self.device, self.precision = denoiser.cfg, device, precision
        self.num_steps, self.sampler = self.cfg.denoising_steps, self.cfg.sampler
        self.T = self.cfg.history
        # On a CPU the denoiser runs fastest per sample at ~32 samples a call (larger batches' activations
        # leave the cache; benchmarks/throughput.py); a GPU wants the whole batch at once.
        self.chunk = 32 if device.type == "cpu" else 1 << 30

    @torch.no_grad()
    def step(self, frames: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames (N, T, 3, H, W) in [-1, 1]; actions (N, T, D) whose last row is the new action;
        mask (N, T). Returns the next frames (N, 3, H, W), quantised to 8 bits like real frames."""
        frames, actions, mask = frames.to(self.device), actions.to(self.device), mask.to(self.device)
        with common.autocast(self.device, self.precision):  # bf16 convolutions where fast (common.py)
            x = torch.cat([self.D.sample(frames[i:i + self.chunk], actions[i:i + self.chunk], mask[i:i + self.chunk],
                                         self.num_steps, self.sampler) for i in range(0, len(frames), self.chunk)])
        return to_float(to_uint8(x))  # quantise: imagined frames live on the same grid as real ones

    def with_sampler(self, num_steps: int, sampler: str = "euler") -> WorldModel:
        """The same frozen denoiser, imagining with another sampler (no copy of the weights)."""
        other = copy.copy(self)
        other.num_steps, other.sampler = num_steps, sampler
        return other

    def scoring(self) -> WorldModel:
        """The sampler that scores a policy rather than trains it: cfg.score_denoising_steps Euler steps.
        Training rollouts use the cheap few-step sampler; the score that decides which policy to keep,
        and 06's imagined column, use one that reads BC closer to its real success (docs/RESULTS.md,
        "Scoring with 10 Euler steps")."""
        return self.with_sampler(self.cfg.score_denoising_steps, "euler")

    def start(self, first_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Histories for episodes that begin at `first_frames` (N, H, W, 3) uint8, padded as in training."""
        f = to_float(first_frames.to(self.device))
        n, D = len(f), self.cfg.action_dim
        frames = f[:, None].repeat(1, self.T, 1, 1, 1)
        return frames, torch.zeros(n, self.T, D, device=self.device), torch.zeros(n, self.T, device=self.device)

    @staticmethod
    def push(hist: tuple, new_frame: torch.Tensor | None, new_action: torch.Tensor | None) -> tuple:
        """Shift the histories by one: drop the oldest entry, append the new frame or action."""
        frames, actions, mask = hist
        if new_action is not None:  # the action a_t taken at the newest frame x_t
            actions = torch.cat([actions[:, 1:], new_action[:, None].to(actions)], 1)
            mask = torch.cat([mask[:, 1:], torch.ones_like(mask[:, :1])], 1)
        if new_frame is not None:
            frames = torch.cat([frames[:, 1:], new_frame[:, None].to(frames)], 1)
        return frames, actions, mask


def load_world_model(path: Path, device: torch.device, task: str | None = None,
                     precision: str = "auto") -> WorldModel:
    """The EMA denoiser of a stage-2 checkpoint, ready to imagine with the sampler it was saved with.
    With `task`, refuse a model that never saw that task (its imagination would be of another
    scene). `precision` as in `common.autocast`."""
    ck = common.load_checkpoint(path, "world_model", "02_world_model.py")
    cfg = common.config_from_checkpoint(WorldModelConfig, ck, path)
    if task is not None and task not in cfg.tasks:
        common.fail(f"{path} was trained on {cfg.tasks}, not on '{task}'; train one that includes it "
                    f"(02_world_model.py --tasks {task} ...) or point --run-dir elsewhere")
    D = Denoiser(cfg)
    D.load_state_dict(ck["ema"])
    return WorldModel(D, device, precision)


# --- 7. Fidelity: open-loop rollouts against the copy-last-frame baseline ---------------
def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1], (N, 3, H, W) -> (N,)."""
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return -10 * mse.log10()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 7, sigma 1.5) on [0, 1]-scaled images, (N,3,H,W) -> (N,)."""
    a, b = (a + 1) / 2, (b + 1) / 2
    g = torch.exp(-((torch.arange(7) - 3.0) ** 2) / (2 * 1.5**2))
    w = (g[:, None] * g[None]) / g.sum() ** 2
    w = w.to(a)[None, None].repeat(3, 1, 1, 1)
    blur = lambda x: F.conv2d(x, w, groups=3)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def open_loop(wm: WorldModel, episodes: list[dict], t0: int, H: int,
              noise_seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay each episode's real actions a_{t0..t0+H-1} from its real history up to x_{t0}.
    Returns imagined and real frames, both (N, H, 3, H_img, W_img) in [-1, 1]. The sampling noise is
    fixed (`noise_seed`; the global random state is put back after), so every stage that measures one
    checkpoint this way prints the same numbers: one sample per episode moves PSNR by about 0.2 dB."""
    with common.fixed_noise(noise_seed):  # the same world-model samples on every call
        real = torch.stack([to_float(torch.from_numpy(e["frames"][t0 + 1:t0 + 1 + H])) for e in episodes])
        acts = torch.stack([torch.from_numpy(e["actions"]) for e in episodes]).to(wm.device)  # (N, L, D)
        hist = wm.start(torch.stack([torch.from_numpy(e["frames"][0]) for e in episodes]))
        for t in range(1, t0 + 1):  # fill the history with real frames and actions up to x_{t0}
            f = to_float(torch.stack([torch.from_numpy(e["frames"][t]) for e in episodes]))
            hist = wm.push(hist, f, acts[:, t - 1])
        imagined = []
        for t in range(t0, t0 + H):
            hist = wm.push(hist, None, acts[:, t])
            x = wm.step(*hist)
            imagined.append(x.cpu())
            hist = wm.push(hist, x, None)
    return torch.stack(imagined, 1), real


def evaluate_fidelity(wm: WorldModel, episodes: list[dict], H: int = 16, t0: int = 0,
                      noise_seed: int = 1234) -> dict:
    """Per-step PSNR and SSIM of the model and of copy-last-frame, averaged over episodes."""
    episodes = [e for e in episodes if len(e["actions"]) >= t0 + H]
    imagined, real = open_loop(wm, episodes, t0, H, noise_seed)
    last = to_float(torch.stack([torch.from_numpy(e["frames"][t0]) for e in episodes]))
    out = {"t0": t0, "horizon": H, "episodes": len(episodes)}
    for name, fn in (("psnr", psnr), ("ssim", ssim)):
        out[f"{name}_model"] = [float(fn(imagined[:, h], real[:, h]).mean()) for h in range(H)]
        out[f"{name}_copy_last"] = [float(fn(last, real[:, h]).mean()) for h in range(H)]
    return out


def write_video(path: Path, real: torch.Tensor, imagined: torch.Tensor, scale: int = 4, fps: int = 8) -> None:
    """A side-by-side video: real | imagined, episodes stacked vertically. Inputs (N, H, 3, h, w)."""
    both = torch.cat([real, imagined], dim=-1)  # (N, H, 3, h, 2w)
    grid = torch.cat(list(both), dim=-2)  # (H, 3, N*h, 2w)
    frames = to_uint8(grid).numpy().repeat(scale, 1).repeat(scale, 2)
    common.save_video(path, frames, fps)


# --- 8. Training ------------------------------------------------------------------------
def main(args: Args) -> dict:
    """Train alone (`python 02_world_model.py`) or data-parallel (`torchrun --nproc_per_node N
    02_world_model.py`: each process its own batches, gradients averaged by DDP, rank 0 writes)."""
    common.seed_everything(args.seed)
    rank, world, device = common.init_distributed(args.device)
    lead = rank == 0  # the one process that prints, logs, checkpoints and evaluates
    meta = common.read_meta(args.data_dir)
    tasks = common.expand_tasks(args.tasks)
    train = Transitions(common.list_episodes(args.data_dir, tasks, split="train"), args.history)
    heldout = [common.load_episode(p) for p in common.list_episodes(args.data_dir, tasks, split="heldout")]
    cfg = WorldModelConfig(history=args.history, num_bins=args.num_bins, action_encoding=args.action_encoding,
                           channels=args.channels, cond_dim=args.cond_dim, sigma_data=args.sigma_data,
                           denoising_steps=args.denoising_steps, sampler=args.sampler,
                           score_denoising_steps=args.score_denoising_steps,
                           action_dim=int(meta["action_dim"]), resolution=int(meta["resolution"]),
                           env=dataclasses.asdict(common.env_config_from_meta(meta)), tasks=tasks)
    D = Denoiser(cfg).to(device)
    ema = Denoiser(cfg).to(device)
    ema.load_state_dict(D.state_dict())
    opt = torch.optim.AdamW(D.parameters(), lr=args.lr, weight_decay=1e-2)
    ckpt_path = args.run_dir / args.out_name
    step = 0
    if ckpt_path.exists():  # resume
        ck = common.load_checkpoint(ckpt_path, "world_model", "02_world_model.py")
        if common.config_from_checkpoint(WorldModelConfig, ck, ckpt_path) != cfg:
            common.fail(f"{ckpt_path} was trained with another config; use another --out-name or delete it")
        D.load_state_dict(ck["model"]), ema.load_state_dict(ck["ema"]), opt.load_state_dict(ck["opt"])
        step = ck["step"]
        fidelity_path = args.run_dir / "world_model_eval" / f"{args.out_name.removesuffix('.pt')}_fidelity.json"
        if step >= args.steps and fidelity_path.exists():
            if lead:
                print(f"{ckpt_path} is already trained to step {step} and evaluated; raise --steps to train on")
            common.finish_distributed()
            return json.loads(fidelity_path.read_text())
        if lead:
            print(f"resuming from {ckpt_path} at step {step}")
    n_params = sum(p.numel() for p in D.parameters())
    if lead:
        print(f"world model: {n_params / 1e6:.2f} M parameters, {len(train.index)} training transitions, "
              f"{len(heldout)} held-out episodes, device {device}" + (f", {world} processes" if world > 1 else ""))
    if rank:  # every rank starts from the same weights (and DDP broadcasts rank 0's), then draws its own noise
        torch.manual_seed(common.stable_seed(args.seed, step, "rank", rank))
    train_loss = DenoisingLoss(D, args.p_mean, args.p_std)
    if world > 1:
        train_loss = DistributedDataParallel(train_loss, device_ids=[device] if device.type == "cuda" else None)
    train_loss = common.maybe_compile(train_loss, args.compile)

    def save() -> None:
        if lead:
            common.save_checkpoint(ckpt_path, "world_model", config=dataclasses.asdict(cfg), model=D.state_dict(),
                                   ema=ema.state_dict(), opt=opt.state_dict(), step=step, seed=args.seed)

    writer = common.tensorboard_writer(args.run_dir / "tb" / args.out_name.removesuffix(".pt"), args) if lead else None
    gen = torch.Generator().manual_seed(args.seed + step + 1_000_003 * rank)  # each rank its own batches
    t_start, samples, losses = time.time(), 0, []
    bar = tqdm(total=args.steps, initial=step, desc="world model", unit="step", disable=not lead)
    while step < args.steps:
        frames, actions, mask, x0 = [b.to(device) for b in train.batch(args.batch_size, gen)]
        frames = noisy_history(frames, args.cond_noise_max)
        with common.autocast(device, args.precision):  # bf16 forward where fast; weights and Adam stay fp32
            loss = train_loss(x0, frames, actions, mask)  # D.loss (Eq. 7); under DDP backward averages gradients
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(D.parameters(), 1.0)
        opt.step()
        ema_update(ema, D, step, args.ema_decay)
        step += 1
        samples += args.batch_size * world
        losses.append(loss.item())
        if len(losses) == 10:  # throughput after warm-up (compilation, allocator) is measured from here
            t_warm, samples_warm = time.time(), samples
        sps = samples / (time.time() - t_start)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", samples_per_s=f"{sps:.0f}", refresh=False)
        if writer and step % 20 == 0:
            writer.add_scalar("losses/denoising", losses[-1], step)
            writer.add_scalar("charts/samples_per_s", sps, step)
        if step % args.ckpt_every == 0:
            save()
        if args.max_minutes and common.rank0_decides(time.time() - t_start > args.max_minutes * 60, device):
            if lead:
                print(f"time budget of {args.max_minutes} min reached at step {step}")
            break
    bar.close()
    steady = (samples - samples_warm) / max(time.time() - t_warm, 1e-9) if len(losses) > 10 else None
    save()
    train_seconds = time.time() - t_start
    rank_diff = common.max_rank_difference(D, ema)
    if not lead:
        common.finish_distributed()
        return {}

    # Fidelity on held-out episodes, from the episode start and from mid-episode.
    wm = WorldModel(ema, device, args.precision)
    out_dir = args.run_dir / "world_model_eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = max(1, min(50, len(losses) // 4))  # the training loss over this run's first and last steps
    report = {"step": step, "train_seconds": train_seconds, "samples_per_s": samples / max(train_seconds, 1e-9),
              "samples_per_s_after_10_steps": steady, "processes": world, "max_param_difference_across_processes": rank_diff,
              "train_loss_first": float(np.mean(losses[:n])) if losses else None,
              "train_loss_last": float(np.mean(losses[-n:])) if losses else None}
    if world > 1:
        print(f"{world} processes: parameters after training differ across processes by at most {rank_diff:.1e}")
    L = min(len(e["actions"]) for e in heldout)
    for t0 in sorted({0, max(0, min(L - args.eval_horizon, L // 2))}):
        r = evaluate_fidelity(wm, heldout, args.eval_horizon, t0)
        report[f"t0={t0}"] = r
        print(f"open-loop from t0={t0}, H={args.eval_horizon}, {r['episodes']} held-out episodes: "
              f"PSNR {np.mean(r['psnr_model']):.2f} dB (copy-last {np.mean(r['psnr_copy_last']):.2f}), "
              f"SSIM {np.mean(r['ssim_model']):.3f} (copy-last {np.mean(r['ssim_copy_last']):.3f})")
    imagined, real = open_loop(wm, heldout[:4], 0, min(L, 2 * args.eval_horizon))
    write_video(out_dir / f"{args.out_name.removesuffix('.pt')}_real_vs_imagined.mp4", real, imagined)
    common.atomic_write(out_dir / f"{args.out_name.removesuffix('.pt')}_fidelity.json",
                        lambda f: f.write(json.dumps(report, indent=1)), binary=False)
    common.finish_distributed()
    return report


common.use_answers(globals())  # exercises: WORLD4RL_ANSWERS=your_file.py swaps in your functions

if __name__ == "__main__":
    common.run_main(main, Args)
