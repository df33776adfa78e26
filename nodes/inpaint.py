"""Inpainting with attribute guidance (papers/000) as nodes: loader, aligned faces, whole photos."""
from __future__ import annotations

from ..nullface.methods.inpaint.settings import InpaintSettings
from ..nullface.methods.inpaint.pipeline import anonymize_inpaint, inpaint_crop_anonymizer, load_inpaint_pipe
from ..nullface.privacy.photo import PhotoOptions

from . import _memory, _paths
from ._common import (cancel_point, cancellable, CATEGORY, FACE_MODELS, fit_mask, image_count, images_to_numpy,
                      masks_to_numpy, numpy_to_images, release_pipe, step_callback)
from .loaders import checkpoint_choices, resolve_checkpoint, runtime_inputs
from .photo import CROP_SIZE, NO_FACE, ON_FAILURE, photo_audit, photo_batch
from .widgets import keep_widget, widgets

INPAINT_PIPE = "NULLFACE_INPAINT_PIPE"   # SD1.5 inpainting + FaRL (nullface.methods.inpaint.pipeline.InpaintPipe)
CAT = f"{CATEGORY}/inpaint"
NO_FEATURES = "none (guidance off)"
TARGET = ("IMAGE", {"tooltip": "The synthesized target face whose attributes the repainted face takes (any size, "
                               "e.g. generated upstream); one image, or one per face image."})


def _settings(kwargs: dict) -> InpaintSettings:
    names = set(InpaintSettings.specs())
    return InpaintSettings(**{k: v for k, v in kwargs.items() if k in names}).validate()


class NullFaceInpaintLoader:
    """Stable Diffusion 1.5 inpainting (9-channel UNet) + FaRL, the attribute guidance's feature extractor."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "checkpoint": (checkpoint_choices() or ["sd-v1-5-inpainting.ckpt"], {
                "tooltip": "Stable Diffusion 1.5 INPAINTING (9-channel UNet, e.g. sd-v1-5-inpainting.ckpt) from "
                           "models/checkpoints, or a diffusers folder from models/diffusers."}),
            "feature_extractor": ([NO_FEATURES] + _paths.list_files("farl"), {
                "default": NO_FEATURES,
                "tooltip": "FaRL ViT-B/16 (FaRL-Base-Patch16-LAIONFace20M-ep64.pth) from models/farl: the "
                           "attribute guidance's features. 'none' allows only guidance_scale 0."}),
            **runtime_inputs("auto: fp16 on CUDA, fp32 on MPS and CPU (FaRL runs in fp32)."),
        }}

    RETURN_TYPES = (INPAINT_PIPE,)
    RETURN_NAMES = ("inpaint_pipe",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = ("Loads Stable Diffusion 1.5 inpainting (9-channel UNet, models/checkpoints or models/diffusers) "
                   "and, optionally, FaRL from models/farl, the attribute guidance's feature extractor. Needs nothing "
                   "upstream; feeds the inpainting nodes.")

    @cancellable
    def load(self, checkpoint, feature_extractor, device, precision, keep_loaded, compile=False):
        features = None if feature_extractor == NO_FEATURES else _paths.resolve("farl", feature_extractor)
        pipe = load_inpaint_pipe(resolve_checkpoint(checkpoint), features, device=device, dtype=precision,
                                 callback=cancel_point)
        pipe.keep_loaded, pipe.compile = bool(keep_loaded), bool(compile)
        _memory.register(pipe)            # inside ComfyUI: its Unload/Free unloads this pipe too
        return (pipe,)


class NullFaceInpaintAnonymize:
    """Repaint the masked region of aligned faces with SD inpainting + attribute guidance (papers/000)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inpaint_pipe": (INPAINT_PIPE, {"tooltip": "From 'NullFace Load SD1.5 Inpainting + FaRL'."}),
            "image": ("IMAGE", {"tooltip": "Aligned square face images (512x512 is best)."}),
            "mask": ("MASK", {"tooltip": "Region to repaint (1) and to keep (0), e.g. 'NullFace Face Region Mask' "
                                         "with face ticked; binarized at 0.5. Kept pixels come back unchanged."}),
            "target": TARGET, **widgets(InpaintSettings)}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "anonymize"
    CATEGORY = CAT
    SETTINGS = InpaintSettings
    DESCRIPTION = ("Erases the masked region of aligned faces and repaints it with SD inpainting, pulled towards the "
                   "target face's attributes at every step (papers/000); kept pixels come back unchanged. Needs "
                   "'NullFace Load SD1.5 Inpainting + FaRL', a MASK (1 = repaint) and a target IMAGE.")

    @cancellable
    def anonymize(self, inpaint_pipe, image, mask, target, **kwargs):
        s = _settings(kwargs)
        out = anonymize_inpaint(inpaint_pipe, image, fit_mask(mask, image=image), target, s,
                                callback=step_callback(s.work_per_face * image_count(image)))
        release_pipe(inpaint_pipe)
        return (out,)


class NullFaceInpaintPhoto:
    """Every face of each photo repainted towards the target's attributes, pasted back; fails closed."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inpaint_pipe": (INPAINT_PIPE, {"tooltip": "From 'NullFace Load SD1.5 Inpainting + FaRL'."}),
            "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models' (the detector is used)."}),
            "image": ("IMAGE", {"tooltip": "Photos of any size with any number of faces."}),
            "target": TARGET,
            "keep": keep_widget(InpaintSettings),
            "on_failure": ON_FAILURE, "on_no_face": NO_FACE, "crop_size": CROP_SIZE, **widgets(InpaintSettings)},
            "optional": {
                "keep_mask": ("MASK", {"tooltip": "Extra areas to keep visible (white), image size."}),
                "audit_tries": ("INT", {"default": 1, "min": 0, "max": 10,
                                        "tooltip": "0: off, faces reported 'not audited'. "
                                                   "N (default 1): check each face with dlib's recognizer and "
                                                   "repaint with the next seed up to N tries; a face still "
                                                   "recognized then fails (on_failure applies)."})}}

    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("image", "report", "faces_anonymized")
    FUNCTION = "anonymize"
    CATEGORY = CAT
    SETTINGS = InpaintSettings
    DESCRIPTION = ("The inpainting method on whole photos: every face detected, its face region (less the kept "
                   "regions) repainted towards the target's attributes, pasted back; fails closed (on_failure). Needs "
                   "'NullFace Load SD1.5 Inpainting + FaRL', 'NullFace Load Face Models' (detector) and a target "
                   "IMAGE. Outputs a text report of every face.")

    @cancellable
    def anonymize(self, inpaint_pipe, face_models, image, target, keep, on_failure, on_no_face, crop_size,
                  keep_mask=None, audit_tries=1, **kwargs):
        from ..nullface.faces.regions import parse_regions
        s = _settings(kwargs)
        opts = PhotoOptions(crop_size=crop_size, keep=parse_regions(keep), on_failure=on_failure,
                            on_no_face=on_no_face).validate()
        audit = photo_audit(self, face_models, audit_tries)
        arrays = images_to_numpy(image)
        outs, report, total, _ignored = photo_batch(
            arrays, masks_to_numpy(keep_mask, len(arrays)), face_models.detector, opts, s.work_per_face,
            lambda progress: inpaint_crop_anonymizer(inpaint_pipe, target, s, audit=audit,
                                                     max_tries=max(1, audit_tries), callback=progress))
        release_pipe(inpaint_pipe)
        return (numpy_to_images(outs), report, total)


NODE_CLASS_MAPPINGS = {
    "NullFaceInpaintLoader": NullFaceInpaintLoader,
    "NullFaceInpaintAnonymize": NullFaceInpaintAnonymize,
    "NullFaceInpaintPhoto": NullFaceInpaintPhoto,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NullFaceInpaintLoader": "NullFace Load SD1.5 Inpainting + FaRL",
    "NullFaceInpaintAnonymize": "NullFace Inpaint Anonymize (aligned faces, attribute guidance)",
    "NullFaceInpaintPhoto": "NullFace Inpaint Anonymize Photo (all faces)",
}
