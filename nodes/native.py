"""NullFace on ComfyUI's own models: FaceID on a core MODEL, the inversion as a SAMPLER, eqs. 3-4 as a GUIDER.

These nodes plug into core ``SamplerCustomAdvanced``: the checkpoint, LoRAs and model patches the user
already has, and ComfyUI's memory management (``--lowvram``, offloading, ``POST /free``), apply to them.
The math lives in ``nullface.methods.nullface.native``; ComfyUI is imported only inside functions (the pack imports without
it), and the classes that subclass ComfyUI's are built on first use.
"""
from __future__ import annotations

import functools
import logging

import torch

from ..nullface.methods.nullface import native as N
from ..nullface.models.devices import pick_inversion_batch
from ..nullface.models.sd15 import FACEID_HINT, read_faceid
from ..nullface.methods.nullface.settings import NullFaceSettings

from . import _paths
from ._common import cancellable, CATEGORY, IDENTITY, step_callback
from .widgets import widget, widgets

log = logging.getLogger("nullface")

D = NullFaceSettings()
NATIVE = f"{CATEGORY}/native"
DEFAULT_DELAY = NullFaceSettings.mask_delay   # the paper's mask at timestep 80 = after 10 of the 30 running steps


def _is_ours(patch) -> bool:
    return bool(getattr(patch, "nullface_faceid", False))


def has_faceid(model) -> bool:
    """Whether a MODEL carries NullFace's FaceID attention patch."""
    replace = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    return any(_is_ours(p) for p in replace.values())


def _require_faceid(model, node: str) -> None:
    if not has_faceid(model):
        raise ValueError(f"{node}: the MODEL has no NullFace FaceID patch; connect it through "
                         "'NullFace Apply FaceID (native)' (without it nothing would be anonymized)")
    problem = N.prediction_problem(model.get_model_object("model_sampling"))
    if problem:
        raise ValueError(f"{node}: {problem}")


# --------------------------------------------------------------------------------------------- FaceID patch
class FaceIDAttention:
    """attn2 replacement: text attention + scale × attention over the identity tokens (IP-Adapter, decoupled).

    Conditional rows (ComfyUI's cond_or_uncond = 0) attend to c_id's tokens, unconditional rows (1) to the
    null identity's (the zero vector through the projection), as the reference defines ∅.
    """

    nullface_faceid = True

    def __init__(self, k_ip: torch.Tensor, v_ip: torch.Tensor, cond: torch.Tensor, null: torch.Tensor, scale: float):
        self.k_ip, self.v_ip, self.cond, self.null, self.scale = k_ip, v_ip, cond, null, float(scale)

    def to(self, device_or_dtype):
        """Called by ComfyUI's model management when it moves the model (load, offload, unload)."""
        self.k_ip, self.v_ip = self.k_ip.to(device_or_dtype), self.v_ip.to(device_or_dtype)
        self.cond, self.null = self.cond.to(device_or_dtype), self.null.to(device_or_dtype)
        return self

    def __call__(self, q, k, v, extra_options):
        from comfy.ldm.modules.attention import optimized_attention
        precision = extra_options.get("attn_precision")

        def attention(q_, k_, v_, heads):
            return optimized_attention(q_, k_, v_, heads, attn_precision=precision, transformer_options=extra_options)
        tokens = N.identity_rows(self.cond, self.null, extra_options.get("cond_or_uncond"), q.shape[0])
        return N.ip_attention(attention, q, k, v, extra_options["n_heads"], tokens, self.k_ip, self.v_ip, self.scale)


def apply_faceid(model, faceid_sd: dict, vectors, scale: float = 1.0, lora_strength: float = 1.0, name: str = "faceid"):
    """A clone of ComfyUI ``model`` with FaceID: its LoRA through ComfyUI's LoRA loading and our attn2 patch."""
    import comfy.lora
    import comfy.utils

    unet_config = model.model.model_config.unet_config
    width = faceid_sd["image_proj"]["norm.weight"].shape[0]
    if unet_config.get("context_dim") != width or unet_config.get("in_channels", 4) != 4:
        raise ValueError(f"'{name}' is FaceID for cross-attention width {width}; this MODEL has "
                         f"{unet_config.get('context_dim')} (NullFace needs Stable Diffusion 1.5). {FACEID_HINT}")
    to_ldm = comfy.utils.unet_to_diffusers(unet_config)                 # diffusers weight name -> ldm name
    layers = N.faceid_layer_order(k[:-len(".to_q.weight")] for k in to_ldm
                                  if k.endswith((".attn1.to_q.weight", ".attn2.to_q.weight")))
    ip = faceid_sd["ip_adapter"]
    if N.faceid_layer_count(ip) != len(layers):
        raise ValueError(f"'{name}' has {N.faceid_layer_count(ip)} attention layers, this MODEL {len(layers)}: "
                         f"not an SD1.5 UNet, or not an SD1.5 FaceID file. {FACEID_HINT}")
    patched = model.clone()
    lora = N.faceid_lora(ip, layers)
    if lora:
        key_map = comfy.lora.model_lora_keys_unet(model.model, {})
        patches = comfy.lora.load_lora(lora, key_map, log_missing=False)
        added = patched.add_patches(patches, float(lora_strength))
        if len(patches) * 2 != len(lora) or len(added) != len(patches):
            raise ValueError(f"the FaceID LoRA of '{name}' did not map onto this MODEL "
                             f"({len(added)} of {len(lora) // 2} layers); the output would not match the method")
    vecs = torch.as_tensor(vectors, dtype=torch.float32)
    cond = N.faceid_tokens(faceid_sd["image_proj"], vecs)
    null = N.faceid_tokens(faceid_sd["image_proj"], torch.zeros(1, vecs.shape[1]))
    for i, layer in enumerate(layers):
        if not layer.endswith("attn2"):
            continue
        block, number, index = N.ldm_block(to_ldm[layer + ".to_q.weight"])
        k_ip, v_ip = ip.get(f"{i}.to_k_ip.weight"), ip.get(f"{i}.to_v_ip.weight")
        if k_ip is None or v_ip is None:
            raise ValueError(f"'{name}' has no identity weights for attention layer {i} ({layer}). {FACEID_HINT}")
        patched.set_model_attn2_replace(FaceIDAttention(k_ip.float(), v_ip.float(), cond, null, scale),
                                        block, number, index)
    log.info("NullFace FaceID '%s' on the MODEL: LoRA on %d layers (strength %g), identity attention on %d, "
             "%d identities", name, len(lora) // 2, lora_strength, sum(n.endswith("attn2") for n in layers),
             cond.shape[0])
    return patched


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


# ---------------------------------------------------------------------------------- inversion and replay
@functools.lru_cache(maxsize=None)
def _classes():
    """ComfyUI subclasses, built on first use (ComfyUI is not importable at module load in tests)."""
    import comfy.samplers
    from comfy.k_diffusion import sampling as k_sampling

    class NullGuider(comfy.samplers.CFGGuider):
        """Only the null path: the unconditional prediction (cond_or_uncond = 1), as the inversion needs."""

        def set_conds(self, negative):
            self.inner_set_conds({"negative": negative})

        def predict_noise(self, x, timestep, model_options={}, seed=None):
            return comfy.samplers.calc_cond_batch(self.inner_model, [None, self.conds.get("negative")], x,
                                                  timestep, model_options)[1]

    class InversionSampler(comfy.samplers.Sampler):
        """Runs the edit-friendly inversion through the guider; returns x at σ_0 and keeps the noise maps."""

        def __init__(self, seed: int, batch: int, callback):
            self.seed, self.batch, self.callback, self.result = seed, batch, callback, None

        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            def denoise(x, s):
                return model_wrap(x, s, model_options=extra_args["model_options"], seed=extra_args.get("seed"))
            self.result = N.invert_sigmas(denoise, latent_image, sigmas, self.seed, batch=self.batch,
                                          callback=self.callback)
            return self.result.x_start

    class ReplaySampler(comfy.samplers.KSAMPLER):
        """k-diffusion's DDPM sampler with the inverted z_t as its noise_sampler (SamplerCustomAdvanced)."""

        nullface_replay = True

        def __init__(self, inversion: N.NativeInversion):
            self.inversion = inversion

            def replay(model, x, sigmas, extra_args=None, callback=None, disable=None):
                if sigmas.shape[0] != inversion.sigmas.shape[0] or not torch.allclose(
                        sigmas.float().cpu(), inversion.sigmas, rtol=1e-6, atol=0):
                    raise ValueError("NullFace replay sampler: connect the SIGMAS of the same NullFace Inversion "
                                     "node (its noise maps belong to those steps)")
                zs = inversion.zs.to(x.device, x.dtype)
                x = k_sampling.sample_ddpm(model, x, sigmas, extra_args=extra_args, callback=callback,
                                           disable=disable, noise_sampler=N.replay_noise_sampler(sigmas, zs))
                # the last step ends at σ(t=0) > 0: return the DDPM latent there, as the reference does
                return N.to_vp(x, sigmas[-1])
            super().__init__(replay)

        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            if torch.count_nonzero(noise) > 0:
                raise ValueError("NullFace replay sampler: connect 'Disable Noise' to SamplerCustomAdvanced's noise "
                                 "input (the inverted noise maps are the noise; extra noise would change the face)")
            if latent_image is None or tuple(latent_image.shape) != tuple(self.inversion.x_start.shape):
                raise ValueError("NullFace replay sampler: connect the LATENT of the same NullFace Inversion node "
                                 f"(expected shape {tuple(self.inversion.x_start.shape)})")
            return super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                  disable_pbar)

    class NullFaceGuider(comfy.samplers.CFGGuider):
        """Eqs. 3-4: cfg = λ_cfg between c_id (positive) and ∅ (negative); the mask M after the delay."""

        mask = None
        mask_delay = DEFAULT_DELAY
        soft_mask = False

        def set_nullface(self, mask, mask_delay: float, soft_mask: bool):
            self.mask, self.mask_delay, self.soft_mask = mask, float(mask_delay), bool(soft_mask)

        def sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
            if not getattr(sampler, "nullface_replay", False):
                raise ValueError("NullFace Guider: connect the SAMPLER of 'NullFace Inversion (native sampler)' "
                                 f"to SamplerCustomAdvanced (got {type(sampler).__name__}): only its replay of the "
                                 "inverted noise maps is the method; a core sampler such as euler would return "
                                 "another face without anonymizing it as NullFace does")
            return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

        def predict_noise(self, x, timestep, model_options={}, seed=None):
            cond, uncond = comfy.samplers.calc_cond_batch(
                self.inner_model, [self.conds.get("positive"), self.conds.get("negative")], x, timestep,
                model_options)
            m = None
            if self.mask is not None:
                sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
                running = int(sigmas.shape[0]) - 1 if sigmas is not None else 0
                i = N.step_index(timestep, sigmas) if sigmas is not None else running
                if i >= N.mask_delay_steps(self.mask_delay, running):
                    m = N.guidance_mask(self.mask, x.shape[-2:], self.soft_mask).to(x.device, x.dtype)
                    if m.shape[0] not in (1, x.shape[0]):
                        raise ValueError(f"{m.shape[0]} masks for {x.shape[0]} latents: give one, or one per image")
            return N.guidance(cond, uncond, self.cfg, m)

    return {"NullGuider": NullGuider, "InversionSampler": InversionSampler, "ReplaySampler": ReplaySampler,
            "NullFaceGuider": NullFaceGuider}


def native_invert(model, negative, latent: dict, steps: int, t_skip: int, seed: int, batch: int = 0, callback=None):
    """Invert ``latent`` on the null path of a FaceID-patched ComfyUI MODEL: (LATENT, SIGMAS, SAMPLER).

    ``batch`` 0 = auto (1 UNet evaluation per call on the CPU, 8 elsewhere: ``pick_inversion_batch``)."""
    classes = _classes()
    samples = latent["samples"]
    if samples.ndim != 4 or samples.shape[1] != 4:
        raise ValueError(f"NullFace Inversion needs an SD1.5 latent [B,4,h,w] (VAE Encode), got {tuple(samples.shape)}")
    table = model.get_model_object("model_sampling").sigmas.float().cpu()
    sigmas = N.inversion_sigmas(table, steps, t_skip)
    guider = classes["NullGuider"](model)
    guider.set_conds(negative)
    inverter = classes["InversionSampler"](seed, pick_inversion_batch(model.load_device, batch), callback)
    start = guider.sample(torch.zeros_like(samples), samples, inverter, sigmas, seed=seed)
    result = inverter.result
    result.zs, result.x_start = result.zs.cpu(), result.x_start.cpu()
    out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
    out["samples"] = start.cpu()
    return out, sigmas, classes["ReplaySampler"](result)


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
        _require_faceid(model, "NullFace Inversion")
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
        _require_faceid(model, "NullFace Guider")
        guider = _classes()["NullFaceGuider"](model)
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
