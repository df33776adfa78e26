"""ComfyUI's side of the native path: the FaceID attention patch, the inversion and replay SAMPLERs and the
eqs. 3-4 GUIDER, as objects ComfyUI calls while it samples.

The math lives in ``nullface.methods.nullface.native`` (eqs. 3-4 in ``nullface.methods.nullface.sampler``);
ComfyUI is imported only inside functions (the pack imports without it), and the classes that subclass
ComfyUI's are built on first use (``comfy_classes``). The node classes are in ``nodes/native.py``.
"""
from __future__ import annotations

import functools
import logging

import torch

from ..nullface.methods.nullface import native as N
from ..nullface.methods.nullface.sampler import guidance
from ..nullface.methods.nullface.settings import NullFaceSettings
from ..nullface.models.devices import pick_inversion_batch
from ..nullface.models.sd15 import FACEID_HINT

log = logging.getLogger("nullface")

DEFAULT_DELAY = NullFaceSettings.mask_delay   # the paper's mask at timestep 80 = after 10 of the 30 running steps


def _is_ours(patch) -> bool:
    return bool(getattr(patch, "nullface_faceid", False))


def has_faceid(model) -> bool:
    """Whether a MODEL carries NullFace's FaceID attention patch."""
    replace = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    return any(_is_ours(p) for p in replace.values())


def require_faceid(model, node: str) -> None:
    """Refuse a MODEL without the FaceID patch (nothing would be anonymized) or with a wiring that is not the method."""
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


# ---------------------------------------------------------------------------------- inversion and replay
@functools.lru_cache(maxsize=None)
def comfy_classes():
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
            m, i, delay = None, 0, 0
            if self.mask is not None:
                sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
                running = int(sigmas.shape[0]) - 1 if sigmas is not None else 0
                i = N.step_index(timestep, sigmas) if sigmas is not None else running
                delay = N.mask_delay_steps(self.mask_delay, running)
                if i >= delay:                                  # M at latent size, from the delay on
                    m = N.guidance_mask(self.mask, x.shape[-2:], self.soft_mask).to(x.device, x.dtype)
                    if m.shape[0] not in (1, x.shape[0]):
                        raise ValueError(f"{m.shape[0]} masks for {x.shape[0]} latents: give one, or one per image")
            return guidance(cond, uncond, self.cfg, m, i, delay)      # eqs. 3-4, the engine sampler's

    return {"NullGuider": NullGuider, "InversionSampler": InversionSampler, "ReplaySampler": ReplaySampler,
            "NullFaceGuider": NullFaceGuider}


def native_invert(model, negative, latent: dict, steps: int, t_skip: int, seed: int, batch: int = 0, callback=None):
    """Invert ``latent`` on the null path of a FaceID-patched ComfyUI MODEL: (LATENT, SIGMAS, SAMPLER).

    ``batch`` 0 = auto (1 UNet evaluation per call on the CPU, 8 elsewhere: ``pick_inversion_batch``)."""
    classes = comfy_classes()
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
