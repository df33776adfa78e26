"""NullFace on ComfyUI's own models: FaceID on a core MODEL, the inversion as a SAMPLER, eqs. 3-4 as a GUIDER.

These nodes plug into core ``SamplerCustomAdvanced``: the checkpoint, LoRAs and model patches the user
already has, and ComfyUI's memory management (``--lowvram``, offloading, ``POST /free``), apply to them.
The math lives in ``nullface.methods.nullface.native``; the objects ComfyUI calls while sampling (FaceID attention,
SAMPLERs, GUIDER) in ``nodes/native_comfy.py``. These node classes validate their inputs and call them.
"""
from __future__ import annotations

from ..nullface.models.sd15 import read_faceid
from ..nullface.methods.nullface.settings import NullFaceSettings

from . import _paths
from ._common import cancellable, CATEGORY, IDENTITY, step_callback
from .native_comfy import apply_faceid, comfy_classes, native_invert, require_faceid
from .widgets import widget, widgets

D = NullFaceSettings()
NATIVE = f"{CATEGORY}/native"
DEFAULT_DELAY = NullFaceSettings.mask_delay   # the paper's mask at timestep 80 = after 10 of the 30 running steps


class NullFaceApplyFaceID:
    """FaceID on a core MODEL: LoRA through ComfyUI's LoRA loading + the identity attention (c_id / ∅)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A Stable Diffusion 1.5 MODEL, e.g. from Load Checkpoint (LoRAs and "
                                           "model patches applied before or after this node are kept)."}),
            "faceid": (_paths.list_files("ipadapter") or ["ip-adapter-faceid_sd15.bin"], {
                "tooltip": "IP-Adapter FaceID for SD1.5 (ip-adapter-faceid_sd15.bin) from models/ipadapter."}),
            "identity": (IDENTITY, {"tooltip": "From 'NullFace Negate Identity': c_id for the conditional path; "
                                               "the unconditional path gets the null identity."}),
            "ip_adapter_scale": widget(NullFaceSettings, "ip_adapter_scale"),
            "lora_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                        "tooltip": "Strength of FaceID's own LoRA; 1.0 is what the method (and "
                                                   "diffusers' load_ip_adapter) applies."}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"
    CATEGORY = NATIVE
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("Patches a core SD1.5 MODEL (e.g. from Load Checkpoint) with IP-Adapter FaceID for NullFace: its "
                   "LoRA and the identity attention, c_id from 'NullFace Negate Identity' on the conditional path "
                   "and the null identity on the other. A clone: the input MODEL is unchanged. Feeds 'NullFace "
                   "Inversion (native sampler)' and 'NullFace Guider'.")

    def apply(self, model, faceid, identity, ip_adapter_scale, lora_strength):
        import os
        NullFaceSettings(ip_adapter_scale=ip_adapter_scale).validate()   # 0: the identity never reaches the UNet
        path = _paths.resolve("ipadapter", faceid)           # ComfyUI caches this node's output, not us
        sd = read_faceid(path)
        return (apply_faceid(model, sd, identity.vectors, ip_adapter_scale, lora_strength, os.path.basename(path)),)


class NullFaceNativeInversion:
    """Edit-friendly DDPM inversion on a core MODEL; its SAMPLER replays the noise maps in SamplerCustomAdvanced."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "From 'NullFace Apply FaceID (native)': the inversion runs the null "
                                           "identity only, through the same FaceID LoRA."}),
            "negative": ("CONDITIONING", {"tooltip": "The null path's text: CLIP Text Encode with an empty prompt "
                                                     "(the method)."}),
            "latent": ("LATENT", {"tooltip": "The face from VAE Encode (aligned square faces, 512x512 is best)."}),
            **widgets(NullFaceSettings, "steps", "t_skip", "seed",
                      seed="Seed of the inversion noise (drawn on the CPU: the engine's noise)."),
        }, "optional": widgets(NullFaceSettings, "inversion_batch")}

    RETURN_TYPES = ("LATENT", "SIGMAS", "SAMPLER")
    RETURN_NAMES = ("latent", "sigmas", "sampler")
    FUNCTION = "invert"
    CATEGORY = NATIVE
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("Inverts the face (VAE Encode of an aligned face) on the null path of a MODEL from 'NullFace "
                   "Apply FaceID (native)'. Connect all three outputs to SamplerCustomAdvanced, with 'Disable Noise' "
                   "as its noise and 'NullFace Guider' as its guider.")

    @cancellable
    def invert(self, model, negative, latent, steps, t_skip, seed, inversion_batch=D.inversion_batch):
        s = NullFaceSettings(steps=steps, t_skip=t_skip, seed=seed, inversion_batch=inversion_batch).validate()
        require_faceid(model, "NullFace Inversion")
        return native_invert(model, negative, latent, s.steps, s.t_skip, s.seed, s.inversion_batch,
                             step_callback(s.inversion_steps))


class NullFaceGuiderNode:
    """The dual-path identity guidance (eq. 3) with the region mask after its delay (eq. 4), as a GUIDER."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "From 'NullFace Apply FaceID (native)'."}),
            "positive": ("CONDITIONING", {"tooltip": "The identity path's text: an empty prompt (the method), or an "
                                                     "attribute prompt such as 'an elderly man'."}),
            "negative": ("CONDITIONING", {"tooltip": "The null path's text: an empty prompt (the method)."}),
            **widgets(NullFaceSettings, "lambda_cfg", "mask_delay", "soft_mask"),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Where to anonymize (1) and keep (0), at the image size. Empty = whole "
                                         "image."}),
        }}

    RETURN_TYPES = ("GUIDER",)
    RETURN_NAMES = ("guider",)
    FUNCTION = "get_guider"
    CATEGORY = NATIVE
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("Eq. 3 (cfg = λ_cfg between positive = c_id and negative = ∅) and, after mask_delay, eq. 4 with "
                   "the region mask, as a GUIDER for SamplerCustomAdvanced. Needs the MODEL from 'NullFace Apply "
                   "FaceID (native)' and empty-prompt conditionings; sample with the SAMPLER of 'NullFace Inversion "
                   "(native sampler)'.")

    def get_guider(self, model, positive, negative, lambda_cfg, mask_delay, soft_mask, mask=None):
        NullFaceSettings(lambda_cfg=lambda_cfg, mask_delay=mask_delay, soft_mask=soft_mask).validate()
        require_faceid(model, "NullFace Guider")
        guider = comfy_classes()["NullFaceGuider"](model)
        guider.set_conds(positive, negative)
        guider.set_cfg(lambda_cfg)
        guider.set_nullface(mask, mask_delay, soft_mask)
        return (guider,)


NODE_CLASS_MAPPINGS = {
    "NullFaceApplyFaceID": NullFaceApplyFaceID,
    "NullFaceNativeInversion": NullFaceNativeInversion,
    "NullFaceGuider": NullFaceGuiderNode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NullFaceApplyFaceID": "NullFace Apply FaceID (native)",
    "NullFaceNativeInversion": "NullFace Inversion (native sampler)",
    "NullFaceGuider": "NullFace Guider (eqs. 3-4)",
}
