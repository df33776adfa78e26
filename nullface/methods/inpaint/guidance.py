"""Attribute guidance (papers/000, Salar et al. 2025): the gradient correction of the reverse process.

At each DDIM step the clean latent is predicted (x̂_0, Tweedie), decoded (D), and its features φ are
matched with those of the synthesized target image y_tgt. The step is corrected by

    x_{t-1} ← x_{t-1} − σ_t · ρ · ∇_{x̂_0} [ w_sim · L(φ(D(x̂_0)), φ(y_tgt)) − w_dis · L(φ(D(x̂_0)), φ(y_src)) ]

with L(a, b) = Σ_i mean_d (a_i − b_i)² over the feature tokens i (the reference's feature-matching loss:
one MSE per FaRL token, summed). σ_t (the step's noise level, η = 1) makes the correction adaptive:
large early, vanishing at the end. The gradient is taken with respect to x̂_0 (no UNet backward pass),
as in the authors' code. Pure tensor functions; the feature extractor is any differentiable callable.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

# φ: images [B,3,H,W] in -1..1 -> features [B,N,D] (N tokens of width D); must be differentiable
FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
# D: latents x̂_0 [B,4,h,w] -> images [B,3,H,W] in -1..1 (differentiable)
Decoder = Callable[[torch.Tensor], torch.Tensor]


def feature_loss(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """L per image, [B]: Σ_tokens mean_d (f − g)² (features [B,N,D], reference [B or 1,N,D])."""
    if features.dim() == 2:
        features, reference = features[:, None], reference.reshape(reference.shape[0], 1, -1)
    dt = torch.promote_types(features.dtype, torch.float32)          # at least float32 (fp16 networks)
    diff = features.to(dt) - reference.to(features.device, dt)
    return diff.pow(2).mean(dim=-1).sum(dim=-1)


def attribute_loss(features: torch.Tensor, target: torch.Tensor, source: Optional[torch.Tensor] = None,
                   sim_weight: float = 1.0, dissim_weight: float = 0.0) -> torch.Tensor:
    """w_sim · L(φ, φ(y_tgt)) − w_dis · L(φ, φ(y_src)), per image [B]."""
    loss = sim_weight * feature_loss(features, target)
    if dissim_weight != 0:
        if source is None:
            raise ValueError("dissim_weight != 0 needs the source image's features")
        loss = loss - dissim_weight * feature_loss(features, source)
    return loss


def guidance_active(scale: float, sim_weight: float, dissim_weight: float) -> bool:
    """Whether the correction can be non-zero (otherwise nothing is decoded or differentiated)."""
    return scale != 0 and (sim_weight != 0 or dissim_weight != 0)


def attribute_gradient(x0: torch.Tensor, decode: Decoder, extractor: FeatureExtractor, target: torch.Tensor,
                       source: Optional[torch.Tensor] = None, *, scale: float = 0.8, sim_weight: float = 1.0,
                       dissim_weight: float = 0.0) -> torch.Tensor:
    """g = ρ · ∇_{x̂_0} [w_sim L(φ(D(x̂_0)), φ(y_tgt)) − w_dis L(φ(D(x̂_0)), φ(y_src))], shaped like x̂_0.

    ``target``/``source`` are the precomputed features φ(y_tgt), φ(y_src). Each image's loss depends
    on its own latent only, so the batch's gradients are the per-image ones. Exactly zero (and nothing
    is evaluated) when the guidance is off (ρ = 0, or both weights 0).
    """
    if not guidance_active(scale, sim_weight, dissim_weight):
        return torch.zeros_like(x0)
    # ComfyUI runs nodes under torch.inference_mode(), where enable_grad alone records nothing: leave it,
    # and clone the (inference) tensors into ordinary ones that autograd may use.
    with torch.inference_mode(False), torch.enable_grad():
        x = x0.detach().clone().to(torch.promote_types(x0.dtype, torch.float32)).requires_grad_(True)
        target = target.clone()
        source = None if source is None else source.clone()
        loss = attribute_loss(extractor(decode(x)), target, source, sim_weight, dissim_weight)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return scale * grad


def corrected_step(x_prev: torch.Tensor, grad: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_{t-1} − σ_t · g: the adaptive correction (σ_t shrinks to ~0 at the last step)."""
    return x_prev - sigma * grad
