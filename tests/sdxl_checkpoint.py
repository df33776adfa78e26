"""Write a diffusers SDXL folder as ONE checkpoint in the original (Stability 'sgm') key layout.

The layout of ``sd_xl_base_1.0.safetensors``: the UNet under ``model.diffusion_model.`` (SD's ldm names
plus ``label_emb.0.{0,2}`` for the pooled-text/size embedding), the VAE under ``first_stage_model.``,
CLIP ViT-L under ``conditioner.embedders.0.transformer.`` (HF CLIP names) and OpenCLIP bigG under
``conditioner.embedders.1.model.`` (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.{i}.attn.in_proj_weight`` (q, k, v stacked), ``ln_1``, ``mlp.c_fc``, ``mlp.c_proj``,
``ln_2``, ``ln_final``, ``text_projection`` stored transposed).
"""
from __future__ import annotations

from pathlib import Path

import torch

from tests.ldm_checkpoint import (UNET_PREFIX, VAE_PREFIX, ddpm_buffers, read_component, clip_to_ldm,
                                  unet_to_ldm, vae_to_ldm, write_checkpoint)

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPENCLIP_PREFIX = "conditioner.embedders.1.model."
_LABEL_EMB = {"add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}
_RESBLOCK = {"self_attn.out_proj.": "attn.out_proj.", "layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.",
             "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj."}


def sdxl_unet_to_ldm(config: dict, sd: dict) -> dict:
    rest = {k: v for k, v in sd.items() if not k.startswith("add_embedding.")}
    out = unet_to_ldm(config, rest)
    for key, value in sd.items():
        for pre, new in _LABEL_EMB.items():
            if key.startswith(pre):
                out[new + key[len(pre):]] = value
    return out


def openclip_to_ldm(sd: dict) -> dict:
    """HF CLIPTextModelWithProjection state dict -> OpenCLIP names (after ``conditioner.embedders.1.model.``)."""
    sd = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v for k, v in sd.items()}
    out = {"token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": sd["text_model.final_layer_norm.weight"],
           "ln_final.bias": sd["text_model.final_layer_norm.bias"],
           "text_projection": sd["text_projection.weight"].T.contiguous()}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        pre = f"text_model.encoder.layers.{i}."
        blk = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[blk + f"attn.in_proj_{kind}"] = torch.cat([sd[pre + f"self_attn.{p}_proj.{kind}"]
                                                           for p in ("q", "k", "v")])
        for old, new in _RESBLOCK.items():
            for kind in ("weight", "bias"):
                out[blk + new + kind] = sd[pre + old + kind]
    return out


def sdxl_state_dict(diffusers_folder: str | Path) -> dict:
    folder = Path(diffusers_folder)
    unet_cfg, unet_sd = read_component(folder, "unet")
    vae_cfg, vae_sd = read_component(folder, "vae")
    _, te1 = read_component(folder, "text_encoder")
    _, te2 = read_component(folder, "text_encoder_2")
    out = {UNET_PREFIX + k: v for k, v in sdxl_unet_to_ldm(unet_cfg, unet_sd).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae_cfg, vae_sd).items()})
    out.update({CLIP_L_PREFIX + k: v for k, v in clip_to_ldm(te1).items()})
    out.update({OPENCLIP_PREFIX + k: v for k, v in openclip_to_ldm(te2).items()})
    out.update(ddpm_buffers())
    return out


def save_sdxl_checkpoint(diffusers_folder: str | Path, out_path: str | Path) -> Path:
    return write_checkpoint(sdxl_state_dict(diffusers_folder), out_path)
