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
from .native_comfy import DEFAULT_DELAY, apply_faceid, comfy_classes, native_invert, require_faceid

D = NullFaceSettings()
NATIVE = f"{CATEGORY}/native"


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
            "ip_adapter_scale": ("FLOAT", {"default": D.ip_adapter_scale, "min": 0.0, "max": 2.0, "step": 0.05,
                                           "tooltip": "IP-Adapter scale λ_img on both paths (paper: 1.0)."}),
            "lora_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                        "tooltip": "Strength of FaceID's own LoRA; 1.0 is what the method (and "
                                                   "diffusers' load_ip_adapter) applies."}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"
    CATEGORY = NATIVE
    DESCRIPTION = "Patches a core MODEL with IP-Adapter FaceID for NullFace (a clone: the input is unchanged)."

    def apply(self, model, faceid, identity, ip_adapter_scale, lora_strength):
        import os
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
            "steps": ("INT", {"default": D.steps, "min": 1, "max": 1000,
                              "tooltip": "T, the number of DDPM steps (paper: 100)."}),
            "t_skip": ("INT", {"default": D.t_skip, "min": 0, "max": 1000,
                               "tooltip": "T_skip: the first T_skip steps are skipped; the last T - T_skip run "
                                          "(paper: 70)."}),
            "seed": ("INT", {"default": D.seed, "min": 0, "max": 0xFFFFFFFF,
                             "tooltip": "Seed of the inversion noise (drawn on the CPU: the engine's noise)."}),
        }, "optional": {
            "inversion_batch": ("INT", {"default": D.inversion_batch, "min": 0, "max": 64,
                                        "tooltip": "UNet evaluations per call while inverting (memory vs speed only; "
                                                   "same result); 0 = auto: 1 on the CPU, 8 on a GPU."}),
        }}

    RETURN_TYPES = ("LATENT", "SIGMAS", "SAMPLER")
    RETURN_NAMES = ("latent", "sigmas", "sampler")
    FUNCTION = "invert"
    CATEGORY = NATIVE
    DESCRIPTION = ("Inverts the face on the null path. Connect all three outputs to SamplerCustomAdvanced, with "
                   "'Disable Noise' as its noise and 'NullFace Guider' as its guider.")

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
            "lambda_cfg": ("FLOAT", {"default": D.lambda_cfg, "min": 0.0, "max": 30.0, "step": 0.5,
                                     "tooltip": "λ_cfg, identity guidance (eq. 3). Higher = more anonymous, 20+ "
                                                "loses realism (paper: 10)."}),
            "mask_delay": ("FLOAT", {"default": round(DEFAULT_DELAY, 4), "min": 0.0, "max": 1.0, "step": 0.01,
                                     "round": 0.0001,
                                     "tooltip": "Fraction of the running steps before the mask applies (eq. 4; "
                                                "paper: 1/3 = 10 of 30 steps)."}),
            "soft_mask": ("BOOLEAN", {"default": D.soft_mask,
                                      "tooltip": "Off: binarize the mask at 0.5 (the paper). On: keep feathered "
                                                 "edges (extension)."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Where to anonymize (1) and keep (0), at the image size. Empty = whole "
                                         "image."}),
        }}

    RETURN_TYPES = ("GUIDER",)
    RETURN_NAMES = ("guider",)
    FUNCTION = "get_guider"
    CATEGORY = NATIVE

    def get_guider(self, model, positive, negative, lambda_cfg, mask_delay, soft_mask, mask=None):
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
