"""Reverse Personalization (papers/002): null-identity DPM-Solver++ inversion, then negative identity guidance.

1. **Invert** the face with DPM-Solver++(2M) SDE (``nullface.diffusion.dpmsolver``) on the *null identity* path: a zero
   identity vector through IP-Adapter FaceID SDXL, the empty prompt, and the initial attribute condition
   c_attr (SDXL's zeroed empty negative prompt), recording the noise maps z_i.
2. **Sample** the same steps with the same z_i, the attribute prompt updated to ĉ_attr and the identity
   e (ArcFace) on the identity path, with a *negative* guidance scale w (classifier-free guidance form):

       ε̂ = ε(x_t, ĉ_attr, ∅) + w · (ε(x_t, "", λ_id e) − ε(x_t, ĉ_attr, ∅)),   w < 0

   so the sample moves away from the identity e and towards the attributes ĉ_attr. With e = 0 and
   ĉ_attr = c_attr the sampler replays the inversion and returns the input exactly: the inversion evaluates
   the UNet at the corrected latents the replay computes, with the same rows in each call, so the replay sees
   the same inputs bit for bit and ends on the input up to one float rounding.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ...diffusion.dpmsolver import DPMInversion, invert_dpmpp_2m_sde, sample_dpmpp_2m_sde
from ...errors import InputError
from ...faces.identity import EMBED_DIM, FaceEmbedding, FaceModels, embed_images
from ...faces.imageio import check_face_images, to_float, to_nhwc, to_uint8
from ..anonymizer import arcface_identity, crop_anonymizer as neutral_anonymizer
from ...privacy.policy import check_mask_shares
from .settings import ReversePersonalizationSettings

log = logging.getLogger("nullface")
Callback = Optional[Callable[[dict], None]]


def branch_weights(guidance_scale: float) -> tuple[float, float]:
    """(weight of ε_u, weight of ε_c) in ε̂ = ε_u + w (ε_c − ε_u) = (1 − w) ε_u + w ε_c."""
    return 1.0 - guidance_scale, guidance_scale


class GuidedDenoiser:
    """ε̂(x_t) = (1 − w) ε(x_t, text_u, ∅) + w ε(x_t, text_c, c_id) on SDXL + FaceID; counts UNet evaluations.

    A branch whose weight is 0 is not evaluated; when both branches are the same condition (same text,
    zero identity: ``identities`` None or all zero) one evaluation serves both. Both branches of a step share
    one batched UNet call. The inversion and the null-path replay build it alike, so they call the UNet with
    the same rows.
    """

    def __init__(self, pipe, text_u, text_c, identities: Optional[np.ndarray], guidance_scale: float,
                 ip_adapter_scale: float, image_size: tuple[int, int]):
        self.pipe = pipe.ready()
        self.text_u, self.text_c = text_u, text_c           # (embeds [1,77,D], pooled [1,P])
        self.c_id = None if identities is None else torch.as_tensor(np.asarray(identities, np.float32))
        self.wu, self.wc = branch_weights(guidance_scale)
        self.scale = float(ip_adapter_scale)
        self.time_ids = pipe.time_ids(*image_size)
        self.evals = 0
        same = text_u[0] is text_c[0] and (self.c_id is None or not bool(self.c_id.any()))
        self.branches = [b for b, w in (("u", self.wu), ("c", self.wc)) if w != 0]
        if same:
            self.wu, self.wc, self.branches = 1.0, 0.0, ["u"]   # ε_u = ε_c: ε̂ = ε_u whatever w

    def _ids(self, branch: str, n: int) -> torch.Tensor:
        if branch == "u" or self.c_id is None:
            return torch.zeros(n, EMBED_DIM)
        if self.c_id.shape[0] == n:
            return self.c_id
        if n % self.c_id.shape[0]:
            raise InputError(f"{self.c_id.shape[0]} identities for {n} rows")
        return self.c_id.repeat(n // self.c_id.shape[0], 1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pipe, n = self.pipe, x.shape[0]
        dt, dev = pipe.dtype, pipe.device
        t = torch.as_tensor(t).reshape(-1).expand(n) if torch.as_tensor(t).numel() == 1 else t
        texts = {"u": self.text_u, "c": self.text_c}
        xs, ts, embeds, pooled, ids = [], [], [], [], []
        for b in self.branches:
            xs.append(x)
            ts.append(t)
            embeds.append(texts[b][0].expand(n, -1, -1))
            pooled.append(texts[b][1].expand(n, -1))
            ids.append(self._ids(b, n))
        pipe.set_ip_adapter_scale(self.scale)
        k = len(self.branches)
        with torch.no_grad():
            out = pipe.unet(torch.cat(xs).to(dev, dt), torch.cat(ts).to(dev),
                            encoder_hidden_states=torch.cat(embeds).to(dev, dt),
                            added_cond_kwargs={"text_embeds": torch.cat(pooled).to(dev, dt),
                                               "time_ids": self.time_ids.expand(k * n, -1),
                                               "image_embeds": [torch.cat(ids).to(dev, dt)[:, None, :]]}).sample
        self.evals += k * n
        eps = dict(zip(self.branches, out.float().to(x.device).split(n)))
        result = 0
        for b, w in (("u", self.wu), ("c", self.wc)):
            if w != 0:
                result = result + w * eps[b]
        return result


@dataclass
class RevPersInversion:
    """A DPM-Solver++ inversion on the null-identity path, with what the sampler must reuse."""

    dpm: DPMInversion
    settings: ReversePersonalizationSettings
    image_size: tuple[int, int]          # pixels (H, W)

    @property
    def batch(self) -> int:
        return int(self.dpm.x0.shape[0])

    @property
    def unet_evals(self) -> int:
        return self.dpm.unet_evals


def encode(pipe, images, callback: Callback = None) -> torch.Tensor:
    """Latents x0 = VAE mode · scaling factor of face images (any accepted layout), float32 (the SDXL VAE
    runs in its own precision). ``callback`` may stop the run before each image's VAE call."""
    return pipe.vae_encode(check_face_images(to_nhwc(images)), callback)


def decode(pipe, latents: torch.Tensor, callback: Callback = None) -> torch.Tensor:
    """Images [B,H,W,3] float 0..1 from latents; ``callback`` as ``encode``'s."""
    return pipe.vae_decode(latents, callback)


def initial_attribute(pipe):
    """c_attr of the inversion: SDXL's empty negative prompt (zeros, as its pipeline makes it)."""
    return pipe.encode_prompt(None if pipe.zero_empty_prompt else "")


def invert_latents(pipe, x0: torch.Tensor, settings: ReversePersonalizationSettings,
                   callback: Callback = None) -> RevPersInversion:
    """Null-identity DPM-Solver++ inversion of latents: ε̂ with zero identity on both branches.

    The denoiser is the one ``sample_latents`` builds for zero identities and no attribute prompt, called with
    the same batch, so that replay is exact (``invert_dpmpp_2m_sde``)."""
    settings.validate()
    pipe.ready(callback)
    size = (int(x0.shape[-2]) * 8, int(x0.shape[-1]) * 8)
    sched = settings.schedule()
    den = GuidedDenoiser(pipe, initial_attribute(pipe), pipe.encode_prompt(""), None, settings.guidance_scale,
                         settings.ip_adapter_scale, size)
    inv = invert_dpmpp_2m_sde(lambda x, i: den(x, sched.timesteps[i]), x0.to(pipe.device), sched, settings.seed,
                              callback=callback)
    inv.unet_evals = den.evals
    return RevPersInversion(dpm=inv, settings=settings, image_size=size)


def invert_images(pipe, images, settings: ReversePersonalizationSettings, callback: Callback = None):
    return invert_latents(pipe, encode(pipe, images, callback), settings, callback)


def identity_vectors(embeddings: Sequence[FaceEmbedding | np.ndarray], id_scale: float) -> np.ndarray:
    """λ_id · e per image (the identity the negative guidance steers away from)."""
    ReversePersonalizationSettings(id_scale=id_scale).validate()          # λ_id = 0: no identity to steer from
    if len(embeddings) == 0:
        raise InputError("no identity embeddings were given")
    rows = []
    for e in embeddings:
        v = np.asarray(e.vector if isinstance(e, FaceEmbedding) else e, np.float32).reshape(-1)
        if v.shape[0] != EMBED_DIM or not np.all(np.isfinite(v)):
            raise InputError(f"an identity embedding must be 512 finite numbers, got shape {v.shape}")
        rows.append(id_scale * v)
    return np.stack(rows).astype(np.float32)


def sample_latents(pipe, inversion: RevPersInversion, identities: np.ndarray, guidance_scale: float | None = None,
                   prompt: str | None = None, callback: Callback = None) -> tuple[torch.Tensor, int]:
    """Negative identity guidance over the inversion's noise maps; returns (latents, UNet evaluations).

    ``guidance_scale`` and ``prompt`` default to the inversion's settings; the identity path uses the
    empty prompt, the other path the attribute prompt ĉ_attr (empty = c_attr, the inversion's).
    """
    s = inversion.settings
    w = s.guidance_scale if guidance_scale is None else float(guidance_scale)
    prompt = s.prompt if prompt is None else prompt
    dataclasses.replace(s, guidance_scale=w, prompt=prompt).validate()   # w >= 0 or nan: refused
    ids = np.asarray(identities, np.float32)
    if ids.ndim != 2 or ids.shape[0] not in (1, inversion.batch):
        raise InputError(f"{len(ids)} identities for {inversion.batch} inverted images: give one, or one per image")
    pipe.ready(callback)
    text_u = pipe.encode_prompt(prompt) if prompt.strip() else initial_attribute(pipe)   # ĉ_attr
    den = GuidedDenoiser(pipe, text_u, pipe.encode_prompt(""), ids, w, s.ip_adapter_scale, inversion.image_size)
    sched = inversion.dpm.schedule
    x = sample_dpmpp_2m_sde(lambda x, i: den(x, sched.timesteps[i]), inversion.dpm.x_start, inversion.dpm.zs,
                            sched, callback)
    return x, den.evals


def anonymize_face(pipe, images, settings: ReversePersonalizationSettings = ReversePersonalizationSettings(), *,
                   face_models: FaceModels | None = None,
                   embeddings: Sequence[FaceEmbedding | np.ndarray] | None = None,
                   callback: Callback = None) -> torch.Tensor:
    """Reverse Personalization of aligned face images in one call; returns [B,H,W,3] float 0..1."""
    settings.validate()
    batch = to_nhwc(images)
    if embeddings is None:
        if face_models is None:
            raise InputError("give face_models (to detect and embed the face) or precomputed embeddings")
        embeddings = embed_images(face_models, batch)
    if len(embeddings) != batch.shape[0]:
        raise InputError(f"{len(embeddings)} embeddings for {batch.shape[0]} images")
    inversion = invert_images(pipe, batch, settings, callback)
    latents, _ = sample_latents(pipe, inversion, identity_vectors(embeddings, settings.id_scale), callback=callback)
    return decode(pipe, latents, callback)


def anonymize_crops(pipe, crops: Sequence[np.ndarray], embeddings: Sequence[np.ndarray],
                    masks: Sequence[np.ndarray | None] | None, settings: ReversePersonalizationSettings,
                    callback: Callback = None) -> list[np.ndarray]:
    """Anonymize uint8 face crops (same size) as one batch; returns uint8 crops.

    ``masks`` are the photo pipeline's crop masks M (1 = anonymize): the method has no region mask of
    its own, so where M < 1 the input pixels are blended back (M · result + (1 − M) · input).
    """
    batch = to_float(np.stack([np.asarray(c)[..., :3] for c in crops]))
    for i, m in enumerate([] if masks is None else masks):
        if m is not None:
            check_mask_shares(m, f"the mask of crop {i}")   # too little of the face to change: refused
    out = anonymize_face(pipe, torch.from_numpy(batch), settings, embeddings=list(embeddings),
                         callback=callback).numpy()
    results = []
    for i, o in enumerate(out):
        m = None if masks is None else masks[i]
        if m is not None:
            m = np.clip(np.asarray(m, np.float32), 0, 1)[..., None]
            o = m * o + (1 - m) * batch[i]
        results.append(to_uint8(o))
    return results


def unet_evals_per_face(settings: ReversePersonalizationSettings = ReversePersonalizationSettings(),
                        zero_empty_prompt: bool = True) -> dict:
    """UNet evaluations one face costs: the inversion and the sampler (a batch of k rows counts k)."""
    one_branch = settings.guidance_scale in (0.0, 1.0)
    inv_branches = 1 if one_branch or not zero_empty_prompt else 2   # c_attr = "" makes both branches equal
    smp_branches = 1 if one_branch else 2
    return {"invert": settings.steps * inv_branches, "sample": settings.steps * smp_branches,
            "total": settings.steps * (inv_branches + smp_branches)}


def escalate(settings: ReversePersonalizationSettings, try_index: int) -> ReversePersonalizationSettings:
    """The retry schedule after a failed re-ID audit: a new seed and w 2.5 more negative, down to -20."""
    w = settings.guidance_scale
    return dataclasses.replace(settings, seed=settings.seed + 1, guidance_scale=min(w, max(w - 2.5, -20.0)))


def crop_anonymizer(pipe, face_models: FaceModels, settings: ReversePersonalizationSettings, *,
                    audit=None, max_tries: int = 1, callback: Callback = None):
    """Reverse Personalization as a ``nullface.privacy.photo`` anonymizer: ``f(image, crops) -> results``.

    The photo machinery is the methods' shared one (``nullface.methods.anonymizer.crop_anonymizer``): each face
    uses its own ArcFace identity, taken from the photo at its detected landmarks, the crops of one call run as
    one batch, and with ``audit`` a face still re-identified is retried (``escalate``) up to ``max_tries`` in
    all, then returned as an error so that the photo's fail-closed policy applies.
    """
    def crops_fn(crops: list, vectors: list, s: ReversePersonalizationSettings) -> list:
        return anonymize_crops(pipe, [c.image for c in crops], vectors, [c.mask for c in crops], s, callback)
    return neutral_anonymizer(crops_fn, settings.validate(), escalate, identity=arcface_identity(face_models),
                              audit=audit, max_tries=max_tries, callback=callback, many_images=True)
