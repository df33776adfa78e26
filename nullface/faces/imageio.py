"""Validation and conversion of the images and masks the engine accepts.

``to_uint8`` and ``to_float`` are the package's one conversion between float pixels in 0..1 (the diffusion
side, ComfyUI's IMAGE) and uint8 pixels (files, detection, crops, photos); every boundary uses them.
"""
from __future__ import annotations

from pathlib import Path

from typing import Sequence

import numpy as np
import torch

from ..errors import InputError

MIN_SIZE = 64
MAX_SIZE = 2048
FOUR_CHANNEL_MODES = ("RGBA", "CMYK")


def to_uint8(pixels) -> np.ndarray:
    """Float pixels in 0..1 (a tensor or an array, any shape) as uint8: clamped to 0..1, x · 255 rounded."""
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.detach().float().cpu().numpy()
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def to_float(pixels) -> np.ndarray:
    """uint8 pixels (any shape) as float32 in 0..1: x / 255."""
    return np.asarray(pixels).astype(np.float32) / 255.0


def _is_pil(image) -> bool:
    from PIL import Image
    return isinstance(image, Image.Image)


def pil_to_array(im) -> np.ndarray:
    """A PIL image's pixels as uint8 gray (HxW), RGB or RGBA, converted by its mode: palette images keep
    their transparency, LA/PA become RGBA, CMYK/YCbCr/LAB/HSV become RGB, 16-bit and float gray become 8 bit."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8)
    if im.mode == "F":
        arr = np.asarray(im, np.float64)
        return np.clip(np.round(arr * (255 if arr.max() <= 1 else 1)), 0, 255).astype(np.uint8)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA" if "A" in im.getbands() else "L" if im.mode == "1" else "RGB")
    return np.array(im)


def photo_array(image, mode: str | None = None) -> np.ndarray:
    """A photo for the engine as a uint8 array: gray HxW / HxWx1, RGB HxWx3 or RGBA HxWx4.

    A PIL image is converted by its own mode (``pil_to_array``). A 4-channel array says nothing about what
    its channels are, so its ``mode`` must be given: ``"RGBA"`` (the alpha is kept) or ``"CMYK"``
    (converted to RGB; the result is RGB). Arrays with 1 or 3 channels need no mode.
    """
    if _is_pil(image):
        return pil_to_array(image)
    arr = np.asarray(image)
    if arr.size == 0:
        raise InputError(f"the image is empty (shape {arr.shape})")
    if arr.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {arr.dtype} (convert floats with (x * 255).round())")
    if mode is not None and str(mode).upper() not in FOUR_CHANNEL_MODES:
        raise InputError(f"mode must be one of {', '.join(FOUR_CHANNEL_MODES)} (for 4-channel arrays), got {mode!r}")
    if arr.ndim == 3 and arr.shape[2] == 4:
        if mode is None:
            raise InputError("a 4-channel array can be RGBA or CMYK: say which with mode='RGBA' (alpha kept) or "
                             "mode='CMYK' (converted to RGB), or pass the PIL image itself")
        if str(mode).upper() == "CMYK":
            from PIL import Image
            return np.array(Image.frombytes("CMYK", (arr.shape[1], arr.shape[0]),
                                            np.ascontiguousarray(arr).tobytes()).convert("RGB"))
    return arr


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
    if _is_pil(images):                                                # converted by its mode (CMYK -> RGB)
        images = pil_to_array(images)
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim == 3:
            arr = arr[None]
        t = torch.from_numpy(to_float(arr) if arr.dtype == np.uint8 else np.array(arr)).float()
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


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file, upright (EXIF orientation applied): uint8 gray, RGB or RGBA.

    Animated or multi-page files (GIF, APNG, WebP, TIFF) are refused: NullFace anonymizes still images and
    never drops frames silently."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise InputError(f"animated or multi-page image ({frames} frames): only still images are anonymized "
                             "and no frame is dropped; split it into frames (e.g. ffmpeg -i in.gif frames/%04d.png), "
                             "anonymize that folder, then reassemble it")
        im.load()
        im = ImageOps.exif_transpose(im)          # phone pictures: apply the orientation, drop the EXIF
        return pil_to_array(im)
