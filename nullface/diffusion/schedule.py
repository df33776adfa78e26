"""The DDIM/DDPM noise schedule of SD1.5 and the single-step formulas at eta = 1.

Notation (SPEC.md, Huberman-Spiegelglas et al. 2024): ᾱ_t cumulative alpha, σ_t the posterior
standard deviation, μ_t(x_t, ε) the posterior mean, x_{t-1} = μ_t + σ_t z_t.
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Schedule:
    """Per inference step k = 0..T-1 (sampling order, t = 991, 981, ..., 1 for T = 100)."""

    timesteps: torch.Tensor  # [T] int64, t_k
    abar: torch.Tensor       # [T] ᾱ_{t_k}
    abar_prev: torch.Tensor  # [T] ᾱ_{t_k - 10}; the last step uses ᾱ_0 (set_alpha_to_one = False)
    sigma: torch.Tensor      # [T] σ_t at eta = 1

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def sd15_schedule(steps: int = 100, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                  beta_end: float = 0.012, steps_offset: int = 1) -> Schedule:
    """SD1.5's scaled-linear schedule with DDIM "leading" spacing, computed as diffusers does (float32)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    ratio = num_train_timesteps // steps
    timesteps = (torch.arange(0, steps) * ratio).flip(0).to(torch.int64) + steps_offset
    prev = timesteps - ratio
    abar = alphas_cumprod[timesteps]
    abar_prev = torch.where(prev >= 0, alphas_cumprod[prev.clamp(min=0)], alphas_cumprod[0])
    # σ_t² = (1-ᾱ_{t-1})/(1-ᾱ_t) · (1 - ᾱ_t/ᾱ_{t-1})
    variance = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
    return Schedule(timesteps=timesteps, abar=abar, abar_prev=abar_prev, sigma=variance.sqrt())


def mask_delay_steps(fraction: float, running_steps: int) -> int:
    """Running steps before the region mask (eq. 4) applies: fraction × running steps rounded half up, and at
    most running - 1 so that the mask applies on at least the last step.

    The paper's "mask at timestep 80" is 1/3 of the 30 running steps (T = 100, T_skip = 70) = 10.
    """
    if running_steps <= 0:
        return 0
    return max(0, min(int(math.floor(float(fraction) * running_steps + 0.5)), running_steps - 1))


def schedule_from_config(config: dict, steps: int) -> Schedule:
    """The schedule described by a diffusers scheduler config (SD1.5 family only)."""
    kind = config.get("beta_schedule", "scaled_linear")
    if kind != "scaled_linear" or config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"unsupported scheduler config ({kind}, {config.get('prediction_type')}); "
                         "NullFace needs SD1.5's epsilon-prediction scaled_linear schedule")
    return sd15_schedule(steps, config.get("num_train_timesteps", 1000), config.get("beta_start", 0.00085),
                         config.get("beta_end", 0.012), config.get("steps_offset", 1))


def noisy(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) n."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def posterior_mean(x_t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor, abar_prev: torch.Tensor,
                   sigma: torch.Tensor) -> torch.Tensor:
    """μ_t = sqrt(ᾱ_{t-1}) · (x_t - sqrt(1-ᾱ_t) ε)/sqrt(ᾱ_t) + sqrt(1 - ᾱ_{t-1} - σ_t²) ε."""
    x0_pred = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    return abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma ** 2).sqrt() * eps


def image_noise(shape: tuple, count: int, seed) -> list[torch.Tensor]:
    """``count`` independent standard-normal tensors of ``shape`` (B, ...), drawn on the CPU, in order.

    Each image b draws from its own generator seeded ``seed`` (or ``seed[b]``: one seed per image), as the
    reference does for one image: an image's noise (hence its result) does not depend on the other images of
    its batch, so faces of many photos can share a batch; the same seed gives the same noise on every device.
    """
    one = (1,) + tuple(shape[1:])
    seeds = [int(seed)] * int(shape[0]) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != int(shape[0]):
        raise ValueError(f"{len(seeds)} seeds for {shape[0]} latents")
    per_image = []
    for s in seeds:
        gen = torch.Generator("cpu").manual_seed(s)
        per_image.append([torch.randn(one, generator=gen, dtype=torch.float32) for _ in range(count)])
    return [torch.cat([n[j] for n in per_image]) for j in range(count)]
