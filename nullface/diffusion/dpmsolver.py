"""DPM-Solver++(2M) SDE and its edit-friendly inversion (recorded noise maps), as Reverse Personalization uses.

Notation (Lu et al. 2022, "DPM-Solver++", arXiv 2211.01095): α_t = sqrt(ᾱ_t), σ_t = sqrt(1 - ᾱ_t),
λ_t = log(α_t / σ_t), the data prediction D_t = (x_t - σ_t ε) / α_t. One second-order multistep SDE step
from s = t_i to t = t_{i+1} (h = λ_t - λ_s, h₀ = λ_s - λ_{t_{i-1}}, r = h₀ / h):

    x_t = (σ_t/σ_s) e^{-h} x_s + α_t (1 - e^{-2h}) (D_s + (D_s - D_{prev}) / (2r)) + σ_t sqrt(1 - e^{-2h}) z

The first step has no previous D and is first order. The inversion (Huberman-Spiegelglas et al. 2024,
as LEDITS++ applies it to this solver) noises the input independently to every x̃_{t_i} and records the noise
maps z_i = (x̃_{t_{i+1}} - mean_i) / c_i. It walks the steps in sampling order and evaluates the model at the
*corrected* latent x_{t_{i+1}} = mean_i + c_i z_i, which is, bit for bit, what the sampler computes from the
same x_{t_i} and z_i. Replaying the steps with the same model (called with the same rows) therefore sees the
same inputs, gets the same outputs and returns the inversion's latents exactly, the last one being the input up
to one float rounding. The model calls depend on each other, so they run one step at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

# model(x [N,C,h,w], step indices [N] (int64, into the schedule)) -> ε [N,C,h,w]
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DPMSchedule:
    """Steps i = 0..N-1 from t_i to t_{i+1}; t_N = 0 (the clean end). Float32, as diffusers computes it."""

    timesteps: torch.Tensor   # [N] int64, t_i in sampling order (noisiest first)
    alpha: torch.Tensor       # [N+1] α at t_0..t_N
    sigma: torch.Tensor       # [N+1] σ at t_0..t_N
    lam: torch.Tensor         # [N+1] λ at t_0..t_N

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def linspace_timesteps(steps: int, skip: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``steps`` timesteps spread evenly from (1 - skip)·T_train - 1 down to 1, truncated to integers.

    This is how the authors' reference (LEDITS++'s ``invert``) places them: skip = 0.7 gives 100 steps
    from t = 299 to t = 1; all of them run.
    """
    top = num_train_timesteps - skip * num_train_timesteps - 1
    return torch.from_numpy(np.linspace(top, 1, steps).astype(np.int64))


def dpm_schedule(timesteps: torch.Tensor, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                 beta_end: float = 0.012) -> DPMSchedule:
    """α, σ, λ of SD/SDXL's scaled-linear schedule at ``timesteps`` and at the final t = 0."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32) ** 2
    abar = torch.cumprod(1.0 - betas, dim=0)
    alpha_all, sigma_all = abar.sqrt(), (1 - abar).sqrt()
    lam_all = alpha_all.log() - sigma_all.log()
    ts = torch.cat([timesteps.to(torch.int64), torch.zeros(1, dtype=torch.int64)])
    return DPMSchedule(timesteps=timesteps.to(torch.int64), alpha=alpha_all[ts], sigma=sigma_all[ts],
                       lam=lam_all[ts])


def step_mean(schedule: DPMSchedule, i: int, x: torch.Tensor, d: torch.Tensor,
              d_prev: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, noise coefficient) of DPM-Solver++(2M) SDE step i (midpoint form): x_{i+1} = mean + c · z."""
    a_t, s_t, s_s = schedule.alpha[i + 1], schedule.sigma[i + 1], schedule.sigma[i]
    h = schedule.lam[i + 1] - schedule.lam[i]
    decay = torch.exp(-2.0 * h)
    if d_prev is None:                                  # first step: first order (D₁ = 0)
        dd = d
    else:
        r = (schedule.lam[i] - schedule.lam[i - 1]) / h
        dd = d + 0.5 * (d - d_prev) / r                 # D₀ + ½ D₁, D₁ = (D₀ - D_prev) / r
    mean = (s_t / s_s * torch.exp(-h)) * x + (a_t * (1 - decay)) * dd
    return mean, s_t * torch.sqrt(1.0 - decay)


def data_prediction(schedule: DPMSchedule, i: int, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """D = (x - σ ε) / α at step i."""
    return (x - schedule.sigma[i] * eps) / schedule.alpha[i]


def noised_latents(x0: torch.Tensor, schedule: DPMSchedule, seed: int) -> list[torch.Tensor]:
    """x_{t_i} = α_i x0 + σ_i n_i with independent n_i, for i = 0..N-1.

    Drawn on the CPU from ``seed`` in the reference's order (the least noisy step first), so the same seed
    gives the same noise on every device.
    """
    gen = torch.Generator("cpu").manual_seed(int(seed))
    xs: list = [None] * schedule.steps
    for i in range(schedule.steps - 1, -1, -1):
        n = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(x0.device)
        xs[i] = schedule.alpha[i].to(x0.device) * x0 + schedule.sigma[i].to(x0.device) * n
    return xs


@dataclass
class DPMInversion:
    """What sampling needs: the start latent x_{t_0} and the noise maps z_i, one per step."""

    x0: torch.Tensor        # [B,C,h,w] the input latents
    x_start: torch.Tensor   # [B,C,h,w] x_{t_0}
    zs: torch.Tensor        # [N,B,C,h,w]
    schedule: DPMSchedule
    unet_evals: int = 0


@torch.no_grad()
def invert_dpmpp_2m_sde(model: EpsModel, x0: torch.Tensor, schedule: DPMSchedule, seed: int = 0, *,
                        callback: Optional[Callable[[dict], None]] = None) -> DPMInversion:
    """Edit-friendly inversion for DPM-Solver++(2M) SDE of latents ``x0`` [B,C,h,w], exact by construction.

    x_{t_0} = x̃_{t_0}; for every step i, with the independently noised x̃_{t_{i+1}} (x̃_{t_N} = x0):
        D_i = D(x_{t_i}, model),  z_i = (x̃_{t_{i+1}} - mean_i(x_{t_i}, D_i, D_{i-1})) / c_i,
        x_{t_{i+1}} = mean_i + c_i z_i            (the corrected latent the replay will see)
    ``model`` is called once per step with the B rows of the batch, as ``sample_dpmpp_2m_sde`` calls it.
    """
    x0 = x0.float()
    n, b = schedule.steps, x0.shape[0]
    noised = noised_latents(x0, schedule, seed) + [x0]          # x̃_{t_0}..x̃_{t_N}
    zs = torch.empty((n,) + tuple(x0.shape), dtype=torch.float32, device=x0.device)
    x, d_prev = noised[0], None
    for i in range(n):
        idx = torch.full((b,), i, dtype=torch.int64)
        d = data_prediction(schedule, i, x, model(x, idx).float())   # D_i at the corrected x_{t_i}
        mean, c = step_mean(schedule, i, x, d, d_prev)
        zs[i] = (noised[i + 1] - mean) / c                           # z_i
        x = mean + c * zs[i]                                         # x_{t_{i+1}}, as the sampler computes it
        d_prev = d
        if callback is not None:
            callback({"phase": "invert", "done": i + 1, "total": n, "x": x, "steps": 1, "batch": b})
    return DPMInversion(x0=x0, x_start=noised[0], zs=zs, schedule=schedule, unet_evals=n * b)


@torch.no_grad()
def sample_dpmpp_2m_sde(model: EpsModel, x: torch.Tensor, zs: torch.Tensor, schedule: DPMSchedule,
                        callback: Optional[Callable[[dict], None]] = None) -> torch.Tensor:
    """DPM-Solver++(2M) SDE from x_{t_0} with the given noise maps z_i (one per step): the reverse process."""
    x = x.float()
    d_prev = None
    for i in range(schedule.steps):
        idx = torch.full((x.shape[0],), i, dtype=torch.int64)
        d = data_prediction(schedule, i, x, model(x, idx).float())
        mean, c = step_mean(schedule, i, x, d, d_prev)
        x = mean + c * zs[i]                                   # x_{t_{i+1}} = mean + c z_i
        d_prev = d
        if callback is not None:
            callback({"phase": "sample", "i": i, "total": schedule.steps, "x": x, "steps": 1, "batch": x.shape[0]})
    return x
