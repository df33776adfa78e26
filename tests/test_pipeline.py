"""The engine on tiny random-weight SD1.5 / FaceID models loaded by the real loaders."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from nullface.errors import InputError, ModelFileError
from nullface.faces.identity import negate_identities
from nullface.models.sd15 import load_pipe, read_faceid
from nullface.methods.nullface.denoiser import PipeDenoiser
from nullface.diffusion.masks import latent_mask
from nullface.methods.nullface.pipeline import (anonymize_face, decode, encode, invert_images, invert_latents, sample_latents,
                                                unet_evals_per_face)
from nullface.diffusion.inversion import invert
from nullface.methods.nullface.sampler import sample_nullface
from nullface.diffusion.schedule import schedule_from_config
from nullface.methods.nullface.settings import NullFaceSettings

SIZE = 64


@pytest.fixture(scope="module")
def faces():
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def identity():
    rng = np.random.RandomState(1)
    e = rng.randn(2, 512).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def null_path(pipe, inv, cid, s, masks=None, mask_delay=0):
    """The sampler at λ_cfg = 0 (the null path), called below the settings' validation, which refuses
    λ_cfg = 0 because it anonymizes nothing."""
    den = PipeDenoiser(pipe, cid.vectors, s.prompt, cond_scale=s.ip_adapter_scale, null_scale=inv.ip_adapter_scale)
    m = None if masks is None else latent_mask(torch.as_tensor(masks), inv.x0.shape[-2:]).to(inv.x0.device)
    return sample_nullface(den, inv.x_start, inv.zs, inv.schedule, inv.t_skip, 0.0, m, mask_delay)


class UNetCounter:
    """Counts UNet sample-evaluations (a batch of k counts k) through a forward hook."""

    def __init__(self, unet):
        self.evals = 0
        self.calls = 0
        self.handle = unet.register_forward_pre_hook(self.hook)

    def hook(self, module, args):
        self.calls += 1
        self.evals += int(args[0].shape[0])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_loader_applies_faceid_adapter_and_lora(pipe):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    procs = pipe.unet.attn_processors
    cross = [name for name in procs if name.endswith("attn2.processor")]
    ip = [name for name, p in procs.items() if isinstance(p, IPAdapterAttnProcessor2_0)]
    assert ip == cross and len(cross) == 4          # every cross-attention layer carries the identity tokens
    assert "faceid_0" in pipe.unet.peft_config                                    # the FaceID LoRA
    assert pipe.unet.encoder_hid_proj is not None


def test_bin_and_safetensors_adapters_load_the_same_weights(tiny):
    a, b = read_faceid(tiny["faceid_bin"]), read_faceid(tiny["faceid_safetensors"])
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k])
    p = load_pipe(tiny["sd15"], tiny["faceid_safetensors"], device="cpu", dtype="fp32")
    assert "faceid_0" in p.unet.peft_config


def test_wrong_adapter_kinds_are_named(tmp_path, tiny):
    sd = read_faceid(tiny["faceid_bin"])
    plus = {"image_proj": {"perceiver_resampler.proj_in.weight": torch.zeros(2, 2), **sd["image_proj"]},
            "ip_adapter": sd["ip_adapter"]}
    torch.save(plus, tmp_path / "plus.bin")
    with pytest.raises(ModelFileError, match="FaceID Plus"):
        read_faceid(tmp_path / "plus.bin")
    plain = {"image_proj": {"proj.weight": torch.zeros(3072, 1024), "norm.weight": torch.zeros(768)},
             "ip_adapter": {"1.to_k_ip.weight": torch.zeros(2, 2)}}
    torch.save(plain, tmp_path / "ip-adapter_sd15.bin")
    with pytest.raises(ModelFileError, match="another kind"):
        read_faceid(tmp_path / "ip-adapter_sd15.bin")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.bin")
    with pytest.raises(ModelFileError, match="not an IP-Adapter"):
        read_faceid(tmp_path / "other.bin")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="corrupt"):
        read_faceid(tmp_path / "broken.safetensors")


def test_missing_files_name_file_folder_and_source(tmp_path, tiny):
    with pytest.raises(ModelFileError) as err:
        load_pipe(tiny["sd15"], tmp_path / "ipadapter" / "ip-adapter-faceid_sd15.bin", device="cpu")
    msg = str(err.value)
    assert "ip-adapter-faceid_sd15.bin" in msg and str(tmp_path / "ipadapter") in msg and "h94/IP-Adapter-FaceID" in msg
    with pytest.raises(ModelFileError) as err:
        load_pipe(tmp_path / "v1-5-pruned-emaonly.safetensors", tiny["faceid_bin"], device="cpu")
    assert "v1-5-pruned-emaonly.safetensors" in str(err.value) and "models/checkpoints" in str(err.value)


def plain_reference(pipe, x0, c_id, settings, mask=None):
    """NullFace written step by step from the paper/SPEC, as the reference runs it:
    all T inversion steps one by one (batch 1, null identity), z of the last step zeroed,
    then the cond and null paths as two separate UNet calls per step."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler.from_config(pipe.scheduler_config)
    sched.set_timesteps(settings.steps)
    ts = sched.timesteps
    abar_all = sched.alphas_cumprod
    T = settings.steps
    text0 = pipe.encode_prompt("")
    textc = pipe.encode_prompt(settings.prompt)
    pipe.set_ip_adapter_scale(settings.ip_adapter_scale)

    def unet(x, t, text, ids):
        return pipe.unet(x, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [ids[:, None]]}).sample

    def coeffs(t):
        prev = t - 1000 // T
        a = abar_all[t]
        ap = abar_all[prev] if prev >= 0 else sched.final_alpha_cumprod
        var = (1 - ap) / (1 - a) * (1 - a / ap)
        return a, ap, var

    def mu(x, eps, t):
        a, ap, var = coeffs(t)
        return ap.sqrt() * (x - (1 - a).sqrt() * eps) / a.sqrt() + (1 - ap - var).sqrt() * eps

    gens = [torch.Generator().manual_seed(settings.seed) for _ in range(x0.shape[0])]   # one face per run
    xts = [x0] + [None] * T
    for j in range(1, T + 1):                  # x_{t} for t = 1, 11, ..., 991 (reference's draw order)
        t = ts[T - j]
        n = torch.cat([torch.randn((1,) + tuple(x0.shape[1:]), generator=g) for g in gens])
        xts[j] = abar_all[t].sqrt() * x0 + (1 - abar_all[t]).sqrt() * n
    zeros = torch.zeros(1, 512)
    zs = [None] * T
    for idx in range(T - 1, -1, -1):            # every step, one at a time, used or not
        t = ts[T - 1 - idx]
        eps = torch.cat([unet(xts[idx + 1][b:b + 1], t, text0, zeros) for b in range(x0.shape[0])])
        m = mu(xts[idx + 1], eps, t)
        zs[idx] = (xts[idx] - m) / coeffs(t)[2].sqrt()
    zs[0] = torch.zeros_like(zs[0])
    x = xts[T - settings.t_skip]
    n = T - settings.t_skip
    for i, t in enumerate(ts[settings.t_skip:]):
        eps_c = torch.cat([unet(x[b:b + 1], t, textc, torch.as_tensor(c_id[b:b + 1])) for b in range(x.shape[0])])
        eps_0 = torch.cat([unet(x[b:b + 1], t, text0, zeros) for b in range(x.shape[0])])
        eps = eps_0 + settings.lambda_cfg * (eps_c - eps_0)
        if mask is not None and i >= settings.mask_delay_steps:
            eps = (1 - mask) * eps_0 + mask * eps
        x = mu(x, eps, t) + coeffs(t)[2].sqrt() * zs[n - 1 - i]
    return x


@torch.no_grad()
def test_optimized_path_equals_plain_reference(pipe, faces, identity):
    s = NullFaceSettings()
    cond = negate_identities(list(identity), s.lambda_id).vectors
    x0 = encode(pipe, faces)
    m = torch.ones(2, SIZE, SIZE)
    m[:, 20:40, 10:30] = 0                     # keep a region
    mlat = (torch.nn.functional.interpolate((m >= 0.5).float()[:, None], size=(8, 8), mode="nearest"))
    want = plain_reference(pipe, x0, cond, s, mask=mlat)
    inv = invert_latents(pipe, x0, s)
    got = sample_latents(pipe, inv, negate_identities(list(identity), s.lambda_id), s, masks=m)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


@torch.no_grad()
def test_defaults_spend_88_unet_evaluations_per_face(pipe, faces, identity):
    with UNetCounter(pipe.unet) as count:
        anonymize_face(pipe, faces[:1], NullFaceSettings(), embeddings=[identity[0]])
    assert count.evals == 29 + 30 * 2 - 1 == unet_evals_per_face() == 88   # step T_skip's ∅ is the inversion's
    assert count.calls == 29 + 30               # on the CPU one inversion step per call, one dual call per step
    with UNetCounter(pipe.unet) as count:
        anonymize_face(pipe, faces[:1], NullFaceSettings(inversion_batch=8), embeddings=[identity[0]])
    assert count.evals == 88 and count.calls == 4 + 30   # inversion in batches of 8
    with UNetCounter(pipe.unet) as count:
        anonymize_face(pipe, faces, NullFaceSettings(), embeddings=list(identity))
    assert count.evals == 2 * 88
    one_step = NullFaceSettings(t_skip=99)      # step 99's z is zeroed, not inverted: nothing to reuse
    with UNetCounter(pipe.unet) as count:
        anonymize_face(pipe, faces[:1], one_step, embeddings=[identity[0]])
    assert count.evals == 2 == unet_evals_per_face(one_step)


@torch.no_grad()
def test_first_null_prediction_reused_from_the_inversion(pipe, faces, identity):
    """The first sampling step evaluates ε(x_{T_skip}, t_{T_skip}, ∅): same latent (the inversion's x_start),
    timestep, empty prompt, zero identity and adapter scale as the inversion's step T_skip, so its value is
    taken from there; the result equals the sampler that evaluates it again, with or without a mask,
    another prompt and another scale on the identity path."""
    s = NullFaceSettings(mask_delay=0.0, prompt="an old man", ip_adapter_scale=0.7)
    x0 = encode(pipe, faces)
    inv = invert_latents(pipe, x0, s)
    assert inv.eps_first is not None
    fresh = PipeDenoiser(pipe, null_scale=inv.ip_adapter_scale).null(
        inv.x_start, inv.schedule.timesteps[inv.t_skip].repeat(2))
    assert torch.allclose(inv.eps_first, fresh, atol=1e-6)
    cid = negate_identities(list(identity), s.lambda_id)
    m = np.ones((2, SIZE, SIZE), np.float32)
    m[:, 20:40, 10:30] = 0
    for masks in (None, m):
        with UNetCounter(pipe.unet) as fast:
            got = sample_latents(pipe, inv, cid, s, masks=masks)
        den = PipeDenoiser(pipe, cid.vectors, s.prompt, cond_scale=s.ip_adapter_scale,
                           null_scale=inv.ip_adapter_scale)
        mlat = None if masks is None else latent_mask(torch.as_tensor(masks), inv.x0.shape[-2:])
        with UNetCounter(pipe.unet) as plain:
            want = sample_nullface(den, inv.x_start, inv.zs, inv.schedule, inv.t_skip, s.lambda_cfg, mlat,
                                   s.mask_delay_steps)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        assert plain.evals - fast.evals == 2        # one per face


@torch.no_grad()
def test_null_path_returns_the_input_latents(pipe, faces, identity):
    s = NullFaceSettings(exact_last_step=True)
    x0 = encode(pipe, faces)
    inv = invert_latents(pipe, x0, s)
    cid = negate_identities(list(identity))
    out = null_path(pipe, inv, cid, s)
    assert torch.allclose(out, x0, atol=1e-5)
    den = PipeDenoiser(pipe, cid.vectors, s.prompt, cond_scale=s.ip_adapter_scale, null_scale=inv.ip_adapter_scale)
    zero = torch.zeros(2, 1, *inv.x0.shape[-2:])                      # M at latent size, 0 everywhere
    out = sample_nullface(den, inv.x_start, inv.zs, inv.schedule, inv.t_skip, s.lambda_cfg, zero, 0)
    assert torch.allclose(out, x0, atol=1e-5)           # M = 0 from the first step: eq. 4 is ε(∅) at any λ_cfg
    # ... so the API refuses such a mask: it would return the faces unchanged
    with pytest.raises(InputError, match="anonymizes too little"):
        sample_latents(pipe, inv, cid, replace(s, mask_delay=0), masks=np.zeros((2, SIZE, SIZE), np.float32))
    with pytest.raises(InputError, match="anonymizes too little"):
        anonymize_face(pipe, faces, replace(s, mask_delay=0), embeddings=list(identity),
                       keep_masks=np.ones((2, SIZE, SIZE), np.float32))
    # a different adapter scale on the conditional path keeps the null path exact
    out = null_path(pipe, inv, cid, replace(s, ip_adapter_scale=0.5))
    assert torch.allclose(out, x0, atol=1e-5)


@torch.no_grad()
def test_t_skip_equal_to_steps_changes_nothing(pipe, faces, identity):
    """The property holds in the engine; the settings refuse it, since it anonymizes nothing."""
    s = NullFaceSettings()
    x0 = encode(pipe, faces)
    inv = invert(PipeDenoiser(pipe).null, x0, schedule_from_config(pipe.scheduler_config, 100), 100, seed=0)
    den = PipeDenoiser(pipe, negate_identities(list(identity)).vectors)
    out = sample_nullface(den, inv.x_start, inv.zs, inv.schedule, 100, s.lambda_cfg)
    assert torch.equal(out, x0)
    with pytest.raises(InputError, match="nothing is anonymized"):
        anonymize_face(pipe, faces, replace(s, t_skip=100), embeddings=list(identity))


@pytest.mark.parametrize("change, words", [({"t_skip": 100}, "t_skip"), ({"steps": 10, "t_skip": 10}, "t_skip"),
                                           ({"lambda_cfg": 0.0}, "lambda_cfg"), ({"lambda_cfg": -2.0}, "lambda_cfg"),
                                           ({"lambda_id": 0.0}, "lambda_id"),
                                           ({"ip_adapter_scale": 0.0}, "ip_adapter_scale"),
                                           ({"mask_delay": 10}, "mask_delay")])
def test_settings_that_anonymize_nothing_are_refused(pipe, faces, identity, change, words):
    """Fail closed: settings under which the output equals the input (or is steered towards the
    original identity) are an error, never a reported success."""
    with pytest.raises(InputError, match=words):
        NullFaceSettings(**change).validate()
    with pytest.raises(InputError, match=words):
        anonymize_face(pipe, faces[:1], NullFaceSettings(**change), embeddings=[identity[0]])


def test_mask_delay_is_a_fraction_of_the_running_steps():
    assert NullFaceSettings().mask_delay_steps == 10                   # the paper: mask from step 80 of 100
    assert NullFaceSettings(steps=20, t_skip=14).mask_delay_steps == 2
    assert NullFaceSettings(steps=10, t_skip=9).mask_delay_steps == 0   # one step: the mask applies on it
    assert NullFaceSettings(mask_delay=1.0).mask_delay_steps == 29      # at most: the last step is masked
    assert NullFaceSettings(mask_delay=0.0).mask_delay_steps == 0


@torch.no_grad()
@pytest.mark.parametrize("steps, t_skip", [(100, 70), (20, 14), (10, 8), (10, 9)])
def test_mask_applies_at_every_step_count(pipe, faces, identity, steps, t_skip):
    """With the default mask_delay the kept region differs from the whole-face result at any step count
    (an absolute delay of 10 steps never applied the mask when fewer than 11 steps ran)."""
    s = NullFaceSettings(steps=steps, t_skip=t_skip)
    inv = invert_images(pipe, faces[:1], s)
    cid = negate_identities([identity[0]])
    whole = sample_latents(pipe, inv, cid, s)
    keep = np.ones((1, SIZE, SIZE), np.float32)
    keep[:, 24:40, 24:40] = 0                       # the centre is kept (M = 0); most of the face still changes
    kept = sample_latents(pipe, inv, cid, s, masks=keep)
    assert (kept - whole)[..., 3:5, 3:5].abs().max() > 1e-4


@torch.no_grad()
def test_guidance_with_full_mask_changes_the_result(pipe, faces, identity):
    s = NullFaceSettings()
    inv = invert_images(pipe, faces, s)
    cid = negate_identities(list(identity))
    null = null_path(pipe, inv, cid, s)
    full = sample_latents(pipe, inv, cid, s, masks=np.ones((2, SIZE, SIZE), np.float32))
    assert (full - null).abs().max() > 1e-3
    assert torch.allclose(full, sample_latents(pipe, inv, cid, s), atol=1e-6)
    prompt = sample_latents(pipe, inv, cid, replace(s, prompt="an elderly man"))
    assert (prompt - full).abs().max() > 1e-4


@torch.no_grad()
def test_same_seed_same_output_new_seed_new_output(pipe, faces, identity):
    s = NullFaceSettings(steps=20, t_skip=14)
    a = anonymize_face(pipe, faces[:1], s, embeddings=[identity[0]])
    b = anonymize_face(pipe, faces[:1], s, embeddings=[identity[0]])
    c = anonymize_face(pipe, faces[:1], replace(s, seed=1), embeddings=[identity[0]])
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_get_clear_errors(pipe, faces, identity):
    s = NullFaceSettings(steps=10, t_skip=8)
    e = [identity[0]]
    cases = [
        (faces[:1, :, :, :1], "grayscale"),
        (np.concatenate([faces[:1], faces[:1, :, :, :1]], -1), "RGBA"),
        (faces[:1, :, :48], "square"),
        (faces[:1, :32, :32], "too small"),
        (np.full((1, SIZE, SIZE, 3), np.nan, np.float32), "NaN"),
        (np.zeros((0, SIZE, SIZE, 3), np.uint8), "empty"),
        (np.zeros((1, 68, 68, 3), np.uint8), "multiples of 8"),
    ]
    for image, words in cases:
        with pytest.raises(InputError, match=words):
            anonymize_face(pipe, image, s, embeddings=e)
    with pytest.raises(InputError, match="mask is 32x32"):
        anonymize_face(pipe, faces[:1], s, embeddings=e, masks=np.ones((32, 32), np.float32))
    with pytest.raises(InputError, match="t_skip"):
        anonymize_face(pipe, faces[:1], NullFaceSettings(t_skip=101), embeddings=e)
    with pytest.raises(InputError, match="512 finite"):
        anonymize_face(pipe, faces[:1], s, embeddings=[np.full(512, np.nan, np.float32)])


@torch.no_grad()
def test_reduced_precision_path_keeps_latent_math_in_float32(tiny, faces, identity):
    """The networks run in the pipe's dtype (fp16 on CUDA; bf16 here on the CPU) while the inversion,
    guidance and schedule arithmetic stays float32; the result matches float32 closely."""
    half = load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="bf16")
    assert half.unet.dtype == torch.bfloat16
    s = NullFaceSettings(steps=10, t_skip=7)
    inv = invert_images(half, faces[:1], s)
    assert inv.zs.dtype == torch.float32 and inv.x_start.dtype == torch.float32
    out = anonymize_face(half, faces[:1], s, embeddings=[identity[0]])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    full = load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="fp32")
    ref = anonymize_face(full, faces[:1], s, embeddings=[identity[0]])
    assert (out - ref).abs().mean() < 0.05
