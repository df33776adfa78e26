"""Tiny random-weight models for the inpainting method, with the real architectures and file layouts.

- an SD1.5-inpainting-architecture diffusers folder (9-channel UNet) and its single-file checkpoint in the
  original ldm layout (``tests.ldm_checkpoint``);
- a FaRL-style file: a CLIP ViT image tower in OpenAI CLIP's key layout under ``state_dict`` (``visual.conv1``,
  ``visual.transformer.resblocks.{i}.attn.in_proj_weight``...), as FaRL's released .pth.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models import CONFIGS, tiny_text_encoder, tiny_unet, tiny_vae


def save_inpaint_folder(folder: Path) -> Path:
    """A diffusers-format SD1.5-inpainting-architecture folder with random weights."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(CONFIGS / "tokenizer"))
    sched = DDIMScheduler.from_pretrained(str(CONFIGS / "scheduler"))
    pipe = StableDiffusionInpaintPipeline(vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tok,
                                          unet=tiny_unet(in_channels=9, seed=5), scheduler=sched, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def farl_state_dict(width: int = 64, layers: int = 2, patch: int = 8, grid: int = 4, seed: int = 6) -> dict:
    """OpenAI-CLIP-layout image tower weights (FaRL's .pth holds these under 'state_dict')."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    sd = {"visual.conv1.weight": rnd(width, 3, patch, patch, scale=0.1), "visual.class_embedding": rnd(width),
          "visual.positional_embedding": rnd(grid * grid + 1, width),
          "visual.ln_pre.weight": 1 + rnd(width), "visual.ln_pre.bias": rnd(width),
          "visual.ln_post.weight": 1 + rnd(width), "visual.ln_post.bias": rnd(width),
          "visual.proj": rnd(width, width),
          "logit_scale": torch.tensor(4.6)}                      # text-tower and other keys are ignored
    for i in range(layers):
        p = f"visual.transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": rnd(3 * width, width, scale=0.2), p + "attn.in_proj_bias": rnd(3 * width),
                   p + "attn.out_proj.weight": rnd(width, width, scale=0.2), p + "attn.out_proj.bias": rnd(width),
                   p + "ln_1.weight": 1 + rnd(width), p + "ln_1.bias": rnd(width),
                   p + "ln_2.weight": 1 + rnd(width), p + "ln_2.bias": rnd(width),
                   p + "mlp.c_fc.weight": rnd(4 * width, width, scale=0.2), p + "mlp.c_fc.bias": rnd(4 * width),
                   p + "mlp.c_proj.weight": rnd(width, 4 * width, scale=0.2), p + "mlp.c_proj.bias": rnd(width)})
    return sd


def save_farl(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": farl_state_dict(**kw)}, str(path))
    return path


def build_inpaint_models(root: Path) -> dict:
    """Folder, single-file checkpoints (.safetensors and .ckpt) and a FaRL .pth under ``root``."""
    from tests.ldm_checkpoint import save_ldm_checkpoint
    folder = save_inpaint_folder(root / "diffusers" / "tiny-sd15-inpainting")
    st = save_ldm_checkpoint(folder, root / "checkpoints" / "tiny-sd15-inpainting.safetensors")
    ckpt = save_ldm_checkpoint(folder, root / "checkpoints" / "tiny-sd15-inpainting.ckpt")
    farl = save_farl(root / "farl" / "FaRL-tiny.pth")
    return {"folder": folder, "safetensors": st, "ckpt": ckpt, "farl": farl, "root": root}
