"""The native path's math (nullface.methods.nullface.native), without ComfyUI.

What needs a real ComfyUI (the MODEL patch, the SAMPLER and GUIDER inside SamplerCustomAdvanced, POST /free)
is checked by hand with benchmarks/native_vs_engine.py; here: the sigma table, k-diffusion's DDPM step and the
noise-replay sampler against the engine, the guidance of eqs. 3-4 with its mask delay, and FaceID's parts.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from nullface.methods.nullface import native as N
from nullface.diffusion.inversion import invert
from nullface.diffusion.masks import latent_mask
from nullface.methods.nullface.sampler import sample_nullface
from nullface.diffusion.schedule import posterior_mean, sd15_schedule

TABLE = N.sd15_sigmas()


# --------------------------------------------------------------------------------------------- sigma table
def test_sd15_sigmas_are_the_schedule_of_sd15():
    abar = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)
    assert TABLE.dtype == torch.float32 and TABLE.shape == (1000,)
    assert torch.allclose(TABLE.double(), ((1 - abar) / abar).sqrt(), rtol=1e-6)
    abar32 = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2, 0)   # diffusers' float32
    assert torch.allclose(N.alpha_bar(TABLE), abar32, rtol=1e-5)


@pytest.mark.parametrize("steps,t_skip", [(100, 70), (100, 0), (50, 20), (30, 29)])
def test_inversion_sigmas_give_the_method_timesteps_and_end_at_sigma_of_t0(steps, t_skip):
    sigmas = N.inversion_sigmas(TABLE, steps, t_skip)
    sched = sd15_schedule(steps)
    assert sigmas.shape == (steps - t_skip + 1,)
    assert torch.equal(N.sigma_to_timestep(sigmas[:-1], TABLE), sched.timesteps[t_skip:])   # round trip
    assert sigmas[-1] == TABLE[0] > 0                                                       # σ(t=0), not 0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    if (steps, t_skip) == (100, 0):
        assert N.sigma_to_timestep(sigmas[:-1], TABLE)[[0, -1]].tolist() == [991, 1]
    # the k-diffusion step between consecutive sigmas is the method's step: same ᾱ, ᾱ_prev and σ_t
    a, a_prev = N.alpha_bar(sigmas[:-1]), N.alpha_bar(sigmas[1:])
    assert torch.allclose(a, sched.abar[t_skip:], rtol=1e-5)
    assert torch.allclose(a_prev, sched.abar_prev[t_skip:], rtol=1e-5)
    assert torch.allclose(N.ddpm_std(sigmas[:-1], sigmas[1:]), sched.sigma[t_skip:], rtol=1e-4)


def test_the_ddpm_step_is_the_method_posterior_mean():
    sched = sd15_schedule(100)
    sigmas = N.inversion_sigmas(TABLE, 100, 0)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for k in (0, 50, 99):
        ours = N.ddpm_mean(x, sigmas[k], sigmas[k + 1], eps)
        ref = posterior_mean(x, eps, sched.abar[k], sched.abar_prev[k], sched.sigma[k])   # DDIM at η = 1
        assert torch.allclose(ours, ref, atol=1e-5), k


def test_mask_delay_steps():
    assert N.mask_delay_steps(1 / 3, 30) == 10                # the paper: mask at timestep 80
    assert N.mask_delay_steps(0.0, 30) == 0
    assert N.mask_delay_steps(1.0, 30) == 29                  # at most the last running step
    assert N.mask_delay_steps(0.5, 0) == 0
    assert N.mask_delay_steps(0.25, 8) == 2


def test_step_index_finds_the_step_of_a_sigma():
    sigmas = N.inversion_sigmas(TABLE, 100, 70)
    assert [N.step_index(sigmas[i] * torch.ones(3), sigmas) for i in range(30)] == list(range(30))


# ----------------------------------------------------------------------------------- a fake ε network
def _eps(x_vp: torch.Tensor, t: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """A smooth, timestep-dependent stand-in for the UNet: ε(x_t, t)."""
    tt = t.float().view(-1, 1, 1, 1) / 1000.0
    return torch.tanh(0.7 * x_vp + tt + shift) + 0.1 * x_vp.roll(1, dims=-1) * (1 + shift)


def _denoiser(shift: float = 0.0):
    """k-diffusion's denoiser of that ε: D(x, σ) = x - σ ε(x / sqrt(1 + σ²), t(σ))."""
    def d(x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        return x - s * _eps(x / (1 + s ** 2).sqrt(), N.sigma_to_timestep(sigma, TABLE), shift)
    return d


def _x0():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))


def _replay(x_start, inversion, denoise=None, callback=None):
    sigmas = inversion.sigmas
    x = N.sample_ddpm(denoise or _denoiser(), x_start, sigmas, callback=callback,
                      noise_sampler=N.replay_noise_sampler(sigmas, inversion.zs))
    return N.to_vp(x, sigmas[-1])


# ------------------------------------------------------------------------------------- inversion & replay
def test_the_replay_sampler_reproduces_the_inverted_trajectory():
    x0, seed = _x0(), 3
    sigmas = N.inversion_sigmas(TABLE, 100, 70)
    inv = N.invert_sigmas(_denoiser(), x0, sigmas, seed, batch=4)
    assert inv.unet_evals == 2 * 29 and inv.zs.shape[0] == 30 and not inv.zs[-1].any()
    # the noisy latents the inversion drew: the engine's order (nearest x0 first), from the seed, on the CPU
    gen, expected = torch.Generator().manual_seed(seed), {}
    for i in range(29, -1, -1):
        a = N.alpha_bar(sigmas[i])
        expected[i] = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
    seen = {}
    _replay(inv.x_start, inv, callback=lambda d: seen.__setitem__(d["i"], N.to_vp(d["x"], d["sigma"])))
    assert sorted(seen) == list(range(30))
    for i in range(30):
        assert torch.allclose(seen[i], expected[i], atol=2e-5), i


def test_exact_last_step_returns_the_input_and_the_default_is_one_deterministic_step_away():
    x0 = _x0()
    sigmas = N.inversion_sigmas(TABLE, 100, 70)
    exact = N.invert_sigmas(_denoiser(), x0, sigmas, 0, exact_last_step=True)
    assert torch.allclose(_replay(exact.x_start, exact), x0, atol=2e-5)
    default = N.invert_sigmas(_denoiser(), x0, sigmas, 0)
    out = _replay(default.x_start, default)
    assert not torch.allclose(out, x0, atol=1e-3)            # the reference's zeroed last map
    last = N.ddpm_std(sigmas[-2], sigmas[-1]) * exact.zs[-1]          # σ_t z of the last step, zeroed by default
    assert torch.allclose(out, _replay(exact.x_start, exact) - last, atol=2e-5)


def test_a_changed_noise_map_changes_the_result():
    x0 = _x0()
    sigmas = N.inversion_sigmas(TABLE, 50, 30)
    inv = N.invert_sigmas(_denoiser(), x0, sigmas, 0, exact_last_step=True)
    inv.zs[5] += 0.1
    assert not torch.allclose(_replay(inv.x_start, inv), x0, atol=1e-3)


def test_t_skip_equal_to_steps_changes_nothing():
    x0 = _x0()
    sigmas = N.inversion_sigmas(TABLE, 100, 100)
    inv = N.invert_sigmas(_denoiser(), x0, sigmas, 0)
    assert inv.unet_evals == 0 and sigmas.shape == (1,)
    assert torch.allclose(_replay(inv.x_start, inv), x0, atol=1e-6)


def test_the_inversion_is_the_engine_inversion():
    """Same seed, same ε network: the start latent and noise maps of the engine (diffusers' schedule)."""
    x0 = _x0()
    sched = sd15_schedule(100)
    eng = invert(lambda x, t: _eps(x, t), x0, sched, 70, seed=5)
    nat = N.invert_sigmas(_denoiser(), x0, N.inversion_sigmas(TABLE, 100, 70), 5)
    assert torch.allclose(N.to_vp(nat.x_start, nat.sigmas[0]), eng.x_start, atol=1e-5)
    assert torch.allclose(nat.zs, eng.zs, atol=2e-3)          # z = Δ/σ_t: float error divided by a small σ_t
    assert torch.allclose(nat.zs[:20], eng.zs[:20], atol=1e-4)


# ------------------------------------------------------------------------------------------- guidance
def test_guidance_is_eqs_3_and_4():
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    lam = 7.5
    hat = lam * cond + (1 - lam) * uncond                                              # eq. 3
    assert torch.allclose(N.guidance(cond, uncond, lam), hat)
    m = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    assert torch.allclose(N.guidance(cond, uncond, lam, m), m * hat + (1 - m) * uncond)   # eq. 4
    assert torch.equal(N.guidance(cond, uncond, lam, torch.zeros(1, 1, 8, 8)), uncond)
    assert torch.allclose(N.guidance(cond, uncond, lam, torch.ones(1, 1, 8, 8)), hat)
    # mixing denoised predictions D = x - σ ε is mixing ε (the weights sum to 1)
    x, s = torch.randn(2, 4, 8, 8, generator=g), 3.0
    assert torch.allclose(N.guidance(x - s * cond, x - s * uncond, lam, m), x - s * N.guidance(cond, uncond, lam, m),
                          atol=1e-4)


def test_guidance_mask_is_the_engine_mask():
    g = torch.Generator().manual_seed(2)
    mask = torch.rand(2, 64, 48, generator=g)
    assert torch.equal(N.guidance_mask(mask, (8, 6)), latent_mask(mask, (8, 6)))
    assert torch.equal(N.guidance_mask(mask, (8, 6), soft=True), latent_mask(mask, (8, 6), soft=True))
    assert N.guidance_mask(mask[0], (8, 6)).shape == (1, 1, 8, 6)
    assert N.guidance_mask(torch.rand(1, 100, 70, generator=g), (8, 6)).shape == (1, 1, 8, 6)   # resized first


def _guided(lam, mask, delay_fraction, sigmas):
    """What the NullFace GUIDER computes per step, on the fake cond/null ε networks."""
    cond, null = _denoiser(0.3), _denoiser()

    def d(x, sigma):
        i = N.step_index(sigma, sigmas)
        m = mask if i >= N.mask_delay_steps(delay_fraction, sigmas.shape[0] - 1) else None
        return N.guidance(cond(x, sigma), null(x, sigma), lam, m)
    return d


@pytest.mark.parametrize("delay", [1 / 3, 0.0, 0.9])
def test_the_native_path_equals_the_engine_sampler(delay):
    """Inversion + replay sampler + guidance (eqs. 3-4, mask delay) = the engine's invert + sample_nullface."""
    x0, lam = _x0(), 10.0
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:7] = 1.0
    steps, t_skip = 100, 70
    sched = sd15_schedule(steps)
    delay_steps = N.mask_delay_steps(delay, steps - t_skip)
    eng_inv = invert(lambda x, t: _eps(x, t), x0, sched, t_skip, seed=1)
    eng = sample_nullface(lambda x, t: (_eps(x, t, 0.3), _eps(x, t)), eng_inv.x_start, eng_inv.zs, sched, t_skip,
                          lam, mask, delay_steps)
    sigmas = N.inversion_sigmas(TABLE, steps, t_skip)
    nat_inv = N.invert_sigmas(_denoiser(), x0, sigmas, 1)
    nat = _replay(nat_inv.x_start, nat_inv, _guided(lam, mask, delay, sigmas))
    assert (eng - x0).abs().max() > 0.1                    # the identity path really changed the latents
    assert torch.allclose(nat, eng, atol=1e-4), float((nat - eng).abs().max())
    other = sample_nullface(lambda x, t: (_eps(x, t, 0.3), _eps(x, t)), eng_inv.x_start, eng_inv.zs, sched, t_skip,
                            lam, mask, delay_steps + 5)
    assert not torch.allclose(nat, other, atol=1e-3)       # the delay matters, and is the engine's


# ------------------------------------------------------------------------------------------ FaceID parts
def test_faceid_tokens_are_the_diffusers_projection(pipe):
    proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    sd = {"proj.0.weight": proj.ff.net[0].proj.weight, "proj.0.bias": proj.ff.net[0].proj.bias,
          "proj.2.weight": proj.ff.net[2].weight, "proj.2.bias": proj.ff.net[2].bias,
          "norm.weight": proj.norm.weight, "norm.bias": proj.norm.bias}
    v = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = proj(v)
        null = proj(torch.zeros(1, 512))
    assert torch.allclose(N.faceid_tokens(sd, v), ref, atol=1e-5)
    assert torch.allclose(N.faceid_tokens(sd, torch.zeros(1, 512)), null, atol=1e-6)
    assert null.abs().max() > 0                           # ∅ is the projected zero vector, not "no tokens"


def _diffusers_order(unet) -> list[str]:
    return [k[: -len(".processor")] for k in unet.attn_processors]


def test_faceid_layer_order_is_diffusers_attn_processors_order():
    from diffusers import UNet2DConditionModel
    from nullface.models.sd15 import CONFIG_DIR
    from tests.tiny_models import tiny_unet
    tiny = _diffusers_order(tiny_unet())
    assert N.faceid_layer_order(reversed(tiny)) == tiny
    with torch.device("meta"):                            # the full SD1.5 structure, without its weights
        full = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(CONFIG_DIR / "unet")))
    order = _diffusers_order(full)
    assert len(order) == 32 and N.faceid_layer_order(sorted(order)) == order
    assert order[-1].startswith("mid_block") and order[1].endswith("attn2")


def test_faceid_lora_uses_every_lora_weight_on_modules_that_exist(tiny):
    from diffusers import UNet2DConditionModel
    from nullface.models.sd15 import read_faceid
    sd = read_faceid(tiny["faceid_bin"])
    unet = UNet2DConditionModel.from_pretrained(str(tiny["sd15"] / "unet"))
    layers = _diffusers_order(unet)
    assert N.faceid_layer_count(sd["ip_adapter"]) == len(layers)
    lora = N.faceid_lora(sd["ip_adapter"], layers)
    assert len(lora) == sum(1 for k in sd["ip_adapter"] if "_lora." in k)
    modules = {n.replace(".", "_") for n, _ in unet.named_modules()}
    for key in lora:
        assert key.startswith("lora_unet_") and key.endswith((".lora_down.weight", ".lora_up.weight"))
        assert key[len("lora_unet_"):].rsplit(".lora_", 1)[0] in modules, key
    assert lora["lora_unet_" + layers[1].replace(".", "_") + "_to_out_0.lora_up.weight"] is \
        sd["ip_adapter"]["1.to_out_lora.up.weight"]


def test_identity_rows_give_c_id_to_conditional_rows_and_null_to_the_others():
    cond, null = torch.ones(2, 4, 8), torch.zeros(1, 4, 8)
    rows = N.identity_rows(cond, null, [0, 1], 4)                       # ComfyUI's [cond chunk, uncond chunk]
    assert rows[:2].eq(1).all() and rows[2:].eq(0).all()
    assert N.identity_rows(cond, null, [1], 2).eq(0).all()             # the inversion: null rows only
    assert N.identity_rows(cond[:1], null, [1, 0], 6)[3:].eq(1).all()  # one identity for the whole batch
    with pytest.raises(ValueError, match="identities for a batch of 3"):
        N.identity_rows(cond, null, [0], 3)
    with pytest.raises(ValueError, match="cond_or_uncond"):
        N.identity_rows(cond, null, None, 2)


def test_ldm_block_names_comfyui_attention_blocks():
    assert N.ldm_block("input_blocks.1.1.transformer_blocks.0.attn2.to_q.weight") == ("input", 1, 0)
    assert N.ldm_block("middle_block.1.transformer_blocks.0.attn2.to_q.weight") == ("middle", 0, 0)
    assert N.ldm_block("output_blocks.11.1.transformer_blocks.2.attn2.to_q.weight") == ("output", 11, 2)


# ----------------------------------------------------------------------------------------------- the nodes
def test_native_nodes_load_without_comfyui_and_refuse_an_unpatched_model():
    from tests.conftest import pack_module
    native = pack_module("nodes.native")                 # (no ComfyUI import at load: tests/test_packaging.py)
    for cls in native.NODE_CLASS_MAPPINGS.values():
        cls.INPUT_TYPES()

    class Model:                                         # a MODEL without our FaceID patch
        model_options = {"transformer_options": {"patches_replace": {"attn2": {("input", 1, 0): object()}}}}
    with pytest.raises(ValueError, match="no NullFace FaceID patch"):
        native.NullFaceGuiderNode().get_guider(Model(), [], [], 10.0, 1 / 3, False)
    with pytest.raises(ValueError, match="no NullFace FaceID patch"):
        native.NullFaceNativeInversion().invert(Model(), [], {"samples": torch.zeros(1, 4, 8, 8)}, 100, 70, 0)
    Model.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1, 0)] = \
        native.FaceIDAttention(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 1.0)
    assert native.has_faceid(Model())
    delay = native.NullFaceGuiderNode.INPUT_TYPES()["required"]["mask_delay"][1]["default"]
    assert N.mask_delay_steps(delay, 30) == 10
    assert np.isclose(delay, 1 / 3, atol=1e-4)


def test_the_native_example_workflow_wires_the_method():
    import json
    from pathlib import Path
    api = json.loads((Path(__file__).resolve().parents[1] / "workflows" / "api" / "nullface_native_sampler.json")
                     .read_text(encoding="utf-8"))
    by_type = {n["class_type"]: (k, n["inputs"]) for k, n in api.items()}
    ckpt, _ = by_type["CheckpointLoaderSimple"]
    faceid, patch = by_type["NullFaceApplyFaceID"]
    assert patch["model"] == [ckpt, 0] and patch["identity"][0] == by_type["NullFaceNegateIdentity"][0]
    inv_id, inv = by_type["NullFaceNativeInversion"]
    _, guider = by_type["NullFaceGuider"]
    _, sampler = by_type["SamplerCustomAdvanced"]
    assert inv["model"] == guider["model"] == [faceid, 0]                     # both run the FaceID-patched MODEL
    assert (sampler["sampler"], sampler["sigmas"], sampler["latent_image"]) == ([inv_id, 2], [inv_id, 1], [inv_id, 0])
    assert api[sampler["noise"][0]]["class_type"] == "DisableNoise"
    assert api[sampler["guider"][0]]["class_type"] == "NullFaceGuider"
    assert (inv["steps"], inv["t_skip"], guider["lambda_cfg"]) == (100, 70, 10.0)
    assert N.mask_delay_steps(guider["mask_delay"], inv["steps"] - inv["t_skip"]) == 10
    empty = {guider["positive"][0], guider["negative"][0], inv["negative"][0]}
    assert all(api[e]["class_type"] == "CLIPTextEncode" and api[e]["inputs"]["text"] == "" for e in empty)
    decode = next(n for n in api.values() if n["class_type"] == "VAEDecode")
    assert decode["inputs"]["samples"] == [by_type["SamplerCustomAdvanced"][0], 0]


def _sdpa(q, k, v, heads):
    """A plain multi-head attention backend ([B, N, heads·d] in and out), as ComfyUI's optimized attention."""
    b, n, inner = q.shape
    split = lambda t: t.view(b, -1, heads, inner // heads).transpose(1, 2)  # noqa: E731
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, n, inner)


def test_ip_attention_is_diffusers_ip_adapter_attention(pipe):
    """The attn2 replacement (text attention + scale × identity attention) = diffusers' IP-Adapter processor."""
    unet = pipe.unet
    name = next(n for n in unet.attn_processors if n.endswith("attn2.processor"))
    attn = dict(unet.named_modules())[name[: -len(".processor")]]
    proc = attn.processor
    proc.scale = [0.7]
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 16, attn.to_q.in_features, generator=g)
    text = torch.randn(2, 77, attn.to_k.in_features, generator=g)
    tokens = torch.randn(2, 4, attn.to_k.in_features, generator=g)
    with torch.no_grad():
        ref = attn(h, encoder_hidden_states=(text, [tokens[:, None]]))
        ours = attn.to_out[0](N.ip_attention(_sdpa, attn.to_q(h), attn.to_k(text), attn.to_v(text), attn.heads,
                                             tokens, proc.to_k_ip[0].weight, proc.to_v_ip[0].weight, 0.7))
        plain = attn.to_out[0](_sdpa(attn.to_q(h), attn.to_k(text), attn.to_v(text), attn.heads))
    proc.scale = [1.0]
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())
    assert not torch.allclose(plain, ref, atol=1e-3)      # the identity tokens matter


# ------------------------------------------------------------------------- wirings that are not the method
class EPS:                                               # ComfyUI's comfy.model_sampling prediction types
    pass


class V_PREDICTION(EPS):
    pass


class ModelSamplingDiscrete:
    sigmas = TABLE


def _patched_model(prediction):
    """A MODEL with NullFace's FaceID patch whose model_sampling has the given prediction type."""
    from tests.conftest import pack_module
    native = pack_module("nodes.native")
    sampling = type("ModelSamplingAdvanced", (ModelSamplingDiscrete, prediction), {})()

    class Model:
        load_device = torch.device("cpu")
        model_options = {"transformer_options": {"patches_replace": {"attn2": {("input", 1, 0): native.FaceIDAttention(
            torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 1.0)}}}}

        def get_model_object(self, name):
            assert name == "model_sampling"
            return sampling
    return native, Model()


def test_prediction_problem_names_v_prediction_and_accepts_eps():
    assert N.prediction_problem(type("ModelSampling", (ModelSamplingDiscrete, EPS), {})()) is None
    msg = N.prediction_problem(type("ModelSamplingAdvanced", (ModelSamplingDiscrete, V_PREDICTION), {})())
    assert "predicts v" in msg and "ε-prediction" in msg and "ModelSamplingDiscrete" in msg
    assert "unknown prediction" in N.prediction_problem(ModelSamplingDiscrete())


def test_native_nodes_refuse_a_v_prediction_model():
    """Before: ModelSamplingDiscrete(v_prediction) ran and returned an image without a word."""
    native, model = _patched_model(V_PREDICTION)
    with pytest.raises(ValueError, match="predicts v"):
        native.NullFaceGuiderNode().get_guider(model, [], [], 10.0, 1 / 3, False)
    with pytest.raises(ValueError, match="predicts v"):
        native.NullFaceNativeInversion().invert(model, [], {"samples": torch.zeros(1, 4, 8, 8)}, 100, 70, 0)


@pytest.fixture
def fake_samplers(monkeypatch):
    """comfy.samplers and comfy.k_diffusion.sampling stand-ins: what the native classes subclass."""
    import types
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    kd = types.ModuleType("comfy.k_diffusion")
    kd_sampling = types.ModuleType("comfy.k_diffusion.sampling")

    class CFGGuider:
        def __init__(self, model_patcher):
            self.model_patcher, self.conds, self.cfg = model_patcher, {}, 1.0

        def set_conds(self, positive, negative):
            self.conds = {"positive": positive, "negative": negative}

        def inner_set_conds(self, conds):
            self.conds = conds

        def set_cfg(self, cfg):
            self.cfg = cfg

        def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
                   seed=None):
            return ("sampled with", sampler)

    class Sampler:
        pass

    class KSAMPLER(Sampler):
        def __init__(self, sampler_function, extra_options={}, inpaint_options={}):
            self.sampler_function = sampler_function

    samplers.CFGGuider, samplers.Sampler, samplers.KSAMPLER = CFGGuider, Sampler, KSAMPLER
    samplers.calc_cond_batch = lambda *a, **k: None
    comfy.samplers, comfy.k_diffusion, kd.sampling = samplers, kd, kd_sampling
    for name, module in {"comfy": comfy, "comfy.samplers": samplers, "comfy.k_diffusion": kd,
                         "comfy.k_diffusion.sampling": kd_sampling}.items():
        monkeypatch.setitem(sys.modules, name, module)
    from tests.conftest import pack_module
    native = pack_module("nodes.native")
    native._classes.cache_clear()
    yield samplers
    native._classes.cache_clear()


def test_the_guider_refuses_a_core_sampler(fake_samplers):
    """Before: euler (or any core sampler) with the NullFace Guider returned an image without a word."""
    native, model = _patched_model(EPS)
    (guider,) = native.NullFaceGuiderNode().get_guider(model, [], [], 10.0, 1 / 3, False)
    euler = fake_samplers.KSAMPLER(lambda *a, **k: None)
    with pytest.raises(ValueError, match="SAMPLER of 'NullFace Inversion"):
        guider.sample(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), euler, TABLE[:3])
    inv = N.NativeInversion(x_start=torch.zeros(1, 4, 8, 8), zs=torch.zeros(2, 1, 4, 8, 8), sigmas=TABLE[:3], seed=0)
    replay = native._classes()["ReplaySampler"](inv)
    assert guider.sample(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), replay, TABLE[:3]) == ("sampled with", replay)
