"""Single-file SD1.5 checkpoints (the ComfyUI ``models/checkpoints`` layout) load offline and exactly.

A tiny random-weight SD1.5-architecture diffusers folder is written as one original-layout (CompVis/ldm)
checkpoint, as .safetensors and as .ckpt, and loaded through ``nullface.models.sd15.load_sd15`` with the network
cut off. Every weight must equal the diffusers-folder load of the same model. Wrong files (inpainting,
SDXL, corrupt, missing, unknown extension) must give a ModelFileError that says what is wrong.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch

from nullface.errors import ModelFileError
from nullface.models.sd15 import CONFIG_DIR, load_sd15
from tests import ldm_checkpoint as ldm
from tests.tiny_models import save_sd15_folder

CPU = torch.device("cpu")
PROMPT = "an elderly man"


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("single_file")
    folder = save_sd15_folder(root / "diffusers" / "tiny-sd15")
    ckpts = root / "checkpoints"
    sd = ldm.ldm_state_dict(folder)
    out = {"folder": folder, "root": root, "ldm": sd,
           "safetensors": ldm.save_ldm_checkpoint(folder, ckpts / "tiny-sd15.safetensors"),
           "ckpt": ldm.save_ldm_checkpoint(folder, ckpts / "tiny-sd15.ckpt"),
           "inpainting": ldm.write_checkpoint(ldm.inpainting_variant(sd), ckpts / "tiny-sd15-inpainting.safetensors"),
           "inpainting_ckpt": ldm.write_checkpoint(ldm.inpainting_variant(sd), ckpts / "tiny-sd15-inpainting.ckpt"),
           "sdxl": ldm.write_checkpoint(ldm.sdxl_like_variant(sd), ckpts / "tiny-sdxl.safetensors")}
    return out


@pytest.fixture(scope="module")
def reference(files):
    """The same tiny model loaded from its diffusers folder."""
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline.from_pretrained(str(files["folder"]), safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False, local_files_only=True)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a connection fails the test (and is recorded)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network access is disabled in this test")

    def refuse_create(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse_create)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    yield attempts
    assert not attempts, f"the loader tried to reach the network: {attempts}"


def _assert_same_weights(module, expected, what: str) -> None:
    got, want = module.state_dict(), expected.state_dict()
    assert set(got) == set(want), f"{what}: keys differ: {sorted(set(got) ^ set(want))[:10]}"
    for key, value in want.items():
        other = got[key]
        assert other.device.type != "meta", f"{what}.{key} was left unloaded (meta tensor)"
        assert other.shape == value.shape and other.dtype == value.dtype, f"{what}.{key}: {other.shape} {other.dtype}"
        assert torch.equal(other, value), f"{what}.{key} differs from the diffusers-folder weights"


# --------------------------------------------------------------------------------------------- the layout
def test_checkpoint_has_the_original_layout(files):
    keys = set(files["ldm"])
    for key in ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.time_embed.0.weight",
                "model.diffusion_model.time_embed.2.weight", "model.diffusion_model.out.0.weight",
                "model.diffusion_model.out.2.weight",
                "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                "model.diffusion_model.input_blocks.2.0.op.weight",
                "model.diffusion_model.middle_block.1.proj_in.weight",
                "model.diffusion_model.middle_block.2.emb_layers.1.weight",
                "model.diffusion_model.output_blocks.1.1.conv.weight",      # up block 0: no attention
                "model.diffusion_model.output_blocks.2.0.skip_connection.weight",
                "model.diffusion_model.output_blocks.3.1.proj_out.weight",
                "first_stage_model.encoder.down.0.block.0.conv1.weight",
                "first_stage_model.encoder.down.0.downsample.conv.weight",
                "first_stage_model.encoder.mid.block_1.norm1.weight",
                "first_stage_model.encoder.norm_out.weight",
                "first_stage_model.decoder.up.3.upsample.conv.weight",
                "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
                "first_stage_model.quant_conv.weight", "first_stage_model.post_quant_conv.weight",
                "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
                "cond_stage_model.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"]:
        assert key in keys, key
    assert files["ldm"]["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)
    assert not any(".down_blocks." in k or ".up_blocks." in k or "mid_block" in k for k in keys)
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in keys     # the full-resolution level
    from safetensors import safe_open
    with safe_open(str(files["safetensors"]), framework="pt") as f:
        assert set(f.keys()) == keys
    ckpt = torch.load(str(files["ckpt"]), map_location="cpu", weights_only=True)
    assert set(ckpt["state_dict"]) == keys


def test_conversion_is_generic_at_sd15_size():
    """The converter follows the configs: at full SD1.5 size (meta tensors, no memory) the keys are SD1.5's,
    diffusers recognizes the file as SD v1, and its own ldm->diffusers conversion gives back every name and shape."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = str(CONFIG_DIR)
    ucfg = dict(UNet2DConditionModel.load_config(cfg, subfolder="unet", local_files_only=True))
    vcfg = dict(AutoencoderKL.load_config(cfg, subfolder="vae", local_files_only=True))
    ccfg = CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder", local_files_only=True)
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel.from_config(ucfg), AutoencoderKL.from_config(vcfg)
        clip = CLIPTextModel(ccfg)
    usd, vsd, csd = unet.state_dict(), vae.state_dict(), clip.state_dict()
    sd = {ldm.UNET_PREFIX + k: v for k, v in ldm.unet_to_ldm(ucfg, usd).items()}
    sd.update({ldm.VAE_PREFIX + k: v for k, v in ldm.vae_to_ldm(vcfg, vsd).items()})
    sd.update({ldm.CLIP_PREFIX + k: v for k, v in ldm.clip_to_ldm(csd).items()})
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    u, f = ldm.UNET_PREFIX, ldm.VAE_PREFIX
    assert shapes[u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)
    for k in ("input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "input_blocks.9.0.op.weight",
              "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight",
              "input_blocks.11.0.out_layers.3.weight", "output_blocks.11.1.proj_out.weight"):
        assert u + k in shapes, k
    assert u + "input_blocks.12.0.in_layers.0.weight" not in shapes
    assert u + "output_blocks.12.0.in_layers.0.weight" not in shapes
    assert shapes[f + "encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes[f + "decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert shapes[f + "decoder.up.3.upsample.conv.weight"] == (512, 512, 3, 3)
    assert shapes[ldm.CLIP_PREFIX + "text_model.embeddings.position_embedding.weight"] == (77, 768)
    assert (len(usd), len(vsd)) == (686, 248)
    assert sfu.infer_diffusers_model_type(sd) == "v1"
    back = sfu.convert_ldm_unet_checkpoint(sd, ucfg)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in usd.items()}
    back = sfu.convert_ldm_vae_checkpoint(sd, vcfg)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in vsd.items()}


# --------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("kind", ["safetensors", "ckpt"])
def test_single_file_loads_offline_and_exactly(files, reference, offline, kind):
    pipe = load_sd15(files[kind], CPU, torch.float32, config_dir=files["folder"])
    _assert_same_weights(pipe.unet, reference.unet, "unet")
    _assert_same_weights(pipe.vae, reference.vae, "vae")
    _assert_same_weights(pipe.text_encoder, reference.text_encoder, "text_encoder")
    public = lambda cfg: {k: v for k, v in dict(cfg).items() if not k.startswith("_")}  # noqa: E731
    assert public(pipe.unet.config) == public(reference.unet.config)
    assert public(pipe.vae.config) == public(reference.vae.config)
    assert pipe.vae.config.scaling_factor == reference.vae.config.scaling_factor
    tok, ref_tok = pipe.tokenizer, reference.tokenizer
    assert tok(PROMPT).input_ids == ref_tok(PROMPT).input_ids
    assert tok(PROMPT).input_ids[0] == 49406 and tok(PROMPT).input_ids[-1] == 49407
    assert type(pipe.scheduler).__name__ == type(reference.scheduler).__name__
    assert dict(pipe.scheduler.config)["beta_schedule"] == dict(reference.scheduler.config)["beta_schedule"]
    # The modules compute the same thing, not only hold the same numbers. (Not bit-exact: the weights are the
    # same, but tensors at other memory alignments take other CPU kernel paths, ~1e-7 apart.)
    ids = tok([PROMPT], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = pipe.text_encoder(ids)[0]
        torch.testing.assert_close(emb, reference.text_encoder(ids)[0], rtol=1e-5, atol=1e-5)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(pipe.unet(x, 10, emb).sample, reference.unet(x, 10, emb).sample,
                                   rtol=1e-5, atol=1e-5)
        img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        torch.testing.assert_close(pipe.vae.encode(img).latent_dist.mean, reference.vae.encode(img).latent_dist.mean,
                                   rtol=1e-5, atol=1e-5)


def test_other_block_layout_loads_exactly(files, offline, tmp_path):
    """Three blocks, two layers each, attention in the up blocks that upsample: the converter and the loader
    follow the config (the upsampler sits after the attention there, at output_blocks.{k}.2)."""
    import shutil
    from diffusers import UNet2DConditionModel
    folder = shutil.copytree(files["folder"], tmp_path / "other-sd15")
    shutil.rmtree(folder / "unet")
    torch.manual_seed(5)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    unet.save_pretrained(str(folder / "unet"))
    path = ldm.save_ldm_checkpoint(folder, tmp_path / "other-sd15.safetensors")
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    for k in ("input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "output_blocks.2.1.conv.weight",
              "output_blocks.5.2.conv.weight", "output_blocks.8.1.proj_out.weight"):
        assert ldm.UNET_PREFIX + k in keys, k
    pipe = load_sd15(path, CPU, torch.float32, config_dir=folder)
    _assert_same_weights(pipe.unet, unet, "unet")


def test_shipped_config_folder_is_a_valid_single_file_config(offline):
    """nullface/models/configs/sd15 holds what from_single_file(config=...) needs for SD1.5, readable offline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTokenizer
    cfg = str(CONFIG_DIR)
    index = StableDiffusionPipeline.load_config(cfg, local_files_only=True)
    assert index["_class_name"] == "StableDiffusionPipeline"
    for name, (lib, cls) in {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
                             "text_encoder": ("transformers", "CLIPTextModel"),
                             "tokenizer": ("transformers", "CLIPTokenizer")}.items():
        assert list(index[name]) == [lib, cls], name
        assert (CONFIG_DIR / name).is_dir(), name
    unet = UNet2DConditionModel.load_config(cfg, subfolder="unet", local_files_only=True)
    assert unet["in_channels"] == 4 and unet["out_channels"] == 4
    assert unet["cross_attention_dim"] == 768
    assert list(unet["block_out_channels"]) == [320, 640, 1280, 1280]
    assert unet["layers_per_block"] == 2
    assert list(unet["down_block_types"]) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(unet["up_block_types"]) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert unet.get("addition_embed_type") is None and not unet.get("use_linear_projection", False)
    vae = AutoencoderKL.load_config(cfg, subfolder="vae", local_files_only=True)
    assert vae["latent_channels"] == 4 and list(vae["block_out_channels"]) == [128, 256, 512, 512]
    assert abs(vae.get("scaling_factor", 0.18215) - 0.18215) < 1e-9
    text = CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder", local_files_only=True)
    assert text.vocab_size == 49408 and text.hidden_size == 768 and text.num_hidden_layers == 12
    assert text.max_position_embeddings == 77
    tok = CLIPTokenizer.from_pretrained(cfg, subfolder="tokenizer", local_files_only=True)
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("").input_ids == [49406, 49407]
    sched = DDIMScheduler.from_pretrained(cfg, subfolder="scheduler", local_files_only=True)
    assert sched.config.num_train_timesteps == 1000 and sched.config.beta_schedule == "scaled_linear"


# --------------------------------------------------------------------------------------------- wrong files
def _load_error(path, config_dir) -> str:
    with pytest.raises(ModelFileError) as info:
        load_sd15(path, CPU, torch.float32, config_dir=config_dir)
    return str(info.value)


@pytest.mark.parametrize("kind", ["inpainting", "inpainting_ckpt"])
def test_inpainting_checkpoint_is_refused(files, offline, kind):
    msg = _load_error(files[kind], files["folder"])
    assert "inpainting" in msg.lower() and "9-channel" in msg
    assert files[kind].name in msg and "v1-5-pruned-emaonly" in msg


def test_sdxl_checkpoint_is_refused(files, offline):
    msg = _load_error(files["sdxl"], files["folder"])
    assert "SDXL" in msg and "Stable Diffusion 1.5" in msg and files["sdxl"].name in msg


def test_random_bytes_are_refused_as_corrupt(files, offline):
    path = files["root"] / "checkpoints" / "garbage.safetensors"
    path.write_bytes(os.urandom(4096))
    msg = _load_error(path, files["folder"])
    assert "corrupt" in msg and "download it again" in msg and path.name in msg


@pytest.mark.parametrize("kind", ["safetensors", "ckpt"])
def test_truncated_download_is_refused_as_corrupt(files, offline, kind):
    data = files[kind].read_bytes()
    path = files["root"] / "checkpoints" / f"partial-{files[kind].name}"
    path.write_bytes(data[: len(data) // 2])
    msg = _load_error(path, files["folder"])
    assert "incomplete or corrupt" in msg and path.name in msg


def test_missing_file_names_the_file_and_the_folder(files, offline):
    path = files["root"] / "checkpoints" / "v1-5-pruned-emaonly.safetensors"
    assert not path.exists()
    msg = _load_error(path, files["folder"])
    assert "not found" in msg and "'v1-5-pruned-emaonly.safetensors'" in msg and str(path.parent) in msg
    assert "huggingface.co" in msg


@pytest.mark.parametrize("name", ["tiny-sd15.gguf", "tiny-sd15.txt"])
def test_unknown_extension_is_refused(files, offline, name):
    path = files["root"] / "checkpoints" / name
    path.write_bytes(files["safetensors"].read_bytes())
    msg = _load_error(path, files["folder"])
    assert name in msg and ".safetensors" in msg and ".ckpt" in msg


def test_folder_without_model_index_is_refused(files, offline, tmp_path):
    (tmp_path / "unet").mkdir()
    msg = _load_error(tmp_path, files["folder"])
    assert "not a diffusers model folder" in msg
