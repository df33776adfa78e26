"""Inpainting with attribute guidance (papers/000) on tiny random models and fake feature extractors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nullface.methods.inpaint.guidance import attribute_gradient, corrected_step, feature_loss
from nullface.errors import InputError, ModelFileError
from nullface.methods.inpaint.settings import InpaintSettings
from nullface.methods.inpaint.sampler import ldm_schedule, sample_inpaint, sd_alphas_cumprod
from nullface.methods.inpaint.pipeline import anonymize_inpaint, inpaint_crop_anonymizer, load_inpaint_pipe
from tests.inpaint_models import build_inpaint_models, farl_state_dict

FAST = InpaintSettings(steps=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_inpaint_models(tmp_path_factory.mktemp("inpaint"))


@pytest.fixture(scope="module")
def pipe(files):
    return load_inpaint_pipe(files["folder"], files["farl"], device="cpu", dtype="fp32")


def face_and_mask(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, size, size, 3, generator=g)
    m = torch.zeros(1, size, size)
    m[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return img, m


# ------------------------------------------------------------------------------------- settings, schedule
def test_defaults_are_the_authors():
    s = InpaintSettings()
    assert (s.steps, s.start_t, s.guidance_scale, s.sim_weight, s.dissim_weight, s.prompt) == (45, 999, 0.8, 1.0,
                                                                                               0.0, "")
    assert s.guided and not dataclasses.replace(s, guidance_scale=0).guided
    for name, spec in InpaintSettings.specs().items():
        assert spec.help and spec.source, f"{name} has no help or source"


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=2.5), dict(start_t=1000), dict(guidance_scale=-1),
                                 dict(sim_weight=float("nan")), dict(start_t=500), dict(guidance_scale=float("inf"))])
def test_bad_settings_are_one_clear_error(bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        InpaintSettings(**bad).validate()


def test_ldm_uniform_schedule_as_the_authors_run_it():
    """S = 45 gives ldm's 46 timesteps 991, 969, ..., 1 (1000 // 45 = 22 apart); the last uses ᾱ_0."""
    acp = sd_alphas_cumprod()
    s = ldm_schedule(45, acp)
    assert s.steps == 46
    assert s.timesteps[0] == 991 and s.timesteps[-1] == 1 and torch.all(s.timesteps[:-1] - s.timesteps[1:] == 22)
    assert torch.equal(s.abar_prev[-1], acp[0]) and torch.equal(s.abar_prev[0], acp[991 - 22])
    expected = ((1 - s.abar_prev) / (1 - s.abar) * (1 - s.abar / s.abar_prev)).sqrt()
    assert torch.allclose(s.sigma, expected) and torch.all(s.sigma > 0)
    assert ldm_schedule(50, acp).steps == 50 and ldm_schedule(50, acp).timesteps[0] == 981
    assert ldm_schedule(3, acp).timesteps.tolist() == [667, 334, 1]        # never t = 1000
    assert all(InpaintSettings(steps=n).sample_steps == ldm_schedule(n, acp).steps for n in (1, 3, 45, 333, 1000))


# ------------------------------------------------------------------------------------- the guidance term
def tokens(x: torch.Tensor, n: int = 4) -> torch.Tensor:
    """A fake φ: the flattened image as n tokens."""
    return x.reshape(x.shape[0], n, -1)


def test_gradient_sign_and_scale_match_the_equation():
    """φ = identity tokens, D = identity: g = ρ ∇ Σ_i mean_d (x_i − y_i)² = ρ · 2 (x − y) / D_tok."""
    g = torch.Generator().manual_seed(0)
    x0, y = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    rho = 0.8
    grad = attribute_gradient(x0, lambda z: z, tokens, tokens(y), scale=rho)
    d_tok = x0[0].numel() // 4
    assert torch.allclose(grad, rho * 2 * (x0 - y) / d_tok, atol=1e-6)
    # the corrected step moves the features towards the target's: the loss falls
    sigma = 0.5
    before = feature_loss(tokens(x0), tokens(y))
    after = feature_loss(tokens(corrected_step(x0, grad, sigma)), tokens(y))
    assert torch.all(after < before)
    # w_dis pushes away from the source: the gradient flips sign and scales with the weight
    away = attribute_gradient(x0, lambda z: z, tokens, tokens(y), tokens(y), scale=rho, sim_weight=0,
                              dissim_weight=2.0)
    assert torch.allclose(away, -2.0 * grad, atol=1e-6)


def test_gradient_matches_finite_differences_through_a_nonlinear_extractor_and_decoder():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1).double()
    dec = torch.nn.ConvTranspose2d(4, 4, 2, stride=2).double()

    def phi(img):
        return torch.tanh(conv(img)).flatten(2).transpose(1, 2)          # [B, N tokens, 6]

    def decode(z):
        return dec(z.double())

    x0 = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    target = phi(decode(torch.randn(1, 4, 3, 3, dtype=torch.float64))).detach()
    rho = 0.7
    grad = attribute_gradient(x0.double(), decode, phi, target, scale=rho).double()

    def loss(z):
        with torch.no_grad():
            return float(feature_loss(phi(decode(z)), target).sum())

    h, fd = 1e-6, torch.zeros_like(x0)
    for i in range(x0.numel()):
        e = torch.zeros_like(x0).flatten()
        e[i] = h
        e = e.view_as(x0)
        fd.view(-1)[i] = (loss(x0 + e) - loss(x0 - e)) / (2 * h)
    assert torch.allclose(grad, rho * fd, rtol=1e-4, atol=1e-7)


def test_guidance_off_is_exactly_zero_and_evaluates_nothing():
    def boom(_):
        raise AssertionError("the extractor must not run when the guidance is off")
    x0 = torch.randn(1, 4, 8, 8)
    for kw in (dict(scale=0.0), dict(sim_weight=0.0, dissim_weight=0.0)):
        g = attribute_gradient(x0, boom, boom, torch.zeros(1, 4, 64), **kw)
        assert torch.equal(g, torch.zeros_like(x0))


def test_sampler_applies_minus_sigma_times_the_guidance():
    """One step: guided − unguided = −σ_t · g exactly; a zero guidance equals no guidance."""
    s = ldm_schedule(45, sd_alphas_cumprod())
    x = torch.randn(1, 4, 8, 8)
    noise = torch.randn(s.steps, 1, 4, 8, 8)

    def eps(z, t):
        return 0.3 * z + 0.01 * t.float().view(-1, 1, 1, 1)

    c = torch.randn(1, 4, 8, 8)
    first = lambda: ldm_schedule(1, sd_alphas_cumprod())                     # noqa: E731
    one = first()
    plain = sample_inpaint(eps, x, one, noise[:1])
    guided = sample_inpaint(eps, x, one, noise[:1], guidance=lambda x0, k: c)
    assert torch.allclose(guided - plain, -one.sigma[0] * c, atol=1e-6)
    zero = sample_inpaint(eps, x, s, noise, guidance=lambda x0, k: torch.zeros_like(x0))
    assert torch.equal(zero, sample_inpaint(eps, x, s, noise))


# ------------------------------------------------------------------------------------- FaRL extractor
def openai_clip_visual(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's VisionTransformer forward (tokens after the transformer), written out for the test."""
    v = {k[len("visual."):]: t for k, t in sd.items() if k.startswith("visual.")}
    width = v["conv1.weight"].shape[0]
    x = torch.nn.functional.conv2d(x, v["conv1.weight"], stride=v["conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([v["class_embedding"].expand(x.shape[0], 1, -1), x], 1) + v["positional_embedding"]
    x = torch.nn.functional.layer_norm(x, (width,), v["ln_pre.weight"], v["ln_pre.bias"])
    layers = 1 + max(int(k.split(".")[2]) for k in v if k.startswith("transformer.resblocks."))
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(width, max(1, width // 64), batch_first=True)
        attn.load_state_dict({"in_proj_weight": v[p + "attn.in_proj_weight"], "in_proj_bias": v[p + "attn.in_proj_bias"],
                              "out_proj.weight": v[p + "attn.out_proj.weight"],
                              "out_proj.bias": v[p + "attn.out_proj.bias"]})
        h = torch.nn.functional.layer_norm(x, (width,), v[p + "ln_1.weight"], v[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False)[0]
        h = torch.nn.functional.layer_norm(x, (width,), v[p + "ln_2.weight"], v[p + "ln_2.bias"])
        h = torch.nn.functional.linear(h, v[p + "mlp.c_fc.weight"], v[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)                                  # QuickGELU
        x = x + torch.nn.functional.linear(h, v[p + "mlp.c_proj.weight"], v[p + "mlp.c_proj.bias"])
    return x


def test_farl_file_converts_to_the_same_network(files):
    from nullface.models.farl import load_farl
    phi = load_farl(files["farl"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1                                 # the tiny tower's native size
    with torch.no_grad():
        ours, ref = phi(x), openai_clip_visual(farl_state_dict(), x)
    assert ours.shape == (2, 17, 64)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert phi(torch.rand(1, 3, 64, 64)).shape == (1, 17, 64)          # resized (Resize(224) + CenterCrop)


def test_wrong_feature_file_is_refused(tmp_path):
    from nullface.models.farl import load_farl
    bad = tmp_path / "not_farl.pth"
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, str(bad))
    with pytest.raises(ModelFileError, match="FaRL"):
        load_farl(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_farl(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------------- loading
def test_single_files_load_offline_as_the_folder(files):
    ref = load_inpaint_pipe(files["folder"], device="cpu", dtype="fp32")
    for kind in ("safetensors", "ckpt"):
        p = load_inpaint_pipe(files[kind], device="cpu", dtype="fp32", config_dir=files["folder"])
        assert p.unet.config.in_channels == 9
        for a, b in zip(ref.unet.state_dict().values(), p.unet.state_dict().values()):
            assert torch.equal(a, b)


def test_shipped_inpainting_config_is_sd15_with_nine_channels():
    import json
    from nullface.methods.inpaint.pipeline import INPAINT_CONFIG_DIR
    from nullface.models.sd15 import CONFIG_DIR
    ours = json.loads((INPAINT_CONFIG_DIR / "unet" / "config.json").read_text())
    sd15 = json.loads((CONFIG_DIR / "unet" / "config.json").read_text())
    assert ours.pop("in_channels") == 9 and sd15.pop("in_channels") == 4 and ours == sd15
    import fnmatch
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["nullface"]
    rel = (INPAINT_CONFIG_DIR / "unet" / "config.json").relative_to(root / "nullface").as_posix()
    assert any(fnmatch.fnmatch(rel, p.replace("**/", "*")) for p in patterns), "not shipped in the wheel"


def test_wrong_model_kinds_are_refused_with_what_they_are(files, tmp_path):
    from tests.ldm_checkpoint import save_ldm_checkpoint, save_sdxl_like_checkpoint
    from tests.tiny_models import save_sd15_folder
    plain = save_sd15_folder(tmp_path / "plain")
    with pytest.raises(ModelFileError, match="4-channel"):
        load_inpaint_pipe(plain, device="cpu", dtype="fp32")
    with pytest.raises(ModelFileError, match="plain 4-channel SD1.5"):
        load_inpaint_pipe(save_ldm_checkpoint(plain, tmp_path / "sd15.safetensors"), device="cpu", dtype="fp32")
    with pytest.raises(ModelFileError, match="SDXL"):
        load_inpaint_pipe(save_sdxl_like_checkpoint(plain, tmp_path / "xl.safetensors"), device="cpu", dtype="fp32")
    # and the NullFace loader refuses the inpainting file
    from nullface.models.sd15 import load_sd15
    with pytest.raises(ModelFileError, match="inpainting"):
        load_sd15(files["safetensors"], torch.device("cpu"), torch.float32, config_dir=files["folder"])


# ------------------------------------------------------------------------------------- end to end
def test_kept_region_is_preserved_exactly_and_the_masked_region_repainted(pipe):
    img, m = face_and_mask()
    target = torch.rand(1, 80, 96, 3)
    stats = {}
    out = anonymize_inpaint(pipe, img, m, target, FAST, stats=stats)
    keep = m[0] == 0
    assert torch.equal(out[0][keep], img[0][keep])
    assert (out[0][~keep] - img[0][~keep]).abs().mean() > 0.05
    assert stats == {"unet_evals": 5, "guidance_backward": 5, "steps": 5}


def test_kept_region_without_the_paste_is_the_decoded_image(pipe):
    img, m = face_and_mask()
    out = anonymize_inpaint(pipe, img, m, None, dataclasses.replace(FAST, guidance_scale=0, keep_unmasked=False))
    assert not torch.equal(out[0][m[0] == 0], img[0][m[0] == 0])


def test_guidance_changes_the_result_and_off_needs_no_extractor_nor_target(pipe):
    img, m = face_and_mask()
    target = torch.rand(1, 64, 64, 3)
    off = dataclasses.replace(FAST, guidance_scale=0)
    stats = {}
    a = anonymize_inpaint(pipe, img, m, None, off, features=None, stats=stats)
    assert stats["guidance_backward"] == 0
    b = anonymize_inpaint(pipe, img, m, target, dataclasses.replace(FAST, guidance_scale=50.0))
    assert not torch.equal(a, b)
    assert torch.equal(a, anonymize_inpaint(pipe, img, m, target, off))         # seeded: repeatable


def test_a_mask_that_leaves_too_little_of_the_face_is_refused(pipe):
    img, m = face_and_mask()
    with pytest.raises(InputError, match="anonymizes too little"):          # all zero: nothing repainted
        anonymize_inpaint(pipe, img, torch.zeros_like(m), None, dataclasses.replace(FAST, guidance_scale=0))
    from scipy.ndimage import binary_erosion
    from nullface.faces.crop import aligned_face_area
    face = aligned_face_area(64, 64)
    ring = face & ~binary_erosion(face, iterations=2)                    # a thin ring around the face
    with pytest.raises(InputError, match="anonymizes too little"):
        anonymize_inpaint(pipe, img, torch.from_numpy(ring.astype(np.float32))[None], None,
                          dataclasses.replace(FAST, guidance_scale=0))


def test_clear_errors(pipe):
    img, m = face_and_mask()
    with pytest.raises(InputError, match="mask"):
        anonymize_inpaint(pipe, img, None, torch.rand(1, 64, 64, 3), FAST)
    with pytest.raises(InputError, match="target"):
        anonymize_inpaint(pipe, img, m, None, FAST)
    with pytest.raises(InputError, match="target"):
        anonymize_inpaint(pipe, img, m, torch.rand(3, 64, 64, 3), FAST)
    no_phi = dataclasses.replace(pipe, features=None, features_file=None)    # no FaRL, nor a file to read it from
    with pytest.raises(ModelFileError, match="FaRL"):
        anonymize_inpaint(no_phi, img, m, torch.rand(1, 64, 64, 3), FAST)
    dropped = dataclasses.replace(pipe, features=None)                   # FaRL dropped, its file known: read again
    out = anonymize_inpaint(dropped, img, m, torch.rand(1, 64, 64, 3), FAST)
    assert dropped.features is not None and out.shape == (1, 64, 64, 3)


def test_photo_pipeline_keeps_every_pixel_outside_the_faces(pipe):
    from nullface.privacy.photo import PhotoOptions, anonymize_photo
    from tests import faces_data as fd
    from tests.test_photo import allowed_region
    img = fd.image("astronaut")
    faces = fd.faces("astronaut")[:1]
    opts = PhotoOptions(crop_size=64, keep=("eyes",))
    res = anonymize_photo(img, fd.FixedDetector(faces), inpaint_crop_anonymizer(pipe, torch.rand(1, 64, 64, 3), FAST),
                          opts)
    assert res.anonymized == 1 and res.failed == 0
    changed = np.any(res.image != img, -1)
    assert changed.sum() > 100
    assert not np.any(changed & ~allowed_region(img, faces, opts))


def test_photo_pipeline_fails_closed_when_the_method_fails(pipe):
    from nullface.errors import FaceFailedError
    from nullface.privacy.photo import PhotoOptions, anonymize_photo
    from tests import faces_data as fd
    no_phi = dataclasses.replace(pipe, features=None, features_file=None)   # guidance on, no extractor
    img = fd.image("astronaut")
    run = inpaint_crop_anonymizer(no_phi, torch.rand(1, 64, 64, 3), FAST)
    with pytest.raises(FaceFailedError):
        anonymize_photo(img, fd.FixedDetector(fd.faces("astronaut")[:1]), run, PhotoOptions(crop_size=64))
    res = anonymize_photo(img, fd.FixedDetector(fd.faces("astronaut")[:1]), run,
                          PhotoOptions(crop_size=64, on_failure="pixelate"))
    assert res.failed == 1 and not np.array_equal(res.image, img)


def test_shipped_inpainting_unet_config_matches_the_real_checkpoint_layout():
    """At full size (meta tensors): the shipped config gives the sd-v1-5-inpainting key layout (9-channel
    first convolution), diffusers recognizes it as SD1 inpainting, and its conversion gives every shape back."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    from nullface.methods.inpaint.pipeline import INPAINT_CONFIG_DIR
    from tests import ldm_checkpoint as ldm
    ucfg = dict(UNet2DConditionModel.load_config(str(INPAINT_CONFIG_DIR), subfolder="unet", local_files_only=True))
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(ucfg)
    usd = unet.state_dict()
    sd = {ldm.UNET_PREFIX + k: v for k, v in ldm.unet_to_ldm(ucfg, usd).items()}
    assert tuple(sd[ldm.UNET_PREFIX + "input_blocks.0.0.weight"].shape) == (320, 9, 3, 3)
    assert sfu.infer_diffusers_model_type(sd) == "inpainting"
    back = sfu.convert_ldm_unet_checkpoint(sd, ucfg)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in usd.items()}


def test_non_finite_model_output_is_an_error_not_an_image(pipe, monkeypatch):
    """fp16 overflow (NaN) must not come back as a black or original face: the call fails (fail closed)."""
    from nullface.errors import NullFaceError
    img, m = face_and_mask()
    unet = pipe.unet
    real = unet.forward

    def nan_forward(*a, **k):
        out = real(*a, **k)
        out.sample.fill_(float("nan"))
        return out
    monkeypatch.setattr(unet, "forward", nan_forward)
    with pytest.raises(NullFaceError, match="NaN"):
        anonymize_inpaint(pipe, img, m, None, dataclasses.replace(FAST, guidance_scale=0))


def test_runs_under_inference_mode_as_comfyui_executes_nodes(files):
    """ComfyUI executes every node inside torch.inference_mode(): loading and the guidance's backward pass
    must still work there (enable_grad alone records nothing in inference mode)."""
    img, m = face_and_mask()
    with torch.inference_mode():
        p = load_inpaint_pipe(files["folder"], files["farl"], device="cpu", dtype="fp32")
        stats = {}
        out = anonymize_inpaint(p, img, m, torch.rand(1, 64, 64, 3), FAST, stats=stats)
        g = attribute_gradient(torch.randn(1, 4, 8, 8), lambda z: z, tokens, torch.zeros(1, 4, 64))
    assert stats["guidance_backward"] == 5 and torch.equal(out[0][m[0] == 0], img[0][m[0] == 0])
    assert g.abs().sum() > 0


def test_dissimilarity_term_uses_the_source_face(pipe):
    """w_dis alone (w_sim 0) still guides: away from the source face's own features."""
    img, m = face_and_mask()
    stats = {}
    away = anonymize_inpaint(pipe, img, m, torch.rand(1, 64, 64, 3),
                             dataclasses.replace(FAST, sim_weight=0.0, dissim_weight=50.0, guidance_scale=10.0),
                             stats=stats)
    off = anonymize_inpaint(pipe, img, m, None, dataclasses.replace(FAST, guidance_scale=0))
    assert stats["guidance_backward"] == 5 and not torch.equal(away, off)
