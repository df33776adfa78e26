"""Inpainting with attribute guidance (papers/000, Salar, Zhao, Liu 2025): schedule and sampler (settings:
``nullface.methods.inpaint.settings``).

The region to anonymize (mask m, 1 = regenerate) is erased and repainted by a Stable Diffusion
inpainting UNet (9 input channels: x_t, m at latent size, and the latent of the masked image);
every reverse step is corrected towards a synthesized target face's attributes
(``nullface.methods.inpaint.guidance``). Defaults follow the authors' code (github parham1998/Face-Anonymization):
ldm's DDIM with 45 "uniform" steps (46 timesteps 991, 969, ..., 1), η = 1, empty prompt, no CFG,
start from the image latent noised to t = 999, ρ = 0.8, w_sim = 1, w_dis = 0.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...errors import InputError
from ...diffusion.schedule import Schedule


def ldm_timesteps(steps: int, train_steps: int = 1000) -> torch.Tensor:
    """t = 0, c, 2c, ... plus 1 (c = train_steps // steps), in sampling order; t = 1000 (which ldm would
    index out of range for the few S where c divides 999) is left out."""
    c = train_steps // steps
    t = torch.arange(0, train_steps, c) + 1
    return t[t < train_steps].flip(0).to(torch.int64)


def ldm_schedule(steps: int, alphas_cumprod: torch.Tensor) -> Schedule:
    """ldm's DDIM "uniform" schedule: t = 0, c, 2c, ... (c = 1000 // steps) plus 1, in sampling order.

    ᾱ_prev of the last step (t = 1) is ᾱ_0, as ldm's make_ddim_sampling_parameters; σ_t at η = 1.
    """
    n = alphas_cumprod.shape[0]
    c = n // steps
    timesteps = ldm_timesteps(steps, n)
    abar = alphas_cumprod[timesteps]
    prev = timesteps - c
    abar_prev = torch.where(prev >= 0, alphas_cumprod[prev.clamp(min=0)], alphas_cumprod[0])
    sigma = ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return Schedule(timesteps=timesteps, abar=abar, abar_prev=abar_prev, sigma=sigma)


def sd_alphas_cumprod(config: dict | None = None) -> torch.Tensor:
    """ᾱ of SD's scaled-linear training schedule (1000 steps, β 0.00085..0.012)."""
    config = config or {}
    if config.get("beta_schedule", "scaled_linear") != "scaled_linear" or \
            config.get("prediction_type", "epsilon") != "epsilon":
        raise InputError("the inpainting method needs SD's epsilon-prediction scaled_linear schedule")
    n = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    betas = torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float64) ** 2   # ldm computes in float64
    return torch.cumprod(1.0 - betas, dim=0).float()


# ε(x_t, t) -> ε̂ of the inpainting UNet (mask and masked-image latent bound in)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# g(x̂_0, k) -> ρ ∇_{x̂_0} L (attribute_guidance.attribute_gradient with its images bound in)
Guidance = Callable[[torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def sample_inpaint(eps: Denoiser, x: torch.Tensor, schedule: Schedule, noise: torch.Tensor,
                   guidance: Optional[Guidance] = None, callback: Optional[Callable[[dict], None]] = None) -> torch.Tensor:
    """DDIM (η = 1) with the attribute-guidance correction of papers/000.

    x: x_T; noise[k]: the z of step k; ``guidance`` None = off. Kept regions are handled by the caller
    (the inpainting UNet sees them; the pixels are pasted back after decoding).
    """
    for k in range(schedule.steps):
        dev = x.device
        a, ap, s = schedule.abar[k].to(dev), schedule.abar_prev[k].to(dev), schedule.sigma[k].to(dev)
        t = schedule.timesteps[k].to(dev).repeat(x.shape[0])
        e = eps(x, t)                                                     # ε_θ(x_t, t, m, E(y ⊙ (1-m)))
        x0 = (x - (1 - a).sqrt() * e) / a.sqrt()                          # x̂_0 (Tweedie)
        x_prev = ap.sqrt() * x0 + (1 - ap - s ** 2).sqrt() * e + s * noise[k].to(dev)   # DDIM, η = 1
        if guidance is not None:
            x_prev = x_prev - s * guidance(x0, k)                          # − σ_t ρ ∇_{x̂_0} L
        x = x_prev
        if callback is not None:
            callback({"phase": "sample", "i": k, "total": schedule.steps, "x": x, "steps": 1, "batch": x.shape[0]})
    return x
