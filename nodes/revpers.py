"""Reverse Personalization (SDXL) as nodes: loader, null-identity inversion, negative identity sampler,
and one-node versions for aligned faces and whole photos."""
from __future__ import annotations

from ..nullface.methods.revpers import pipeline as R
from ..nullface.privacy.photo import PhotoOptions
from ..nullface.faces.identity import embed_images
from ..nullface.methods.revpers.settings import ReversePersonalizationSettings as RS
from ..nullface.models.sdxl import load_revpers_pipe

from . import _memory, _paths
from .loaders import checkpoint_choices, resolve_checkpoint, runtime_inputs
from .photo import NO_FACE, ON_FAILURE, photo_audit, photo_batch
from ._common import (cancel_point, cancellable, CATEGORY, EMBEDS, FACE_MODELS, image_count, images_to_numpy,
                      masks_to_numpy, numpy_to_images, release_pipe, step_callback)
from .widgets import keep_widget, widgets

RP_PIPE = "REVPERS_PIPE"               # SDXL + IP-Adapter FaceID SDXL (nullface.models.sdxl.SDXLPipe)
RP_INVERSION = "REVPERS_INVERSION"     # nullface.methods.revpers.pipeline.RevPersInversion
CAT = f"{CATEGORY}/reverse personalization"


PIPE_IN = (RP_PIPE, {"tooltip": "From 'Reverse Personalization Load SDXL + FaceID'."})


class RevPersLoader:
    """SDXL + IP-Adapter FaceID SDXL (with its LoRA)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "checkpoint": (checkpoint_choices() or ["sd_xl_base_1.0.safetensors"], {
                "tooltip": "SDXL base 1.0 from models/checkpoints, or an SDXL diffusers folder from "
                           "models/diffusers."}),
            "faceid": (_paths.list_files("ipadapter") or ["ip-adapter-faceid_sdxl.bin"], {
                "tooltip": "IP-Adapter FaceID for SDXL (ip-adapter-faceid_sdxl.bin, holds its LoRA) from "
                           "models/ipadapter."}),
            **runtime_inputs("auto: fp16 on CUDA (the VAE runs in fp32), fp32 on MPS and CPU."),
        }}

    RETURN_TYPES = (RP_PIPE,)
    RETURN_NAMES = ("pipe",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = ("Loads SDXL base 1.0 (models/checkpoints or models/diffusers) and IP-Adapter FaceID SDXL with its "
                   "LoRA (models/ipadapter) once, for every Reverse Personalization node. Needs nothing upstream.")

    @cancellable
    def load(self, checkpoint, faceid, device, precision, keep_loaded, compile=False):
        pipe = load_revpers_pipe(resolve_checkpoint(checkpoint), _paths.resolve("ipadapter", faceid), device=device,
                                 dtype=precision, callback=cancel_point,
                                 compile=compile)
        pipe.keep_loaded = bool(keep_loaded)
        _memory.register(pipe)            # inside ComfyUI: its Unload/Free unloads this pipe too
        return (pipe,)


class RevPersInversion:
    """Null-identity DPM-Solver++ inversion: the noise maps that replay each image exactly."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": PIPE_IN,
                             "image": ("IMAGE", {"tooltip": "Aligned square face images (1024x1024 is best)."}),
                             **widgets(RS, "steps", "skip", "guidance_scale", "ip_adapter_scale", "seed")}}

    RETURN_TYPES = (RP_INVERSION,)
    RETURN_NAMES = ("inversion",)
    FUNCTION = "invert"
    CATEGORY = CAT
    SETTINGS = RS
    DESCRIPTION = ("Null-identity DPM-Solver++ inversion of aligned faces: the noise maps that replay each image. "
                   "Needs the pipe of 'Reverse Personalization Load SDXL + FaceID'; sample it as often as you like "
                   "with 'Reverse Personalization Sampler'.")

    @cancellable
    def invert(self, pipe, image, steps, skip, guidance_scale, ip_adapter_scale, seed):
        s = RS(steps=steps, skip=skip, guidance_scale=guidance_scale, ip_adapter_scale=ip_adapter_scale,
               seed=seed).validate()
        inv = R.invert_images(pipe, image, s, step_callback(s.steps * image_count(image)))
        release_pipe(pipe)
        return (inv,)


class RevPersSampler:
    """Negative identity guidance with the attribute prompt, over the inversion's noise maps."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": PIPE_IN,
                             "inversion": (RP_INVERSION, {"tooltip": "From 'Reverse Personalization Inversion'."}),
                             "embeddings": (EMBEDS, {"tooltip": "From 'NullFace Face Embedding (ArcFace)': the "
                                                                "identity to steer away from, one per image."}),
                             **widgets(RS, "guidance_scale", "id_scale", "prompt")}}

    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("image", "latent")
    FUNCTION = "sample"
    CATEGORY = CAT
    SETTINGS = RS
    DESCRIPTION = ("Negative identity guidance (w < 0) away from each face's ArcFace identity, with an optional "
                   "attribute prompt, over the inversion's noise maps. Needs the pipe, an inversion ('Reverse "
                   "Personalization Inversion') and embeddings ('NullFace Face Embedding'). Use the inversion's "
                   "guidance scale to keep the replay exact; other values sample a variant.")

    @cancellable
    def sample(self, pipe, inversion, embeddings, guidance_scale, id_scale, prompt):
        RS(guidance_scale=guidance_scale, id_scale=id_scale, prompt=prompt).validate()
        progress = step_callback(inversion.settings.steps * inversion.batch)
        latents, _ = R.sample_latents(pipe, inversion, R.identity_vectors(embeddings, id_scale), guidance_scale,
                                      prompt, progress)
        images = R.decode(pipe, latents, progress)
        release_pipe(pipe)
        return (images, {"samples": latents.cpu() / pipe.vae_scale})


def _settings(steps, skip, guidance_scale, id_scale, ip_adapter_scale, seed, prompt, crop_size=1024):
    return RS(steps=steps, skip=skip, guidance_scale=guidance_scale, id_scale=id_scale,
              ip_adapter_scale=ip_adapter_scale, seed=seed, prompt=prompt, crop_size=crop_size).validate()


_COMMON = ("steps", "skip", "guidance_scale", "id_scale", "ip_adapter_scale", "seed", "prompt")


class RevPersAnonymize:
    """Reverse Personalization of aligned faces in one node: embed, invert, sample, decode."""

    @classmethod
    def INPUT_TYPES(cls):
        req = {"pipe": PIPE_IN, "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models'."}),
               "image": ("IMAGE", {"tooltip": "Aligned square faces (1024x1024 is best); use 'Reverse "
                                              "Personalization Anonymize Photo' for whole photos."})}
        req.update(widgets(RS, *_COMMON))
        return {"required": req}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "anonymize"
    CATEGORY = CAT
    SETTINGS = RS
    DESCRIPTION = ("Reverse Personalization of aligned square faces in one node: embed, invert, sample, decode. Needs "
                   "'Reverse Personalization Load SDXL + FaceID' and 'NullFace Load Face Models'; for whole photos "
                   "use 'Reverse Personalization Anonymize Photo'.")

    @cancellable
    def anonymize(self, pipe, face_models, image, **kw):
        s = _settings(**kw)
        out = R.anonymize_face(pipe, image, s, embeddings=embed_images(face_models, image),
                               callback=step_callback(s.work_per_face * image_count(image)))
        release_pipe(pipe)
        return (out,)


class RevPersAnonymizePhoto:
    """Every face of each photo anonymized with its own identity, pasted back; fails closed."""

    @classmethod
    def INPUT_TYPES(cls):
        req = {"pipe": PIPE_IN, "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models'."}),
               "image": ("IMAGE", {"tooltip": "Photos of any size with any number of faces."}),
               "keep": keep_widget(RS, " Kept regions are blended back in pixels (the method has no mask)."),
               "on_failure": ON_FAILURE, "on_no_face": NO_FACE}
        req.update(widgets(RS, *_COMMON, "crop_size"))
        return {"required": req,
                "optional": {"keep_mask": ("MASK", {"tooltip": "Extra areas to keep visible (white), image size."}),
                             "audit_tries": ("INT", {"default": 1, "min": 0, "max": 10,
                                                     "tooltip": "0: off, faces reported 'not audited'. "
                                                                "N (default 1): check each face with dlib's "
                                                                "recognizer, retry with a new seed and stronger "
                                                                "negative guidance up to N tries; a face still "
                                                                "recognized then fails."})}}

    RETURN_TYPES = ("IMAGE", "STRING", "INT", "INT")
    RETURN_NAMES = ("image", "report", "faces_anonymized", "faces_ignored")
    FUNCTION = "anonymize"
    CATEGORY = CAT
    SETTINGS = RS
    DESCRIPTION = ("Reverse Personalization on whole photos: every face detected, anonymized with its own identity, "
                   "pasted back; fails closed (on_failure). Needs 'Reverse Personalization Load SDXL + FaceID' and "
                   "'NullFace Load Face Models'. Outputs a text report of every face.")

    @cancellable
    def anonymize(self, pipe, face_models, image, keep, on_failure, on_no_face, keep_mask=None, audit_tries=1,
                  **kw):
        from ..nullface.faces.regions import parse_regions
        s = _settings(**kw)
        opts = PhotoOptions(crop_size=s.crop_size, keep=parse_regions(keep), on_failure=on_failure,
                            on_no_face=on_no_face).validate()
        arrays = images_to_numpy(image)
        keeps = masks_to_numpy(keep_mask, len(arrays))
        audit = photo_audit(self, face_models, audit_tries)
        outs, report, total, ignored = photo_batch(
            arrays, keeps, face_models.detector, opts, s.work_per_face,
            lambda progress: R.crop_anonymizer(pipe, face_models, s, audit=audit, max_tries=max(1, audit_tries),
                                               callback=progress))
        release_pipe(pipe)
        return (numpy_to_images(outs), report, total, ignored)


NODE_CLASS_MAPPINGS = {
    "RevPersLoader": RevPersLoader,
    "RevPersInversion": RevPersInversion,
    "RevPersSampler": RevPersSampler,
    "RevPersAnonymize": RevPersAnonymize,
    "RevPersAnonymizePhoto": RevPersAnonymizePhoto,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RevPersLoader": "Reverse Personalization Load SDXL + FaceID",
    "RevPersInversion": "Reverse Personalization Inversion (DPM-Solver++)",
    "RevPersSampler": "Reverse Personalization Sampler (negative identity)",
    "RevPersAnonymize": "Reverse Personalization Anonymize (aligned faces)",
    "RevPersAnonymizePhoto": "Reverse Personalization Anonymize Photo (all faces)",
}
