"""Validation and conversion of the images and masks the engine accepts."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .errors import InputError

MIN_SIZE = 64
MAX_SIZE = 2048


def to_nhwc(images) -> torch.Tensor:
    """Images as a float32 tensor [B,H,W,C] in 0..1.

    Accepts a ComfyUI IMAGE tensor [B,H,W,C] (0..1), a uint8/float numpy array (HxWxC or BxHxWxC),
    a PIL image, or a list of these of one size.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise InputError("the image batch is empty")
        parts = [to_nhwc(im) for im in images]
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise InputError(f"images in one batch must share one size, got {sorted(shapes)}")
        return torch.cat(parts)
    if hasattr(images, "mode") and hasattr(images, "size"):          # PIL
        images = np.asarray(images)
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim == 3:
            arr = arr[None]
        t = torch.from_numpy(np.array(arr))                            # a writable copy
        t = t.float() / 255.0 if arr.dtype == np.uint8 else t.float()
    elif isinstance(images, torch.Tensor):
        t = images.float()
        if t.ndim == 3:
            t = t[None]
    else:
        raise InputError(f"unsupported image type {type(images).__name__}")
    if t.ndim != 4:
        raise InputError(f"expected images shaped [B,H,W,C], got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise InputError("the image batch is empty")
    return t


def check_face_images(images: torch.Tensor, *, square: bool = True) -> torch.Tensor:
    """Check aligned face images [B,H,W,C] for the diffusion engine and return them as [B,3,H,W] in [-1,1]."""
    b, h, w, c = images.shape
    if c == 1:
        raise InputError("the image is grayscale (1 channel); convert it to RGB first")
    if c == 4:
        raise InputError("the image has an alpha channel (RGBA); convert it to RGB first "
                         "(Anonymize Photo and the CLI keep the alpha for you)")
    if c != 3:
        raise InputError(f"expected 3 colour channels, got {c}")
    if not torch.isfinite(images).all():
        raise InputError("the image contains NaN or infinite values")
    if square and h != w:
        raise InputError(f"the face image is {w}x{h}; the method works on square, aligned face crops "
                         "(e.g. 512x512). Use 'NullFace Anonymize Photo' (or `python -m nullface anonymize`) "
                         "for whole photos, or crop/resize it first")
    if min(h, w) < MIN_SIZE:
        raise InputError(f"the face image is {w}x{h}, too small: at least {MIN_SIZE}x{MIN_SIZE} (512x512 is best)")
    if max(h, w) > MAX_SIZE:
        raise InputError(f"the face image is {w}x{h}, too large for SD1.5: at most {MAX_SIZE} (512x512 is best)")
    if h % 8 or w % 8:
        raise InputError(f"the face image is {w}x{h}; both sides must be multiples of 8 for the VAE")
    if images.min() < -1e-3 or images.max() > 1 + 1e-3:
        raise InputError("image values must lie in 0..1 (ComfyUI IMAGE) or 0..255 (uint8)")
    return images.clamp(0, 1).permute(0, 3, 1, 2) * 2 - 1


def check_masks(masks, batch: int, size: Sequence[int]) -> torch.Tensor | None:
    """Masks [B or 1, H, W] (1 = anonymize) of the images' size, as float32; None stays None."""
    if masks is None:
        return None
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks).float()
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InputError(f"a mask must be [H,W] or [B,H,W], got {tuple(m.shape)}")
    if tuple(m.shape[-2:]) != tuple(size):
        raise InputError(f"the mask is {m.shape[-1]}x{m.shape[-2]} but the image is {size[1]}x{size[0]}; "
                         "resize the mask to the image")
    if m.shape[0] not in (1, batch):
        raise InputError(f"got {m.shape[0]} masks for {batch} images: give one mask, or one per image")
    if not torch.isfinite(m).all():
        raise InputError("the mask contains NaN or infinite values")
    if m.min() < 0 or m.max() > 1:
        raise InputError("mask values must lie in 0..1 (1 = anonymize, 0 = keep)")
    return m.expand(batch, -1, -1)
