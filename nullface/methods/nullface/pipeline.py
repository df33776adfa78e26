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
from ...errors import InputError, ModelFileError
from ...faces.identity import (BUFFALO_HINT, FaceEmbedding, FaceModels, IdentityCondition, embed_faces,
                       negate_identities)
from ...faces.imageio import check_face_images, check_masks, to_nhwc
from ...privacy.policy import check_mask_shares
from ...diffusion.inversion import Inversion, invert
from ...diffusion.masks import latent_mask
from ...models.sd15 import NullFacePipe
from .sampler import sample_nullface
from ...diffusion.schedule import schedule_from_config
from .settings import NullFaceSettings
from ...progress import tick

log = logging.getLogger("nullface")
Callback = Optional[Callable[[dict], None]]


@torch.no_grad()
def encode(pipe: NullFacePipe, images, callback: Callback = None) -> torch.Tensor:
    """Latents x0 = VAE mode · 0.18215 of face images (any accepted layout), [B,4,H/8,W/8] float32.
    ``callback`` may stop the run before each image's VAE call (and during a reload of the weights)."""
    x = check_face_images(to_nhwc(images)).to(pipe.ready(callback).device, pipe.dtype)
    latents = []
    for i in range(x.shape[0]):
        tick(callback, "encode")
        latents.append(pipe.vae.encode(x[i:i + 1]).latent_dist.mode())
    return torch.cat(latents).float() * pipe.vae_scale


@torch.no_grad()
def decode(pipe: NullFacePipe, latents: torch.Tensor, callback: Callback = None) -> torch.Tensor:
    """Images [B,H,W,3] float 0..1 (ComfyUI layout) from latents; ``callback`` as ``encode``'s."""
    z = latents.to(pipe.ready(callback).device, pipe.dtype) / pipe.vae_scale
    out = []
    for i in range(z.shape[0]):
        tick(callback, "decode")
        out.append(pipe.vae.decode(z[i:i + 1]).sample)
    return ((torch.cat(out).float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu()


def invert_latents(pipe: NullFacePipe, x0: torch.Tensor, settings: NullFaceSettings,
                   callback: Callback = None) -> Inversion:
    """DDPM inversion of latents on the null path, keeping only the steps sampling will use."""
    settings.validate()
    pipe.ready(callback)
    schedule = schedule_from_config(pipe.scheduler_config, settings.steps)
    denoiser = PipeDenoiser(pipe, null_scale=settings.ip_adapter_scale)
    return invert(denoiser.null, x0.to(pipe.device), schedule, settings.t_skip, settings.seed,
                  batch=pick_inversion_batch(pipe.device, settings.inversion_batch), exact_last_step=settings.exact_last_step,
                  ip_adapter_scale=settings.ip_adapter_scale, callback=callback)


def invert_images(pipe: NullFacePipe, images, settings: NullFaceSettings, callback: Callback = None) -> Inversion:
    """Encode and invert face images: one inversion per image of the batch."""
    return invert_latents(pipe, encode(pipe, images, callback), settings, callback)


def embed_images(face_models: FaceModels, images, pick: str | int = "largest") -> list[FaceEmbedding]:
    """ArcFace embedding e of the chosen face of each image (an image without one is named in the error)."""
    batch = to_nhwc(images)
    arrays = [(im[..., :3].clamp(0, 1).numpy() * 255).round().astype(np.uint8) for im in batch]
    return [embed_faces(face_models, a, pick=pick, image_index=i) for i, a in enumerate(arrays)]


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
                           settings.lambda_cfg, m, settings.mask_delay_steps, callback)


def anonymize_face(pipe: NullFacePipe, images, settings: NullFaceSettings = NullFaceSettings(), *,
                   face_models: FaceModels | None = None,
                   embeddings: Sequence[FaceEmbedding | np.ndarray] | None = None,
                   masks=None, keep_masks=None, callback: Callback = None) -> torch.Tensor:
    """Anonymize aligned face images in one call; returns [B,H,W,3] float 0..1.

    The identity comes from ``embeddings`` (one per image) or is detected with ``face_models``.
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
        identity = negate_identities(embeddings, settings.lambda_id, settings.max_angle, settings.seed)
    inversion = invert_images(pipe, batch, settings, callback)
    latents = sample_latents(pipe, inversion, identity, settings, masks, callback)
    return decode(pipe, latents, callback)


def anonymize_crops(pipe: NullFacePipe, crops: Sequence[np.ndarray], embeddings: Sequence[np.ndarray],
                    masks: Sequence[np.ndarray | None], settings: NullFaceSettings,
                    callback: Callback = None) -> list[np.ndarray]:
    """Anonymize aligned uint8 face crops (one batch); each with its own identity and optional mask."""
    if len(crops) == 0:
        return []
    if any(m is None for m in masks) and not all(m is None for m in masks):
        size = crops[0].shape[:2]
        masks = [np.ones(size, np.float32) if m is None else m for m in masks]
    mask_arr = None if all(m is None for m in masks) else np.stack(masks).astype(np.float32)
    out = anonymize_face(pipe, list(crops), settings, embeddings=list(embeddings), masks=mask_arr,
                         callback=callback)
    return [(o.numpy() * 255).round().astype(np.uint8) for o in out]


def crop_anonymizer(pipe: NullFacePipe, face_models: FaceModels, settings: NullFaceSettings, *,
                    audit=None, max_tries: int = 1, callback: Callback = None, crops_fn=None, escalate=None):
    """The diffusion engine as a ``nullface.privacy.photo`` anonymizer: ``f(image, crops) -> results``.

    Each face uses its own ArcFace identity, taken from the photo at its detected landmarks; the crops
    of one call run as one batch. With ``audit`` (``f(original_crop, result, crop) -> FaceAudit``) a face
    that is still re-identified is retried with stronger settings up to ``max_tries`` in all
    (``nullface.privacy.audit.DEFAULT_ESCALATION``); if it still fails, an error is returned for it so that the
    photo's fail-closed policy applies. Audits are kept in ``f.audits`` (face index in call order).
    Another method plugs in with ``crops_fn`` (``anonymize_crops``' signature) and its own ``escalate``.
    ``callback`` gets the engine's per-UNet-call progress, plus ``{"phase": "expect", "work": n}`` when a
    retry adds n image-steps (one inversion or denoising step of one image) to the work.
    """
    from ...privacy.audit import DEFAULT_ESCALATION, audit_crops
    anonymize_crops_ = crops_fn or anonymize_crops
    if face_models is None or face_models.arcface is None:
        raise ModelFileError("anonymizing faces needs ArcFace (w600k_r50.onnx in buffalo_l). " + BUFFALO_HINT)

    def run(image: np.ndarray, crops: list) -> list:
        results: list = [None] * len(crops)
        ok, vectors = [], []
        for i, c in enumerate(crops):
            try:
                vectors.append(face_models.arcface.embed(image, c.face.kps))
                ok.append(i)
            except Exception as exc:            # this face fails; the others go on
                results[i] = exc
        if ok:
            outs = anonymize_crops_(pipe, [crops[i].image for i in ok], vectors, [crops[i].mask for i in ok],
                                    settings, callback)
            for i, o in zip(ok, outs):
                results[i] = o
        if audit is None:
            return results
        vector = dict(zip(ok, vectors))
        return audit_crops(results, crops, audit, settings, max_tries, record=run.audits,
                           escalate=escalate or DEFAULT_ESCALATION, callback=callback,
                           retry=lambda i, s: anonymize_crops_(pipe, [crops[i].image], [vector[i]], [crops[i].mask],
                                                               s, callback)[0])

    run.audits = []
    run.keep = type(settings).KEEP          # the method's default kept regions (PhotoOptions.keep = None)
    run.audited = audit is not None        # every anonymized face passed the audit
    return run


def crop_audit(recognizers):
    """An audit for ``crop_anonymizer``: compares the original and anonymized crop of one face.

    The face is measured in crop coordinates (``FaceCrop.face_in_crop``: its detected box carried by the
    crop's similarity transform), so the recognizer sees the same framing as a detection on the crop; both
    sides are measured with the same geometry (``nullface.privacy.audit.paired_geometry``).
    """
    from ...privacy.audit import audit_face

    def audit(original: np.ndarray, result: np.ndarray, crop) -> object:
        return audit_face(original, result, crop.face_in_crop(), recognizers)
    return audit
