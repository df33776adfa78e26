"""The method's steps as nodes: embed, negate, invert, sample (eqs. 3-4), region mask, and all in one."""
from __future__ import annotations


from ..nullface.diffusion import masks as M
from ..nullface.faces.identity import negate_identities
from ..nullface.methods.nullface.pipeline import anonymize_face, decode, embed_images, invert_images, sample_latents
from ..nullface.methods.nullface.settings import NullFaceSettings

from ._common import CATEGORY, EMBEDS, FACE_MODELS, IDENTITY, INVERSION, PIPE, Progress, cancellable
from .widgets import widget

S = NullFaceSettings
D = S()   # the paper's defaults

STEPS = widget(S, "steps")
T_SKIP = widget(S, "t_skip")
SEED = widget(S, "seed")
IP_SCALE = widget(S, "ip_adapter_scale")
LAMBDA_CFG = widget(S, "lambda_cfg")
LAMBDA_ID = widget(S, "lambda_id")
MAX_ANGLE = widget(S, "max_angle")
MASK_DELAY = widget(S, "mask_delay")
PROMPT = widget(S, "prompt")
SOFT = widget(S, "soft_mask")
MASK_IN = ("MASK", {"tooltip": "Where to anonymize (1) and keep (0), at the image size. Empty = whole image."})


class NullFaceEmbedding:
    """ArcFace identity embedding of the face in each image."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models'."}),
            "image": ("IMAGE", {"tooltip": "Face images; one embedding per image of the batch."}),
            "pick": (["largest", "index"], {"default": "largest",
                                            "tooltip": "Which face: the largest (the paper) or by index."}),
            "face_index": ("INT", {"default": 0, "min": 0, "max": 64,
                                   "tooltip": "With pick = index: 0 is the largest face, 1 the next..."}),
        }}

    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeddings",)
    FUNCTION = "embed"
    CATEGORY = f"{CATEGORY}/method"
    DESCRIPTION = ("The ArcFace identity e of the face in each image (the largest, or one by index). Needs "
                   "'NullFace Load Face Models' upstream; feeds 'NullFace Negate Identity' or the Reverse "
                   "Personalization Sampler. An image without a face stops with its name.")

    def embed(self, face_models, image, pick, face_index):
        return (embed_images(face_models, image, pick if pick == "largest" else face_index),)


class NullFaceNegateIdentity:
    """c_id = -λ_id · e: the identity to steer away from."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"embeddings": (EMBEDS, {"tooltip": "From 'NullFace Face Embedding'."}),
                             "lambda_id": LAMBDA_ID, "max_angle": MAX_ANGLE,
                             "seed": widget(S, "seed", tooltip="Seed of the rotation (only with max_angle > 0).")}}

    RETURN_TYPES = (IDENTITY,)
    RETURN_NAMES = ("identity",)
    FUNCTION = "negate"
    CATEGORY = f"{CATEGORY}/method"
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("c_id = -λ_id · e, the identity the sampler steers away from (optionally rotated by a seeded "
                   "angle). Needs embeddings from 'NullFace Face Embedding'; feeds 'NullFace Dual-Path Identity "
                   "Sampler' or 'NullFace Apply FaceID (native)'.")

    def negate(self, embeddings, lambda_id, max_angle, seed):
        s = NullFaceSettings(lambda_id=lambda_id, max_angle=max_angle, seed=seed).validate()
        return (negate_identities(embeddings, s.lambda_id, s.max_angle, s.seed),)


class NullFaceInversion:
    """Edit-friendly DDPM inversion of each image (only the steps the sampler will use)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": (PIPE, {"tooltip": "From 'NullFace Load SD1.5 + FaceID'."}),
                             "image": ("IMAGE", {"tooltip": "Aligned square face images (512x512 is best)."}),
                             "steps": STEPS, "t_skip": T_SKIP, "seed": SEED},
                "optional": {"ip_adapter_scale": IP_SCALE}}

    RETURN_TYPES = (INVERSION,)
    RETURN_NAMES = ("inversion",)
    FUNCTION = "invert"
    CATEGORY = f"{CATEGORY}/method"
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("Edit-friendly DDPM inversion of each aligned face (only the T - T_skip steps the sampler "
                   "uses). Needs the pipe from 'NullFace Load SD1.5 + FaceID'; one inversion can be sampled "
                   "many times by 'NullFace Dual-Path Identity Sampler'.")

    @cancellable
    def invert(self, pipe, image, steps, t_skip, seed, ip_adapter_scale=D.ip_adapter_scale):
        s = NullFaceSettings(steps=steps, t_skip=t_skip, seed=seed, ip_adapter_scale=ip_adapter_scale).validate()
        inv = invert_images(pipe, image, s, Progress(s.inversion_steps * _count(image)))
        _release(pipe)
        return (inv,)


class NullFaceSampler:
    """Dual-path identity guidance (eq. 3) with the region mask (eq. 4), from an inversion."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": (PIPE, {"tooltip": "From 'NullFace Load SD1.5 + FaceID'."}),
                             "inversion": (INVERSION, {"tooltip": "From 'NullFace DDPM Inversion'."}),
                             "identity": (IDENTITY, {"tooltip": "From 'NullFace Negate Identity'."}),
                             "lambda_cfg": LAMBDA_CFG, "ip_adapter_scale": IP_SCALE, "mask_delay": MASK_DELAY,
                             "prompt": PROMPT, "soft_mask": SOFT},
                "optional": {"mask": MASK_IN}}

    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("image", "latent")
    FUNCTION = "sample"
    CATEGORY = f"{CATEGORY}/method"
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("Eq. 3: λ_cfg · ε(c_id) + (1 - λ_cfg) · ε(∅) over the inverted noise maps, and eq. 4: the "
                   "region mask M after mask_delay. Needs the pipe, an inversion ('NullFace DDPM Inversion') and "
                   "an identity ('NullFace Negate Identity'); the optional MASK comes from 'NullFace Region Mask'.")

    @cancellable
    def sample(self, pipe, inversion, identity, lambda_cfg, ip_adapter_scale, mask_delay, prompt, soft_mask,
               mask=None):
        s = NullFaceSettings(steps=inversion.steps, t_skip=inversion.t_skip, lambda_cfg=lambda_cfg,
                             ip_adapter_scale=ip_adapter_scale, mask_delay=mask_delay, prompt=prompt,
                             soft_mask=soft_mask).validate()
        progress = Progress(s.sample_steps * inversion.batch)
        latents = sample_latents(pipe, inversion, identity, s, _fit_mask(mask, inversion), progress)
        images = decode(pipe, latents, progress)
        _release(pipe)
        # ComfyUI LATENTs are unscaled VAE latents
        return (images, {"samples": latents.cpu() / pipe.vae_scale})


class NullFaceRegionMask:
    """Prepares M for eq. 4 from any ComfyUI MASK: meaning, invert, grow/shrink, feather, combine."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mask": ("MASK", {"tooltip": "Any mask, e.g. from a segmentation node or 'NullFace Face Region Mask'."}),
            "mask_means": (["anonymize", "keep"], {"default": "anonymize",
                                                   "tooltip": "Whether white in the input marks what to anonymize "
                                                              "or what to keep visible (e.g. eyes and mouth)."}),
            "grow": ("INT", {"default": 0, "min": -256, "max": 256,
                             "tooltip": "Grow (+) or shrink (-) the white area, in pixels, before feathering."}),
            "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 256.0, "step": 0.5,
                                  "tooltip": "Blur radius in pixels. With soft_mask off the sampler binarizes "
                                             "again at 0.5."}),
            "combine": (["none", "union", "intersection", "subtract", "multiply"], {
                "default": "none", "tooltip": "How to combine with mask_b (after both are prepared)."}),
        }, "optional": {"mask_b": ("MASK", {"tooltip": "A second mask with the same meaning."})}}

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("anonymize_mask",)
    FUNCTION = "prepare"
    CATEGORY = f"{CATEGORY}/method"
    DESCRIPTION = ("Turns any ComfyUI MASK (e.g. 'NullFace Face Region Mask' or a segmentation node) into the "
                   "paper's M: 1 = anonymize, 0 = keep; inverts a keep-mask, grows/shrinks, feathers, combines "
                   "two masks. Feeds the sampler's or the guider's mask input.")

    def prepare(self, mask, mask_means, grow, feather, combine, mask_b=None):
        m = mask[None] if mask.ndim == 2 else mask
        if combine != "none" and mask_b is not None:
            b = mask_b[None] if mask_b.ndim == 2 else mask_b
            m = M.combine(m.float(), b.float(), combine)
        m = M.feather(M.grow(m.float(), grow), feather)
        return ((M.invert(m) if mask_means == "keep" else m),)


class NullFaceAnonymize:
    """The whole method in one node: embed, negate, invert, sample, decode."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": (PIPE, {"tooltip": "From 'NullFace Load SD1.5 + FaceID'."}),
                             "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models'."}),
                             "image": ("IMAGE", {"tooltip": "Aligned square face images (512x512 is best); "
                                                            "use 'NullFace Anonymize Photo' for whole photos."}),
                             "steps": STEPS, "t_skip": T_SKIP, "lambda_cfg": LAMBDA_CFG, "lambda_id": LAMBDA_ID,
                             "ip_adapter_scale": IP_SCALE, "mask_delay": MASK_DELAY, "seed": SEED},
                "optional": {"mask": MASK_IN, "prompt": PROMPT, "max_angle": MAX_ANGLE}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "anonymize"
    CATEGORY = CATEGORY
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("The whole NullFace method on aligned square faces in one node: embed, negate, invert, sample "
                   "(eqs. 3-4), decode. Needs 'NullFace Load SD1.5 + FaceID' and 'NullFace Load Face Models'; "
                   "for whole photos use 'NullFace Anonymize Photo'.")

    @cancellable
    def anonymize(self, pipe, face_models, image, steps, t_skip, lambda_cfg, lambda_id, ip_adapter_scale,
                  mask_delay, seed, mask=None, prompt="", max_angle=0.0):
        s = NullFaceSettings(steps=steps, t_skip=t_skip, lambda_cfg=lambda_cfg, lambda_id=lambda_id,
                             ip_adapter_scale=ip_adapter_scale, mask_delay=mask_delay, seed=seed, prompt=prompt,
                             max_angle=max_angle).validate()
        total = (s.inversion_steps + s.sample_steps) * _count(image)
        out = anonymize_face(pipe, image, s, face_models=face_models, masks=_fit_mask(mask, image=image),
                             callback=Progress(total))
        _release(pipe)
        return (out,)


def _fit_mask(mask, inversion=None, image=None):
    """A ComfyUI MASK resized to the image the method runs on (bilinear)."""
    if mask is None:
        return None
    m = mask[None] if mask.ndim == 2 else mask
    size = (inversion.image_size[0] * 8, inversion.image_size[1] * 8) if inversion is not None else \
        tuple(image.shape[1:3])
    return M.resize(m.float(), size)


def _count(image) -> int:
    """Images in a ComfyUI IMAGE batch."""
    return 1 if image.ndim == 3 else int(image.shape[0])


def _release(pipe):
    """keep_loaded = False: give the memory back after the run (see NullFacePipe.release)."""
    if not pipe.keep_loaded:
        pipe.release()


NODE_CLASS_MAPPINGS = {
    "NullFaceEmbedding": NullFaceEmbedding,
    "NullFaceNegateIdentity": NullFaceNegateIdentity,
    "NullFaceInversion": NullFaceInversion,
    "NullFaceSampler": NullFaceSampler,
    "NullFaceRegionMask": NullFaceRegionMask,
    "NullFaceAnonymize": NullFaceAnonymize,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NullFaceEmbedding": "NullFace Face Embedding (ArcFace)",
    "NullFaceNegateIdentity": "NullFace Negate Identity",
    "NullFaceInversion": "NullFace DDPM Inversion",
    "NullFaceSampler": "NullFace Dual-Path Identity Sampler",
    "NullFaceRegionMask": "NullFace Region Mask (keep/anonymize)",
    "NullFaceAnonymize": "NullFace Anonymize (aligned faces)",
}
