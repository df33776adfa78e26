"""What every NullFace node shares: type names, tensor conversion, and lazy ComfyUI hooks.

Nothing here imports ComfyUI at module load: the pack imports and its tests run without it.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from ..nullface.errors import Cancelled

log = logging.getLogger("nullface")

CATEGORY = "NullFace"

# Custom socket types passed between NullFace nodes.
PIPE = "NULLFACE_PIPE"            # SD1.5 + IP-Adapter FaceID (nullface.models.sd15.NullFacePipe)
FACE_MODELS = "NULLFACE_FACE_MODELS"  # detector + ArcFace (nullface.faces.identity.FaceModels)
EMBEDS = "NULLFACE_EMBEDS"        # list[nullface.faces.identity.FaceEmbedding], one per image
IDENTITY = "NULLFACE_IDENTITY"    # nullface.faces.identity.IdentityCondition (negated identities)
INVERSION = "NULLFACE_INVERSION"  # nullface.diffusion.inversion.Inversion
FACES = "NULLFACE_FACES"          # detected faces per image (nullface.privacy.photo.PhotoFaces)
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


def check_interrupt() -> None:
    """Raise ``Cancelled`` when the user pressed Cancel in ComfyUI (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except Exception:
        return
    try:
        mm.throw_exception_if_processing_interrupted()
    except mm.InterruptProcessingException:
        raise Cancelled("cancelled in ComfyUI") from None


def cancel_point(info: dict | None = None) -> None:
    """An engine callback that only honours Cancel (a model load: no bar to move)."""
    check_interrupt()


def cancellable(method):
    """Node method decorator: a ``Cancelled`` run leaves the node as ComfyUI's own interrupt, so ComfyUI
    reports "interrupted" (not an error) and runs nothing downstream."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Cancelled:
            try:
                import comfy.model_management as mm
            except Exception:
                raise
            raise mm.InterruptProcessingException() from None
    return wrapper


class Progress:
    """ComfyUI's progress bar, counted in image-steps (one inversion or denoising step of one image), and
    the engine callback that moves it and honours Cancel after every UNet call.

    The engine calls it with ``info`` holding ``steps`` (steps finished by that UNet call) and ``batch``
    (images in it); ``{"phase": "expect", "work": n}`` announces n more image-steps (e.g. a retry).
    """

    def __init__(self, total: int = 0):
        self.total, self.done = int(total), 0
        try:
            import comfy.utils
            self._bar = comfy.utils.ProgressBar(max(1, self.total))
        except Exception:  # not running inside ComfyUI
            self._bar = None

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.update_absolute(min(self.done, self.total), max(1, self.total))

    def expect(self, work: int) -> None:
        """Add ``work`` image-steps to the total (work discovered on the way: faces, retries)."""
        self.total += int(work)
        self._show()

    def finish(self) -> None:
        self.done = self.total
        self._show()

    def __call__(self, info: dict) -> None:
        check_interrupt()
        if info.get("phase") == "expect":
            self.expect(info["work"])
            return
        work = int(info.get("steps", 1)) * int(info.get("batch", 1))
        if work:                             # 0: a point to honour Cancel (VAE call, model load), no work
            self.done += work
            self._show()


def step_callback(total: int) -> Progress:
    """The engine callback for a node whose work is ``total`` image-steps (same as ``Progress(total)``)."""
    return Progress(total)
