"""Tiny random-weight models with SDXL's architecture and file layouts, built at test time.

- an SDXL-architecture diffusers folder: UNet2DConditionModel with ``addition_embed_type="text_time"``
  (pooled text + size micro-conditioning), two CLIP text encoders (the second with a projection, as
  OpenCLIP bigG), AutoencoderKL, the shipped CLIP tokenizer twice, SDXL's scheduler config;
- an IP-Adapter FaceID SDXL state dict with the real key layout: image_proj 512 -> 4 tokens of the UNet's
  cross-attention width with its LayerNorm, ``ip_adapter.{i}.to_{k,v}_ip`` for every attn2 and the LoRA
  ``ip_adapter.{i}.to_{q,k,v,out}_lora.{down,up}`` for every attention layer.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models import CONFIGS, faceid_state_dict, tiny_vae

TE1, TE2 = 32, 48         # hidden sizes of the two text encoders (768 and 1280 in SDXL)
CROSS = TE1 + TE2         # cross-attention width: the two encoders' hidden states side by side (2048)
TIME_DIM = 8              # addition_time_embed_dim (256)


def tiny_sdxl_unet():
    from diffusers import UNet2DConditionModel
    torch.manual_seed(10)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS, attention_head_dim=(2, 4), norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=6 * TIME_DIM + TE2, transformer_layers_per_block=(1, 1))


def tiny_text_encoders():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    torch.manual_seed(11)
    common = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=TE1, intermediate_size=37, num_attention_heads=4,
                                       num_hidden_layers=2, hidden_act="quick_gelu", **common)).eval()
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=TE2, intermediate_size=53, num_attention_heads=4,
                                                     num_hidden_layers=2, hidden_act="gelu", projection_dim=TE2,
                                                     **common)).eval()
    return te1, te2


def save_sdxl_folder(folder: Path) -> Path:
    """A diffusers-format SDXL-architecture model folder with random weights."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(CONFIGS / "tokenizer"))
    tok2 = CLIPTokenizer.from_pretrained(str(CONFIGS / "tokenizer"), pad_token="!")
    sched = EulerDiscreteScheduler.from_pretrained(str(CONFIGS.parent / "sdxl" / "scheduler"))
    te1, te2 = tiny_text_encoders()
    vae = tiny_vae()
    vae.register_to_config(scaling_factor=0.13025, force_upcast=True)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                                     unet=tiny_sdxl_unet(), scheduler=sched)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def save_faceid_sdxl(folder: Path, unet) -> Path:
    """The FaceID SDXL adapter as the real .bin (nested torch pickle)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ip-adapter-faceid_sdxl.bin"
    torch.save(faceid_state_dict(unet, seed=12, cross=CROSS), path)
    return path


def build_sdxl(root: Path) -> dict:
    """The tiny SDXL folder and FaceID SDXL adapter under ``root``; returns the paths."""
    from diffusers import UNet2DConditionModel
    sd = save_sdxl_folder(root / "diffusers" / "tiny-sdxl")
    unet = UNet2DConditionModel.from_pretrained(str(sd / "unet"))
    return {"sdxl": sd, "faceid_sdxl": save_faceid_sdxl(root / "ipadapter", unet), "root": root}
