"""NullFace sampling: dual-path identity guidance over DDPM-inversion noise (paper eqs. 3 and 4).

``guidance`` is the one function for eqs. 3-4: the engine's ``sample_nullface`` and the native GUIDER
(``nullface.methods.nullface.native``, ``nodes/native_comfy.py``) both call it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...diffusion.schedule import Schedule, posterior_mean

# eps_dual(x [B,4,h,w], t, null=None) -> (ε(x_t, c_id), ε(x_t, ∅)), both paths in one call; given ``null``
# (a known ε(x_t, ∅)) it evaluates only the identity path and returns ``null`` as the second
DualDenoiser = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def guidance(eps_id: torch.Tensor, eps_null: torch.Tensor, lambda_cfg: float, mask: Optional[torch.Tensor] = None,
             i: int = 0, mask_delay: int = 0) -> torch.Tensor:
    """Eqs. 3-4 on the two predictions of running step ``i``; M (``mask``, 1 = anonymize) applies from step
    ``mask_delay`` on. The weights sum to 1, so it holds for ε and for the denoised x̂_0 = x - σ ε alike."""
    eps = lambda_cfg * eps_id + (1 - lambda_cfg) * eps_null            # eq. 3: ε̂ = λ ε(x_t, c_id) + (1-λ) ε(x_t, ∅)
    if mask is not None and i >= mask_delay:
        eps = mask * eps + (1 - mask) * eps_null                        # eq. 4: ε̃ = M ε̂ + (1-M) ε(x_t, ∅)
    return eps


@torch.no_grad()
def sample_nullface(eps_dual: DualDenoiser, x: torch.Tensor, zs: torch.Tensor, schedule: Schedule, first: int,
                    lambda_cfg: float, mask: Optional[torch.Tensor] = None, mask_delay: int = 0,
                    callback: Optional[Callable[[dict], None]] = None,
                    eps_null_first: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NullFace reverse process from step ``first`` (= T_skip) with the inverted noise maps ``zs``.

    x: x_t at step ``first``; zs[i] is z for step first + i; mask M (1 = anonymize) at latent size,
    applied from running step ``mask_delay`` on (a count of steps: ``NullFaceSettings.mask_delay_steps``).
    ``callback(info)`` runs after every step (one UNet call): ``{"phase": "sample", "i", "total", "x",
    "steps": 1, "batch": images}``.
    ``eps_null_first``: ε(x, t_first, ∅) when already known (the inversion evaluated it at the same x_t,
    ``Inversion.eps_first``): the first step then evaluates the identity path only, one UNet evaluation
    less per image.
    """
    for i, k in enumerate(range(first, schedule.steps)):
        dev = x.device
        a, ap, s = schedule.abar[k].to(dev), schedule.abar_prev[k].to(dev), schedule.sigma[k].to(dev)
        t = schedule.timesteps[k].to(dev).repeat(x.shape[0])
        known = eps_null_first if i == 0 else None
        eps_id, eps_null = eps_dual(x, t) if known is None else eps_dual(x, t, known)  # ε(x_t, c_id), ε(x_t, ∅)
        eps = guidance(eps_id, eps_null, lambda_cfg, mask, i, mask_delay)  # eqs. 3-4: ε̃
        x = posterior_mean(x, eps, a, ap, s) + s * zs[i]                # x_{t-1} = μ_t(ε) + σ_t z_t
        if callback is not None:
            callback({"phase": "sample", "i": i, "total": schedule.steps - first, "x": x, "steps": 1,
                      "batch": x.shape[0]})
    return x
