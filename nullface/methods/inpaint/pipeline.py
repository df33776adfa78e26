"""Inpainting with attribute guidance end to end: load SD1.5 inpainting, mask, repaint, paste back.

``anonymize_inpaint(pipe, images, masks, target, settings)`` runs papers/000 on aligned faces;
``inpaint_crop_anonymizer(pipe, target, settings)`` plugs it into ``nullface.privacy.photo.anonymize_photo``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..anonymizer import crop_anonymizer
from .guidance import attribute_gradient
from ...models.devices import pick_device, pick_dtype
from ...errors import InputError, ModelFileError, NullFaceError
from ...faces.imageio import check_face_images, check_masks, to_nhwc, to_uint8
from ...privacy.policy import check_mask_shares
from .settings import InpaintSettings
from .sampler import ldm_schedule, sample_inpaint, sd_alphas_cumprod
from ...diffusion.masks import latent_mask
from ...models.files import (check_checkpoint_file, check_files, check_model_folder, checkpoint_keys, load_or_explain,
                             require_file)
from ...models.quiet import expected_messages_silenced
from ...progress import tick
from ...models.sd15 import CONFIG_DIR, NullFacePipe, load_check

log = logging.getLogger("nullface")
Callback = Optional[Callable[[dict], None]]

INPAINT_CONFIG_DIR = CONFIG_DIR.parent / "sd15_inpainting"   # only the UNet differs: 9 input channels
INPAINT_HINT = ("Stable Diffusion 1.5 inpainting: 'sd-v1-5-inpainting.ckpt' (4.27 GB) from "
                "huggingface.co/stable-diffusion-v1-5/stable-diffusion-inpainting (CreativeML OpenRAIL-M), "
                "in ComfyUI/models/checkpoints, or a diffusers folder in ComfyUI/models/diffusers.")


@dataclass
class InpaintPipe(NullFacePipe):
    """SD1.5 inpainting (9-channel UNet, VAE, text encoder) and the optional feature extractor φ."""

    features: Any = None               # φ (nullface.models.farl.FarlFeatures or any differentiable callable)
    features_file: str | None = None   # φ's file when it was read from one: dropped on unload, read again

    # Moves happen outside inference mode, so that the parameters stay ordinary tensors autograd accepts.
    def offload(self) -> None:
        with torch.inference_mode(False):
            super().offload()
            if isinstance(self.features, torch.nn.Module) and self.device.type != "cpu":
                self.features.to("cpu")

    def _load_again(self, callback=None) -> "InpaintPipe":
        return load_inpaint_pipe(self.checkpoint, self.features_file or self.features, device=self.device,
                                 dtype=self.dtype, config_dir=self.config_dir, callback=callback)

    def _adopt(self, fresh: "InpaintPipe") -> None:
        super()._adopt(fresh)
        self.features = fresh.features

    def unload(self) -> None:
        """Drop the weights, FaRL's too when it came from a file (read again on next use)."""
        if self.features_file:
            self.features = None
        super().unload()

    def ready(self, callback=None) -> "InpaintPipe":
        with torch.inference_mode(False):
            super().ready(callback)
            if self.features is None and self.features_file:       # dropped on unload (or alone): read again
                from ...models.farl import load_farl
                with expected_messages_silenced(load_check(callback)):
                    self.features = load_farl(self.features_file, self.device, torch.float32)
            if isinstance(self.features, torch.nn.Module):
                self.features.to(self.device)
        return self


def check_inpainting_checkpoint(path: Path) -> None:
    """Reject single files that are not an SD1.x inpainting checkpoint, naming what they are."""
    keys = checkpoint_keys(path, INPAINT_HINT)
    first = keys.get("model.diffusion_model.input_blocks.0.0.weight")
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        raise ModelFileError(f"'{path.name}' is an SDXL checkpoint; the inpainting method needs Stable "
                             f"Diffusion 1.5 inpainting. {INPAINT_HINT}")
    if first is None:
        raise ModelFileError(f"'{path.name}' is not a Stable Diffusion checkpoint (no UNet weights found). "
                             f"{INPAINT_HINT}")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ModelFileError(f"'{path.name}' is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder); "
                             f"the inpainting method here uses Stable Diffusion 1.5 inpainting. {INPAINT_HINT}")
    if first[1] == 4:
        raise ModelFileError(f"'{path.name}' is a plain 4-channel SD1.5 checkpoint (the NullFace model); the "
                             f"inpainting method needs the 9-channel SD1.5 inpainting UNet. {INPAINT_HINT}")
    if first[1] != 9:
        raise ModelFileError(f"'{path.name}' has a {first[1]}-channel UNet; the inpainting method needs the "
                             f"9-channel SD1.5 inpainting UNet. {INPAINT_HINT}")


def load_sd15_inpainting(path: str | os.PathLike, device: torch.device, dtype: torch.dtype,
                         config_dir: str | os.PathLike | None = None):
    """A diffusers StableDiffusionInpaintPipeline from a diffusers folder or one .safetensors/.ckpt file.

    Single files use the shipped SD1.5 configs (``nullface/models/configs/sd15``, the UNet's from
    ``configs/sd15_inpainting``), or ``config_dir`` for every component; nothing is fetched.
    """
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    path = require_file(path, "Stable Diffusion 1.5 inpainting checkpoint", INPAINT_HINT)
    common = dict(torch_dtype=dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    failure = f"'{path.name}' could not be loaded as Stable Diffusion 1.5 inpainting"
    if path.is_dir():
        check_model_folder(path, INPAINT_HINT)
        unet_channels = UNet2DConditionModel.load_config(str(path), subfolder="unet").get("in_channels")
        if unet_channels != 9:
            raise ModelFileError(f"'{path.name}' has a {unet_channels}-channel UNet (not inpainting); the "
                                 f"inpainting method needs the 9-channel SD1.5 inpainting UNet. {INPAINT_HINT}")
        pipe = load_or_explain(
            lambda: StableDiffusionInpaintPipeline.from_pretrained(str(path), feature_extractor=None, **common),
            failure, INPAINT_HINT)
    else:
        check_checkpoint_file(path, INPAINT_HINT)
        check_inpainting_checkpoint(path)

        def load():
            unet = UNet2DConditionModel.from_single_file(str(path), config=str(config_dir or INPAINT_CONFIG_DIR),
                                                         subfolder="unet", torch_dtype=dtype, local_files_only=True)
            return StableDiffusionInpaintPipeline.from_single_file(str(path), config=str(config_dir or CONFIG_DIR),
                                                                   unet=unet, **common)
        pipe = load_or_explain(load, failure, INPAINT_HINT)
    unet = pipe.unet
    if unet.config.in_channels != 9 or getattr(pipe, "text_encoder_2", None) is not None \
            or unet.config.addition_embed_type is not None:
        raise ModelFileError(f"'{path.name}' is not an SD1.5 inpainting model. {INPAINT_HINT}")
    return pipe.to(device)


def check_inpaint_files(checkpoint, features=None, target=None) -> None:
    """Every missing file of the inpainting method (checkpoint, FaRL file, target image) in one message."""
    from ...models.farl import FARL_HINT
    check_files([(checkpoint, "Stable Diffusion 1.5 inpainting checkpoint", INPAINT_HINT),
                 (features, "FaRL feature extractor", FARL_HINT),
                 (target, "target image", "Give the synthesized target face the repainted faces take their "
                                          "attributes from (--target), or set --inpaint-guidance-scale 0.")])


def load_inpaint_pipe(checkpoint: str | os.PathLike, features: str | os.PathLike | Any | None = None, *,
                      device: str | torch.device = "auto", dtype: str | torch.dtype | None = "auto",
                      config_dir: str | os.PathLike | None = None, callback=None) -> InpaintPipe:
    """SD1.5 inpainting + φ: a FaRL file path, any differentiable callable, or None (guidance off only).
    ``callback`` as ``load_pipe``'s (a Cancel can stop the load between its parts)."""
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    check_inpaint_files(checkpoint, features if isinstance(features, (str, os.PathLike)) else None)
    phi = features
    # Built outside inference mode (ComfyUI runs nodes inside it): the guidance backpropagates through the
    # VAE decoder and φ, which inference-mode parameters would refuse.
    check = load_check(callback)
    with torch.inference_mode(False), expected_messages_silenced(check):   # no loading bars (models/quiet.py)
        if isinstance(features, (str, os.PathLike)):
            from ...models.farl import load_farl
            phi = load_farl(features, dev, torch.float32)       # fail fast on a wrong file before the big load
            check()
        pipe = load_sd15_inpainting(checkpoint, dev, dt, config_dir)
        check()
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)                         # the guidance differentiates x̂_0 only
    log.info("Inpainting pipeline: %s on %s (%s), feature extractor: %s", Path(checkpoint).name, dev, dt,
             getattr(phi, "path", None) or (type(phi).__name__ if phi is not None else "none"))
    return InpaintPipe(pipeline=pipe, device=dev, dtype=dt, checkpoint=str(checkpoint), faceid="", features=phi,
                       features_file=str(features) if isinstance(features, (str, os.PathLike)) else None)


def _sample_latents(pipe: InpaintPipe, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """z = E(x) drawn from the VAE posterior (ldm's get_first_stage_encoding), times the scale factor."""
    dist = pipe.vae.encode(x.to(pipe.device, pipe.dtype)).latent_dist
    eps = torch.randn(dist.mean.shape, generator=g).to(pipe.device)
    return (dist.mean.float() + dist.std.float() * eps) * pipe.vae_scale


def _target_images(target, size: tuple[int, int], batch: int) -> torch.Tensor:
    """The target image(s) y_tgt as [B,3,H,W] in -1..1 at the faces' size (one target, or one per face)."""
    t = to_nhwc(target)[..., :3]
    if t.shape[-1] != 3:
        raise InputError("the target image must be RGB")
    if t.shape[0] not in (1, batch):
        raise InputError(f"got {t.shape[0]} target images for {batch} faces: give one, or one per face")
    if not torch.isfinite(t).all() or t.min() < -1e-3 or t.max() > 1 + 1e-3:
        raise InputError("target image values must lie in 0..1 (ComfyUI IMAGE) or 0..255 (uint8)")
    t = t.clamp(0, 1).permute(0, 3, 1, 2) * 2 - 1
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return t.expand(batch, -1, -1, -1)


def anonymize_inpaint(pipe: InpaintPipe, images, masks, target=None,
                      settings: InpaintSettings = InpaintSettings(), *, features=None,
                      callback: Callback = None, stats: dict | None = None) -> torch.Tensor:
    """Repaint the masked region of aligned faces with attribute guidance; returns [B,H,W,3] float 0..1.

    ``masks`` (1 = regenerate, 0 = keep; binarized at 0.5 as the reference's parsing masks) at the image
    size; ``target``: the synthesized target face (any size, one or one per image), needed when the
    guidance is on. ``features`` overrides the pipe's φ. ``stats`` (a dict) receives the cost.
    """
    settings.validate()
    x = check_face_images(to_nhwc(images))                               # y, [B,3,H,W] in -1..1
    b, _, h, w = x.shape
    m = check_masks(masks, b, (h, w))
    if m is None:
        raise InputError("the inpainting method needs a mask of the region to repaint (1 = anonymize)")
    check_mask_shares(m)                                  # too little of the face to repaint: refused
    m_pix = (m >= 0.5).float()[:, None]                                  # m, hard as the reference's masks
    if settings.guided:
        if features is None and pipe.features is None and not pipe.features_file:
            raise ModelFileError("the attribute guidance needs its feature extractor (FaRL): load it with the "
                                 "pipe, or set guidance_scale to 0 for plain SD inpainting. " + _farl_hint())
        if target is None:
            raise InputError("the attribute guidance needs a target image (e.g. a synthesized face)")
    pipe = pipe.ready(callback)
    phi = features if features is not None else pipe.features            # (read again after an unload)
    dev, dt = pipe.device, pipe.dtype
    g = torch.Generator().manual_seed(int(settings.seed))
    schedule = ldm_schedule(settings.steps, sd_alphas_cumprod(dict(pipe.modules.scheduler.config)))
    count = {"unet_evals": 0, "guidance_backward": 0}
    with torch.no_grad():
        tick(callback, "encode")
        z0 = _sample_latents(pipe, x, g)                                 # E(y)
        tick(callback, "encode")
        masked = _sample_latents(pipe, x * (1 - m_pix), g)              # E(y ⊙ (1 − m))
        lh, lw = z0.shape[-2:]
        m_lat = latent_mask(m_pix[:, 0], (lh, lw)).to(dev)              # m at latent size (nearest)
        text = pipe.encode_prompt(settings.prompt).expand(b, -1, -1)
        abar_start = sd_alphas_cumprod(dict(pipe.modules.scheduler.config))[settings.start_t]
        n = torch.randn(z0.shape, generator=g).to(dev)
        x_t = abar_start.sqrt() * z0 + (1 - abar_start).sqrt() * n     # q(z_T | E(y)) at t = start_t
        noise = torch.randn((schedule.steps, *z0.shape), generator=g)

        def eps(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            count["unet_evals"] += int(z.shape[0])
            inp = torch.cat([z, m_lat, masked], dim=1).to(dev, dt)
            return pipe.unet(inp, t.to(dev), encoder_hidden_states=text.to(dev, dt)).sample.float()

        guidance = None
        if settings.guided:
            tgt_feats = phi(_target_images(target, (h, w), b).to(dev)).detach()        # φ(y_tgt), once
            src_feats = phi(x.to(dev)).detach() if settings.dissim_weight else None   # φ(y)

            def decode(z: torch.Tensor) -> torch.Tensor:
                return pipe.vae.decode((z / pipe.vae_scale).to(dt)).sample.float()   # D(x̂_0), -1..1

            def guidance(x0: torch.Tensor, k: int) -> torch.Tensor:
                tick(callback, "guidance")                               # a VAE decode and its backward
                count["guidance_backward"] += int(x0.shape[0])
                return attribute_gradient(x0, decode, phi, tgt_feats, src_feats, scale=settings.guidance_scale,
                                          sim_weight=settings.sim_weight, dissim_weight=settings.dissim_weight)

        latents = sample_inpaint(eps, x_t, schedule, noise, guidance, callback)
        tick(callback, "decode")
        out = pipe.vae.decode((latents / pipe.vae_scale).to(dt)).sample.float().clamp(-1, 1)
    if not torch.isfinite(out).all():
        raise NullFaceError("the model produced NaN/inf values (try precision fp32 or bf16); "
                                 "nothing is returned for these faces")
    out = ((out + 1) / 2).cpu()
    if settings.keep_unmasked:                                           # kept pixels: exactly the input's
        out = torch.where(m_pix.cpu() > 0, out, (x.cpu() + 1) / 2)
    if stats is not None:
        stats.update(count, steps=schedule.steps)
    return out.permute(0, 2, 3, 1)


def _farl_hint() -> str:
    from ...models.farl import FARL_HINT
    return FARL_HINT


def crop_inpaint_mask(crop, region: str = "face") -> np.ndarray:
    """The region a photo's face crop repaints: the landmark ``face`` region (jaw line, brows, forehead;
    the reference's parsed skin and features) times the crop's anonymization mask (kept regions 0)."""
    from ...faces.regions import face_landmarks, region_mask
    lm = crop.to_crop(face_landmarks(crop.face))
    m = region_mask(lm, (crop.size, crop.size), region)
    return m if crop.mask is None else m * np.asarray(crop.mask, np.float32)


def next_seed(settings: InpaintSettings, k: int) -> InpaintSettings:
    """The audit's escalation for this method: try again with the next seed (another repainted face)."""
    return replace(settings, seed=settings.seed + 1)


def inpaint_crop_anonymizer(pipe: InpaintPipe, target, settings: InpaintSettings, *, features=None,
                            audit=None, max_tries: int = 1, callback: Callback = None):
    """The inpainting method as a ``nullface.privacy.photo`` anonymizer: ``f(image, crops) -> results``
    (``nullface.methods.anonymizer.crop_anonymizer``).

    Every face of a call runs as one batch with the same target image; an error is returned for each
    face of a failed batch, so the photo's fail-closed policy applies to them. With ``audit``
    (``nullface.methods.anonymizer.crop_audit``) a face still re-identified is repainted with the next seed, up to
    ``max_tries`` in all; if it still fails, an error is returned for it. Audits land in ``f.audits``.
    """
    settings.validate()

    def paint(crops: list, _conditions: list, s: InpaintSettings) -> list:
        masks = np.stack([crop_inpaint_mask(c) for c in crops]).astype(np.float32)
        if not (masks >= 0.5).any(axis=(1, 2)).all():
            raise InputError("a face's repaint region is empty (every part of it is kept)")
        out = anonymize_inpaint(pipe, [c.image for c in crops], masks, target, s, features=features,
                                callback=callback)
        return list(to_uint8(out))
    return crop_anonymizer(paint, settings, next_seed, audit=audit, max_tries=max_tries, callback=callback)
