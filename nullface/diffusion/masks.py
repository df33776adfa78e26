"""Region masks M for localized anonymization (paper eq. 4): 1 = anonymize, 0 = keep.

Pure functions on float tensors [B,H,W] in 0..1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_mask(mask: torch.Tensor, latent_size: tuple[int, int], soft: bool = False) -> torch.Tensor:
    """M at latent resolution, [B,1,h,w].

    Default (the reference): binarize at 0.5, then nearest-neighbour downsampling, so M is hard 0/1.
    ``soft``: area-average, keeping feathered edges (an extension of the method).
    """
    m = mask.float()[:, None]
    if soft:
        return F.interpolate(m, size=latent_size, mode="area").clamp(0, 1)
    m = (m >= 0.5).float()
    return F.interpolate(m, size=latent_size, mode="nearest")


def invert(mask: torch.Tensor) -> torch.Tensor:
    """1 - M: turn a keep-mask into an anonymize-mask and back."""
    return 1.0 - mask


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (pixels < 0) by a square of ``|pixels|`` radius."""
    if pixels == 0:
        return mask
    k = 2 * abs(int(pixels)) + 1
    m = mask[:, None]
    if pixels > 0:
        out = F.max_pool2d(m, k, stride=1, padding=k // 2)
    else:
        out = -F.max_pool2d(-m, k, stride=1, padding=k // 2)
    return out[:, 0]


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Gaussian blur with sigma = radius / 2 (radius 0 returns the mask unchanged)."""
    if radius <= 0:
        return mask
    sigma = radius / 2.0
    half = max(1, int(round(3 * sigma)))
    x = torch.arange(-half, half + 1, dtype=torch.float32)
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(mask.dtype)
    m = mask[:, None]
    m = F.conv2d(F.pad(m, (half, half, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, half, half), mode="replicate"), g.view(1, 1, -1, 1))
    return m[:, 0].clamp(0, 1)


def combine(a: torch.Tensor, b: torch.Tensor, op: str = "union") -> torch.Tensor:
    """Combine two masks: union (max), intersection (min), subtract (a minus b), multiply."""
    if a.shape[-2:] != b.shape[-2:]:
        b = F.interpolate(b[:, None].float(), size=a.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    if b.shape[0] != a.shape[0]:
        if 1 not in (a.shape[0], b.shape[0]):
            raise ValueError(f"cannot combine mask batches of {a.shape[0]} and {b.shape[0]}")
        a, b = torch.broadcast_tensors(a, b)
    if op == "union":
        return torch.maximum(a, b)
    if op == "intersection":
        return torch.minimum(a, b)
    if op == "subtract":
        return (a - b).clamp(0, 1)
    if op == "multiply":
        return a * b
    raise ValueError(f"unknown mask operation '{op}' (union, intersection, subtract, multiply)")


def resize(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [B,H,W] masks to ``size`` (h, w)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
