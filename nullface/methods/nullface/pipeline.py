"""The method end to end: encode, invert, embed and negate, sample, decode.

Each step is a function of its own (the ComfyUI nodes wrap them one by one);
``anonymize_face`` chains them for one call.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .denoiser import PipeDenoiser
from ...models.devices import pick_inversion_batch
from ...errors import InputError
from ...faces.identity import FaceEmbedding, FaceModels, IdentityCondition, embed_images, negate_identities
from ...faces.imageio import check_face_images, check_masks, to_nhwc, to_uint8
from ...privacy.policy import check_mask_shares
from ...diffusion.inversion import Inversion, invert
from ...diffusion.masks import latent_mask
from ...models.sd15 import NullFacePipe
from ..anonymizer import arcface_identity, crop_anonymizer as neutral_anonymizer
from .sampler import sample_nullface
from ...diffusion.schedule import schedule_from_config
from .settings import NullFaceSettings

log = logging.getLogger("nullface")
Callback = Optional[Callable[[dict], None]]


def encode(pipe: NullFacePipe, images, callback: Callback = None) -> torch.Tensor:
    """Latents x0 = VAE mode · 0.18215 of face images (any accepted layout), [B,4,H/8,W/8] float32.
    ``callback`` may stop the run before each image's VAE call (and during a reload of the weights)."""
    return pipe.vae_encode(check_face_images(to_nhwc(images)), callback)


def decode(pipe: NullFacePipe, latents: torch.Tensor, callback: Callback = None) -> torch.Tensor:
    """Images [B,H,W,3] float 0..1 (ComfyUI layout) from latents; ``callback`` as ``encode``'s."""
    return pipe.vae_decode(latents, callback)


def invert_latents(pipe: NullFacePipe, x0: torch.Tensor, settings: NullFaceSettings,
                   callback: Callback = None, seeds: Sequence[int] | None = None) -> Inversion:
    """DDPM inversion of latents on the null path, keeping only the steps sampling will use (``seeds``: one
    noise seed per image instead of ``settings.seed`` for the batch)."""
    settings.validate()
    pipe.ready(callback)
    schedule = schedule_from_config(pipe.scheduler_config, settings.steps)
    denoiser = PipeDenoiser(pipe, null_scale=settings.ip_adapter_scale)
    return invert(denoiser.null, x0.to(pipe.device), schedule, settings.t_skip,
                  settings.seed if seeds is None else [int(v) for v in seeds],
                  batch=pick_inversion_batch(pipe.device, settings.inversion_batch), exact_last_step=settings.exact_last_step,
                  ip_adapter_scale=settings.ip_adapter_scale, callback=callback)


def invert_images(pipe: NullFacePipe, images, settings: NullFaceSettings, callback: Callback = None,
                  seeds: Sequence[int] | None = None) -> Inversion:
    """Encode and invert face images: one inversion per image of the batch."""
    return invert_latents(pipe, encode(pipe, images, callback), settings, callback, seeds)


def identities_for(face_models: FaceModels, images, settings: NullFaceSettings,
                   pick: str | int = "largest") -> tuple[list[FaceEmbedding], IdentityCondition]:
    """ArcFace embedding e of each image's face and its negation c_id = -λ_id·e."""
    embeddings = embed_images(face_models, images, pick)
    return embeddings, negate_identities(embeddings, settings.lambda_id, settings.max_angle, settings.seed)


def sample_latents(pipe: NullFacePipe, inversion: Inversion, identity: IdentityCondition,
                   settings: NullFaceSettings, masks=None, callback: Callback = None) -> torch.Tensor:
    """Dual-path identity guidance from the inversion; ``masks`` [B,H,W] image-size, 1 = anonymize."""
    settings.validate()
    b = inversion.batch
    if len(identity) not in (1, b):
        raise InputError(f"{len(identity)} identities for {b} inverted images: give one, or one per image")
    h, w = inversion.image_size
    m = check_masks(masks, b, (h * 8, w * 8))
    if m is not None:
        check_mask_shares(m)                              # too little of the face to change: refused
    m = None if m is None else latent_mask(m, (h, w), soft=settings.soft_mask).to(inversion.x0.device)
    pipe.ready(callback)
    denoiser = PipeDenoiser(pipe, identity.vectors, settings.prompt, cond_scale=settings.ip_adapter_scale,
                            null_scale=inversion.ip_adapter_scale)
    return sample_nullface(denoiser, inversion.x_start, inversion.zs, inversion.schedule, inversion.t_skip,
                           settings.lambda_cfg, m, settings.mask_delay_steps, callback,
                           eps_null_first=inversion.eps_first)


def unet_evals_per_face(settings: NullFaceSettings = NullFaceSettings()) -> int:
    """UNet evaluations one face costs: the inverted steps, then two per sampling step less the first
    step's null prediction, which the inversion already made (``Inversion.eps_first``). Defaults: 29 + 59 = 88."""
    reused = 1 if settings.inversion_steps > 0 else 0          # step T_skip was inverted
    return settings.inversion_steps + 2 * settings.sample_steps - reused


def anonymize_face(pipe: NullFacePipe, images, settings: NullFaceSettings = NullFaceSettings(), *,
                   face_models: FaceModels | None = None,
                   embeddings: Sequence[FaceEmbedding | np.ndarray] | None = None,
                   masks=None, keep_masks=None, callback: Callback = None,
                   seeds: Sequence[int] | None = None) -> torch.Tensor:
    """Anonymize aligned face images in one call; returns [B,H,W,3] float 0..1.

    The identity comes from ``embeddings`` (one per image) or is detected with ``face_models``.
    ``seeds`` (one per image) gives each image its own inversion noise and identity rotation, the same
    whatever batch it runs in (a video track's); by default the batch shares ``settings.seed``.
    ``masks`` (1 = anonymize, 0 = keep) or ``keep_masks`` (1 = keep visible) localize the change;
    neither anonymizes the whole image.
    """
    settings.validate()
    if keep_masks is not None:
        if masks is not None:
            raise InputError("give masks (1 = anonymize) or keep_masks (1 = keep), not both")
        masks = 1.0 - torch.as_tensor(np.asarray(keep_masks, np.float32))
    batch = to_nhwc(images)
    if embeddings is None:
        if face_models is None:
            raise InputError("give face_models (to detect and embed the face) or precomputed embeddings")
        _, identity = identities_for(face_models, batch, settings)
    else:
        if len(embeddings) != batch.shape[0]:
            raise InputError(f"{len(embeddings)} embeddings for {batch.shape[0]} images")
        identity = negate_identities(embeddings, settings.lambda_id, settings.max_angle, settings.seed, seeds)
    if seeds is not None and len(seeds) != batch.shape[0]:
        raise InputError(f"{len(seeds)} seeds for {batch.shape[0]} images")
    inversion = invert_images(pipe, batch, settings, callback, seeds)
    latents = sample_latents(pipe, inversion, identity, settings, masks, callback)
    return decode(pipe, latents, callback)


def anonymize_crops(pipe: NullFacePipe, crops: Sequence[np.ndarray], embeddings: Sequence[np.ndarray],
                    masks: Sequence[np.ndarray | None], settings: NullFaceSettings,
                    callback: Callback = None, seeds: Sequence[int] | None = None) -> list[np.ndarray]:
    """Anonymize aligned uint8 face crops (one batch); each with its own identity and optional mask
    (``seeds``: each crop's own seed, see ``anonymize_face``)."""
    if len(crops) == 0:
        return []
    if any(m is None for m in masks) and not all(m is None for m in masks):
        size = crops[0].shape[:2]
        masks = [np.ones(size, np.float32) if m is None else m for m in masks]
    mask_arr = None if all(m is None for m in masks) else np.stack(masks).astype(np.float32)
    out = anonymize_face(pipe, list(crops), settings, embeddings=list(embeddings), masks=mask_arr,
                         callback=callback, seeds=seeds)
    return list(to_uint8(out))


def crop_anonymizer(pipe: NullFacePipe, face_models: FaceModels, settings: NullFaceSettings, *,
                    audit=None, max_tries: int = 1, callback: Callback = None):
    """NullFace as a ``nullface.privacy.photo`` anonymizer: ``f(image, crops) -> results``
    (``nullface.methods.anonymizer.crop_anonymizer``).

    Each face uses its own ArcFace identity, taken from the photo at its detected landmarks; the crops
    of one call run as one batch. With ``audit`` (``f(original_crop, result, crop) -> FaceAudit``) a face
    that is still re-identified is retried with stronger settings up to ``max_tries`` in all
    (``nullface.privacy.audit.DEFAULT_ESCALATION``); if it still fails, an error is returned for it so that the
    photo's fail-closed policy applies. Audits are kept in ``f.audits`` (face index in call order).
    A crop that carries ``seed_offset`` (a video track's) uses the seed ``settings.seed + seed_offset`` for its
    noise and rotation, whatever batch it runs in; others share the batch's seed as for a photo.
    """
    from ...privacy.audit import DEFAULT_ESCALATION

    def crops_fn(crops: list, vectors: list, s: NullFaceSettings) -> list:
        offsets = [getattr(c, "seed_offset", None) for c in crops]
        seeds = None if all(o is None for o in offsets) else [s.seed + (o or 0) for o in offsets]
        return anonymize_crops(pipe, [c.image for c in crops], vectors, [c.mask for c in crops], s, callback,
                               seeds)
    return neutral_anonymizer(crops_fn, settings, DEFAULT_ESCALATION, identity=arcface_identity(face_models),
                              audit=audit, max_tries=max_tries, callback=callback, many_images=True)
