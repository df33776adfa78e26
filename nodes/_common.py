"""What every NullFace node shares: type names, tensor conversion, and lazy ComfyUI hooks.

Nothing here imports ComfyUI at module load: the pack imports and its tests run without it.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

log = logging.getLogger("nullface")

CATEGORY = "NullFace"

# Custom socket types passed between NullFace nodes.
PIPE = "NULLFACE_PIPE"            # SD1.5 + IP-Adapter FaceID (nullface.models.NullFacePipe)
FACE_MODELS = "NULLFACE_FACE_MODELS"  # detector + ArcFace (nullface.identity.FaceModels)
EMBEDS = "NULLFACE_EMBEDS"        # list[nullface.identity.FaceEmbedding], one per image
IDENTITY = "NULLFACE_IDENTITY"    # nullface.identity.IdentityCondition (negated identities)
INVERSION = "NULLFACE_INVERSION"  # nullface.inversion.Inversion
FACES = "NULLFACE_FACES"          # detected faces per image (nullface.photo.PhotoFaces)
AUDIT = "NULLFACE_AUDIT"          # re-identification audit results


def images_to_numpy(images: torch.Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE [B,H,W,C] float 0..1 -> list of HxWx3 uint8 RGB arrays."""
    if images.ndim == 3:
        images = images[None]
    if images.shape[0] == 0:
        raise ValueError("the image batch is empty")
    arr = (images[..., :3].detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [np.ascontiguousarray(a) for a in arr]


def numpy_to_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """List of HxWx3 uint8 arrays (same size) -> ComfyUI IMAGE [B,H,W,3] float 0..1."""
    return torch.from_numpy(np.stack([a.astype(np.float32) / 255.0 for a in arrays]))


def masks_to_numpy(masks: torch.Tensor | None, count: int) -> list[np.ndarray | None]:
    """ComfyUI MASK [B,H,W] (or [H,W]) -> ``count`` float32 arrays; a single mask is reused."""
    if masks is None:
        return [None] * count
    if masks.ndim == 2:
        masks = masks[None]
    arr = masks.detach().float().cpu().numpy().astype(np.float32)
    if arr.shape[0] not in (1, count):
        raise ValueError(f"got {arr.shape[0]} masks for {count} images: give one mask, or one per image")
    return [arr[i if arr.shape[0] > 1 else 0] for i in range(count)]


def progress(total: int) -> Callable[[int], None]:
    """A callback that moves ComfyUI's progress bar (a no-op outside ComfyUI)."""
    try:
        import comfy.utils
        bar = comfy.utils.ProgressBar(total)
    except Exception:  # not running inside ComfyUI
        return lambda n=1: None
    return lambda n=1: bar.update(n)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except Exception:
        return
    mm.throw_exception_if_processing_interrupted()


def free_comfy_memory(models: bool = True) -> None:
    """Ask ComfyUI to unload its own models (our pipeline lives outside its model management)."""
    try:
        import comfy.model_management as mm
    except Exception:
        return
    if models:
        mm.unload_all_models()
    mm.soft_empty_cache()


def step_callback(total: int):
    """An engine callback: moves the progress bar per step and stops on Cancel."""
    bar = progress(total)

    def callback(info: dict) -> None:
        check_interrupt()
        bar(1)
    return callback
