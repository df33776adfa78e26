"""Reverse Personalization on tiny random-weight SDXL-architecture models (real loaders and file layouts)."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from nullface.methods.revpers import pipeline as R
from nullface.errors import InputError, ModelFileError
from nullface.methods.revpers.settings import ReversePersonalizationSettings as S

SIZE = 64          # pixels; the tiny VAE makes 8x8 latents


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from tests.tiny_sdxl import build_sdxl
    return build_sdxl(tmp_path_factory.mktemp("xl"))


@pytest.fixture(scope="module")
def xl(tiny_xl):
    from nullface.models.sdxl import load_revpers_pipe
    return load_revpers_pipe(tiny_xl["sdxl"], tiny_xl["faceid_sdxl"], device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def face():
    g = np.random.default_rng(0)
    return torch.from_numpy(g.uniform(0.1, 0.9, (1, SIZE, SIZE, 3)).astype(np.float32))


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((1, 512)).astype(np.float32)
    return v / np.linalg.norm(v)


FEW = S(steps=6)


def test_defaults_are_the_authors():
    d = S()
    assert (d.steps, d.skip, d.guidance_scale, d.id_scale, d.ip_adapter_scale, d.prompt, d.seed, d.crop_size) == \
        (100, 0.7, -10.0, 1.0, 1.0, "", 0, 1024)
    assert d.schedule().timesteps[0] == 299 and d.schedule().timesteps[-1] == 1
    assert S.spec("guidance_scale")["min"] < 0 and "help" in S.spec("skip")


@pytest.mark.parametrize("change", [dict(steps=0), dict(skip=1.0), dict(guidance_scale=float("nan")),
                                    dict(id_scale=-1.0), dict(steps=2.5), dict(crop_size=1001),
                                    dict(guidance_scale=0.0), dict(guidance_scale=1.0), dict(id_scale=0.0),
                                    dict(ip_adapter_scale=0.0)])
def test_bad_settings_are_refused(change):
    with pytest.raises(InputError):
        dataclasses.replace(S(), **change).validate()


@pytest.mark.parametrize("steps", [3, 6, 15])
def test_null_path_reconstructs_the_input(xl, face, steps):
    """Zero identity and no attribute prompt, at the default guidance w = -10: the sampler replays the inversion
    bit for bit (every latent) and ends on the input up to one float rounding, whatever the step count."""
    x0 = R.encode(xl, face)
    walked, seen = [], []
    inv = R.invert_latents(xl, x0, dataclasses.replace(FEW, steps=steps), callback=lambda d: walked.append(d["x"]))
    out, _ = R.sample_latents(xl, inv, np.zeros((1, 512), np.float32), callback=lambda d: seen.append(d["x"]))
    assert len(walked) == len(seen) == steps and all(torch.equal(a, b) for a, b in zip(walked, seen))
    assert torch.allclose(out, x0, atol=1e-6, rtol=0), (out - x0).abs().max()


def test_guidance_that_does_not_push_away_from_the_identity_is_refused(xl, face):
    """w = 0 ignores the identity (the sampler replays the input); w > 0 steers towards it; nan returns a NaN
    image; λ_id = 0 and an IP-Adapter scale of 0 leave the identity path without the identity. The API refuses
    each before any UNet call (on the old code each ran and returned a face)."""
    x0 = R.encode(xl, face)
    inv = R.invert_latents(xl, x0, FEW)
    for w in (0.0, 1.0, 5.0, float("nan"), float("-inf")):
        with pytest.raises(InputError, match="guidance_scale"):
            R.invert_latents(xl, x0, dataclasses.replace(FEW, guidance_scale=w))
        with pytest.raises(InputError, match="guidance_scale"):
            R.sample_latents(xl, inv, unit(1), guidance_scale=w)
        with pytest.raises(InputError, match="guidance_scale"):
            R.anonymize_face(xl, face, dataclasses.replace(FEW, guidance_scale=w), embeddings=[unit(1)[0]])
    for change in (dict(id_scale=0.0), dict(ip_adapter_scale=0.0), dict(id_scale=float("nan"))):
        with pytest.raises(InputError, match=next(iter(change))):
            R.anonymize_face(xl, face, dataclasses.replace(FEW, **change), embeddings=[unit(1)[0]])
    with pytest.raises(InputError, match="id_scale"):
        R.identity_vectors([unit(1)[0]], 0.0)


def test_zero_guidance_would_ignore_the_identity(xl, face):
    """Why w = 0 is refused: below the settings, ε̂ at w = 0 is ε(x, c_attr, ∅) whatever the identity (one
    UNet evaluation), so the sampler replays the inversion and returns the input."""
    x0 = R.encode(xl, face)
    inv = R.invert_latents(xl, x0, FEW)
    den = R.GuidedDenoiser(xl, R.initial_attribute(xl), xl.encode_prompt(""), unit(1), 0.0, 1.0, (SIZE, SIZE))
    null = R.GuidedDenoiser(xl, R.initial_attribute(xl), xl.encode_prompt(""), None, 0.0, 1.0, (SIZE, SIZE))
    x, t = inv.dpm.x_start, inv.dpm.schedule.timesteps[0].reshape(1)
    assert torch.equal(den(x, t), null(x, t)) and den.evals == 1


def test_identity_and_attribute_prompt_change_the_face(xl, face):
    x0 = R.encode(xl, face)
    inv = R.invert_latents(xl, x0, FEW)
    anon, evals = R.sample_latents(xl, inv, unit(1))
    assert evals == 2 * FEW.steps
    assert (anon - x0).abs().max() > 1e-3
    older, _ = R.sample_latents(xl, inv, np.zeros((1, 512), np.float32), prompt="an elderly man")
    assert (older - x0).abs().max() > 1e-3       # the updated attribute prompt alone changes the sample


def test_unet_evaluations_at_the_defaults(xl, face):
    x0 = R.encode(xl, face)
    inv = R.invert_latents(xl, x0, FEW)
    _, evals = R.sample_latents(xl, inv, unit(2))
    cost = R.unet_evals_per_face(FEW)
    assert (inv.unet_evals, evals) == (cost["invert"], cost["sample"]) == (2 * FEW.steps, 2 * FEW.steps)
    assert R.unet_evals_per_face(S()) == {"invert": 200, "sample": 200, "total": 400}
    one = R.unet_evals_per_face(S(), zero_empty_prompt=False)
    assert one["invert"] == 100                   # c_attr = "" on both branches: one evaluation serves both


def _plain_reference(xl, face, e, prompt, settings):
    """The method step by step: diffusers' own prompt encoding, one UNet call per branch, no batching."""
    p = xl.pipeline
    sched = settings.schedule()
    x0 = R.encode(xl, face)
    w = settings.guidance_scale

    def texts(negative):
        c, u, pc, pu = p.encode_prompt("", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                                       negative_prompt=negative)
        return (u, pu), (c, pc)

    def eps(x, t, text, ids):
        return p.unet(x, t, encoder_hidden_states=text[0],
                      added_cond_kwargs={"text_embeds": text[1], "time_ids": torch.tensor([[SIZE, SIZE, 0, 0, SIZE,
                                                                                             SIZE]]).float(),
                                         "image_embeds": [torch.as_tensor(ids)[:, None, :]]}).sample

    def guided(x, i, tu, tc, ids):
        t = sched.timesteps[i]
        zero = np.zeros((1, 512), np.float32)
        eu, ec = eps(x, t, tu, zero), eps(x, t, tc, ids)
        return eu + w * (ec - eu)

    def step(i, x, d, d_prev, z=None, target=None):
        a, s = sched.alpha, sched.sigma
        h = sched.lam[i + 1] - sched.lam[i]
        d1 = 0 if d_prev is None else (d - d_prev) / ((sched.lam[i] - sched.lam[i - 1]) / h)
        mu = (s[i + 1] / s[i] * torch.exp(-h)) * x + a[i + 1] * (1 - torch.exp(-2 * h)) * d \
            + 0.5 * a[i + 1] * (1 - torch.exp(-2 * h)) * d1
        c = s[i + 1] * torch.sqrt(1 - torch.exp(-2 * h))
        return (target - mu) / c if z is None else mu + c * z

    with torch.no_grad():
        gens = [torch.Generator().manual_seed(settings.seed) for _ in x0]     # one image per run
        n = sched.steps
        xs = [None] * n
        for i in reversed(range(n)):
            noise = torch.cat([torch.randn((1,) + tuple(x0.shape[1:]), generator=g) for g in gens])
            xs[i] = sched.alpha[i] * x0 + sched.sigma[i] * noise
        xs.append(x0)
        tu, tc = texts(None)
        zero = np.zeros((1, 512), np.float32)
        zs, x, d_prev = [], xs[0], None
        for i in range(n):                          # the inversion walks the corrected latents x = μ + c z
            d = (x - sched.sigma[i] * guided(x, i, tu, tc, zero)) / sched.alpha[i]
            zs.append(step(i, x, d, d_prev, target=xs[i + 1]))
            x, d_prev = step(i, x, d, d_prev, z=zs[i]), d
        tu, tc = texts(prompt or None)
        x, d_prev = xs[0], None
        for i in range(n):
            d = (x - sched.sigma[i] * guided(x, i, tu, tc, e)) / sched.alpha[i]
            x, d_prev = step(i, x, d, d_prev, z=zs[i]), d
    return x


@pytest.mark.parametrize("prompt", ["", "an elderly man"])
def test_optimized_equals_the_plain_step_by_step_method(xl, face, prompt):
    settings = dataclasses.replace(FEW, prompt=prompt)
    e = unit(3)
    inv = R.invert_images(xl, face, settings)
    ours, _ = R.sample_latents(xl, inv, e)
    ref = _plain_reference(xl, face, e, prompt, settings)
    assert torch.allclose(ours, ref, atol=1e-4), (ours - ref).abs().max()


def test_anonymize_face_in_one_call(xl, face):
    out = R.anonymize_face(xl, face, FEW, embeddings=[unit(4)[0]])
    assert out.shape == (1, SIZE, SIZE, 3) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(InputError):
        R.anonymize_face(xl, face, FEW)            # no face models and no embeddings


def test_crops_keep_mask_blends_the_input_back(xl, face):
    crop = (face[0].numpy() * 255).round().astype(np.uint8)
    from nullface.faces.crop import aligned_face_area
    face_only = aligned_face_area(SIZE, SIZE).astype(np.float32)   # M = 1 on the face, 0 around it
    out = R.anonymize_crops(xl, [crop], [unit(5)[0]], [face_only], FEW)[0]
    assert np.array_equal(out[face_only == 0], crop[face_only == 0]) and not np.array_equal(out, crop)
    with pytest.raises(InputError, match="anonymizes too little"):   # M = 0: nothing anonymized, refused
        R.anonymize_crops(xl, [crop], [unit(5)[0]], [np.zeros((SIZE, SIZE), np.float32)], FEW)
    out = R.anonymize_crops(xl, [crop], [unit(5)[0]], [None], FEW)[0]
    assert out.shape == crop.shape and not np.array_equal(out, crop)


# ------------------------------------------------------------------------------------------- loading
def test_single_file_sdxl_loads_with_the_same_weights(tiny_xl, tmp_path):
    from nullface.models.sdxl import load_sdxl
    from tests.sdxl_checkpoint import save_sdxl_checkpoint
    ckpt = save_sdxl_checkpoint(tiny_xl["sdxl"], tmp_path / "tiny_sdxl.safetensors")
    cfg = tmp_path / "cfg"               # the tiny model's configs in the layout of nullface/models/configs/sdxl
    for sub in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        shutil.copytree(tiny_xl["sdxl"] / sub, cfg / sub, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    shutil.copy(tiny_xl["sdxl"] / "model_index.json", cfg)
    a = load_sdxl(ckpt, torch.device("cpu"), torch.float32, cfg)
    b = load_sdxl(tiny_xl["sdxl"], torch.device("cpu"), torch.float32)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sb), name
    ids = a.tokenizer_2("a man").input_ids
    assert ids == b.tokenizer_2("a man").input_ids


def test_fp16_keeps_the_vae_in_fp32(tiny_xl):
    from nullface.models.sdxl import load_revpers_pipe
    p = load_revpers_pipe(tiny_xl["sdxl"], tiny_xl["faceid_sdxl"], device="cpu", dtype="fp16")
    assert p.unet.dtype == torch.float16 and next(p.vae.parameters()).dtype == torch.float32


def test_shipped_sdxl_configs_are_the_real_architecture():
    from diffusers import UNet2DConditionModel
    from nullface.models.sdxl import CONFIG_DIR
    cfg = json.loads((CONFIG_DIR / "unet" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684      # SDXL base 1.0's UNet
    assert json.loads((CONFIG_DIR / "vae" / "config.json").read_text())["scaling_factor"] == 0.13025


def test_wrong_model_files_are_named(tiny, tiny_xl, tmp_path):
    from nullface.models.sdxl import load_revpers_pipe
    from tests.ldm_checkpoint import save_inpainting_checkpoint, save_ldm_checkpoint
    sd15_file = save_ldm_checkpoint(tiny["sd15"], tmp_path / "v1-5.safetensors")
    with pytest.raises(ModelFileError, match="Stable Diffusion 1.x"):
        load_revpers_pipe(sd15_file, tiny_xl["faceid_sdxl"], device="cpu", dtype="fp32")
    with pytest.raises(ModelFileError, match="not an SDXL diffusers folder"):
        load_revpers_pipe(tiny["sd15"], tiny_xl["faceid_sdxl"], device="cpu", dtype="fp32")
    with pytest.raises(ModelFileError, match="cross-attention width|SD1.5"):
        load_revpers_pipe(tiny_xl["sdxl"], tiny["faceid_bin"], device="cpu", dtype="fp32")
    with pytest.raises(ModelFileError, match="not found"):
        load_revpers_pipe(tmp_path / "missing.safetensors", tiny_xl["faceid_sdxl"], device="cpu", dtype="fp32")
    from safetensors.torch import save_file
    lora = tmp_path / "ip-adapter-faceid_sdxl_lora.safetensors"
    save_file({"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, str(lora))
    with pytest.raises(ModelFileError, match="LoRA file alone"):
        load_revpers_pipe(tiny_xl["sdxl"], lora, device="cpu", dtype="fp32")
    inpaint = save_inpainting_checkpoint(tiny["sd15"], tmp_path / "inpaint.safetensors")
    with pytest.raises(ModelFileError, match="Stable Diffusion 1.x"):
        load_revpers_pipe(inpaint, tiny_xl["faceid_sdxl"], device="cpu", dtype="fp32")


def test_sdxl_single_file_variants_are_refused(tiny_xl, tmp_path):
    from nullface.models.sdxl import check_sdxl_checkpoint
    from tests.ldm_checkpoint import UNET_PREFIX, write_checkpoint
    from tests.sdxl_checkpoint import sdxl_state_dict
    sd = sdxl_state_dict(tiny_xl["sdxl"])
    check_sdxl_checkpoint(write_checkpoint(sd, tmp_path / "ok.safetensors"))
    key = UNET_PREFIX + "input_blocks.0.0.weight"
    w = sd[key]
    inpaint = dict(sd, **{key: torch.cat([w, torch.zeros(w.shape[0], 5, *w.shape[2:])], 1)})
    with pytest.raises(ModelFileError, match="9-channel"):
        check_sdxl_checkpoint(write_checkpoint(inpaint, tmp_path / "xl_inpaint.safetensors"))
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in sd.items()
               if not k.startswith("conditioner.embedders.0.")}
    with pytest.raises(ModelFileError, match="refiner"):
        check_sdxl_checkpoint(write_checkpoint(refiner, tmp_path / "refiner.safetensors"))


def test_photo_anonymizer_retries_with_stronger_guidance_then_fails_closed(xl, tiny, astronaut):
    """Whole photos go through NullFace's photo pipeline; a face the audit still links fails closed."""
    from nullface.errors import FaceFailedError
    from nullface.faces.identity import load_face_models
    from nullface.privacy.photo import PhotoOptions, anonymize_photo

    class Verdict:
        passed = False

        def to_dict(self):
            return {"passed": False}

        def summary(self):
            return "still linked"

    fm = load_face_models(tiny["insightface_root"], detector="dlib")
    run = R.crop_anonymizer(xl, fm, dataclasses.replace(FEW, steps=2), audit=lambda o, r, c: Verdict(),
                            max_tries=3)
    with pytest.raises(FaceFailedError, match="still re-identified after 3 tries") as failed:
        anonymize_photo(astronaut, fm.detector, run, PhotoOptions(crop_size=64))
    assert not run.audits                       # the driver moved each audit to its photo's result
    tried = [t.settings for t in failed.value.result.audits[0].tries]
    assert [s.guidance_scale for s in tried] == [-10.0, -12.5, -15.0] and [s.seed for s in tried] == [0, 1, 2]
    ok = R.crop_anonymizer(xl, fm, dataclasses.replace(FEW, steps=2))
    res = anonymize_photo(astronaut, fm.detector, ok, PhotoOptions(crop_size=64))
    assert res.anonymized == res.found >= 1 and not np.array_equal(res.image, astronaut)


def test_inversion_calls_the_unet_as_the_null_replay_does(xl, face):
    """One call per step with both branches of every image, the same inputs as the null-path replay."""
    calls = []
    hook = xl.unet.register_forward_pre_hook(lambda m, a, k: calls.append(
        (a[0].clone(), a[1].clone(), k["encoder_hidden_states"].clone(),
         k["added_cond_kwargs"]["image_embeds"][0].clone())), with_kwargs=True)
    two = torch.cat([face, face.flip(1)])
    try:
        inv = R.invert_latents(xl, R.encode(xl, two), FEW)
        n = len(calls)
        R.sample_latents(xl, inv, np.zeros((2, 512), np.float32))
    finally:
        hook.remove()
    assert n == FEW.steps and len(calls) == 2 * n
    assert all(c[0].shape[0] == 4 for c in calls)                 # 2 images x 2 branches per call
    for a, b in zip(calls[:n], calls[n:]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
