"""Edit-friendly DDPM inversion (Huberman-Spiegelglas et al., CVPR 2024), eta = 1.

Only the noise maps that sampling from T_skip consumes are computed, and their UNet
evaluations are independent of each other, so they run in batches. ``callback`` is called after
every UNet call (progress, and the place where a caller can stop the run).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence


import torch

from .schedule import Schedule, image_noise, noisy, posterior_mean

# eps_null(x [N,4,h,w], t [N]) -> ε(x_t, ∅) [N,4,h,w]
NullDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Inversion:
    """What sampling needs: start latent x_{k0}, noise maps z_k for k = k0..T-1, and how they were made."""

    x0: torch.Tensor          # [B,4,h,w] clean latents of the input
    x_start: torch.Tensor     # [B,4,h,w] x_t at the first running step k0 = T_skip
    zs: torch.Tensor          # [T - T_skip, B,4,h,w] z_k in sampling order; the last is 0 (as the reference)
    schedule: Schedule
    t_skip: int
    seed: int | Sequence[int]
    ip_adapter_scale: float   # scale the null path was evaluated with; the sampler's null path reuses it
    image_size: tuple[int, int]
    unet_evals: int = 0
    # ε(x_{k0}, t_{k0}, ∅) at ``ip_adapter_scale``: the first sampling step's null prediction (same x_t, t,
    # empty prompt, zero identity, scale), so the sampler need not evaluate it again; None when step k0 was
    # not inverted (T_skip = T - 1 without ``exact_last_step``, or T_skip = T)
    eps_first: Optional[torch.Tensor] = None

    @property
    def steps(self) -> int:
        return self.schedule.steps

    @property
    def batch(self) -> int:
        return int(self.x0.shape[0])


def sample_noisy_latents(x0: torch.Tensor, schedule: Schedule, first: int,
                         seed: int | Sequence[int]) -> dict[int, torch.Tensor]:
    """x_k = sqrt(ᾱ) x0 + sqrt(1-ᾱ) n_k with independent n_k, for k = T-1 down to ``first``.

    Drawn on the CPU from ``seed`` in the reference's order (the step nearest x0 first), per image
    (``image_noise``), so the same seed gives the same noise on every device and in any batch. ``seed`` may
    be one seed per image (the same forward noise for every frame of a video track, whatever batch it runs in).
    """
    steps = list(range(schedule.steps - 1, first - 1, -1))
    noise = image_noise(tuple(x0.shape), len(steps), seed)
    return {k: noisy(x0, n.to(x0.device), schedule.abar[k].to(x0.device)) for k, n in zip(steps, noise)}


def invert(eps_null: NullDenoiser, x0: torch.Tensor, schedule: Schedule, t_skip: int,
           seed: int | Sequence[int] = 0, *,
           batch: int = 1, exact_last_step: bool = False, ip_adapter_scale: float = 1.0,
           callback: Optional[Callable[[dict], None]] = None) -> Inversion:
    """Edit-friendly DDPM inversion of latents ``x0`` [B,4,h,w], keeping only steps k >= T_skip.

    For each kept step k:  ε_k = ε(x_k, t_k, ∅),  μ_k = μ_t(x_k, ε_k),  z_k = (x_{k+1} - μ_k) / σ_k,
    with x_T = x0 (``seed``: one, or one per image, see ``sample_noisy_latents``). The last step's z is 0 as in the reference (``exact_last_step`` inverts it too).
    ``batch``: UNet evaluations per call (several steps share a call); the result does not depend on it.
    ``callback(info)`` runs after each UNet call with ``info = {"phase": "invert", "done": steps inverted
    so far, "total": steps to invert, "steps": steps this call inverted, "batch": images}``.
    """
    x0 = x0.float()
    T, k0 = schedule.steps, t_skip
    xs = sample_noisy_latents(x0, schedule, k0, seed)
    xs[T] = x0
    last = T if exact_last_step else T - 1           # steps k in [k0, last) need a UNet call
    needed = list(range(k0, last))
    zs = torch.zeros((T - k0,) + tuple(x0.shape), dtype=torch.float32, device=x0.device)
    B = x0.shape[0]
    evals = 0
    eps_first = None
    per_call = max(1, batch // B) if B <= batch else 1
    for start in range(0, len(needed), per_call):
        ks = needed[start:start + per_call]
        x_in = torch.cat([xs[k] for k in ks])
        t_in = torch.cat([schedule.timesteps[k].repeat(B) for k in ks]).to(x0.device)
        eps = eps_null(x_in, t_in).float().split(B)
        evals += len(ks) * B
        for k, e in zip(ks, eps):
            dev = x0.device
            a, ap, s = schedule.abar[k].to(dev), schedule.abar_prev[k].to(dev), schedule.sigma[k].to(dev)
            mu = posterior_mean(xs[k], e, a, ap, s)
            zs[k - k0] = (xs[k + 1] - mu) / s
            if k == k0:
                eps_first = e.clone()
        if callback is not None:                      # once per UNet call
            callback({"phase": "invert", "done": start + len(ks), "total": len(needed), "steps": len(ks),
                      "batch": B})
    return Inversion(x0=x0, x_start=xs[k0], zs=zs, schedule=schedule, t_skip=t_skip, seed=seed,
                     ip_adapter_scale=ip_adapter_scale, image_size=tuple(x0.shape[-2:]), unet_evals=evals,
                     eps_first=eps_first)
