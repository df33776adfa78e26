"""FaRL (Zheng et al., CVPR 2022), the feature extractor φ of the attribute guidance (papers/000).

FaRL is CLIP's ViT-B/16 image tower pre-trained on LAION-Face. Its released checkpoints
(``FaRL-Base-Patch16-LAIONFace20M-ep64.pth``) use OpenAI CLIP's key layout (``visual.conv1``,
``visual.transformer.resblocks.{i}.attn.in_proj_weight``...); they are converted here to
``transformers.CLIPVisionModel`` (QuickGELU, pre-LN), so no extra package is needed.

As in the authors' code, φ(y) is the token sequence after the last transformer block (class token and
all patch tokens, before ``ln_post``) of y resized to the model's input size (224, antialiased bilinear),
centre-cropped, without mean/std normalization (the reference feeds FaRL images in -1..1).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ModelFileError
from .files import read_state_dict, require_file

log = logging.getLogger("nullface")

FARL_HINT = ("FaRL ViT-B/16: 'FaRL-Base-Patch16-LAIONFace20M-ep64.pth' (600 MB) from "
             "github.com/FacePerceiver/FaRL (released for research use; LAION-Face), in ComfyUI/models/farl "
             "(or pass its path). Without it, set the attribute guidance scale to 0 (plain SD inpainting).")


def _visual_keys(sd: dict) -> dict:
    """The image tower's tensors without their prefix ('visual.', 'module.visual.', or none)."""
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    for prefix in ("module.visual.", "visual.", ""):
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and hasattr(v, "shape")}
        if "conv1.weight" in sub and "positional_embedding" in sub:
            return sub
    raise ModelFileError("the file holds no CLIP/FaRL image tower (no visual.conv1 / positional_embedding). "
                         + FARL_HINT)


def clip_visual_to_hf(sd: dict):
    """(CLIPVisionConfig, state dict) for ``CLIPVisionModel`` from OpenAI-CLIP-layout visual weights."""
    from transformers import CLIPVisionConfig
    v = _visual_keys(sd)
    width, _, patch, _ = v["conv1.weight"].shape
    tokens = v["positional_embedding"].shape[0]
    grid = int(round((tokens - 1) ** 0.5))
    if grid * grid + 1 != tokens:
        raise ModelFileError(f"unexpected positional embedding of {tokens} tokens (not a square ViT). {FARL_HINT}")
    layers = 1 + max(int(k.split(".")[2]) for k in v if k.startswith("transformer.resblocks."))
    mlp = v["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    cfg = CLIPVisionConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                           num_attention_heads=max(1, width // 64), image_size=grid * patch, patch_size=patch,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=width)
    out = {"vision_model.embeddings.patch_embedding.weight": v["conv1.weight"],
           "vision_model.embeddings.class_embedding": v["class_embedding"],
           "vision_model.embeddings.position_embedding.weight": v["positional_embedding"],
           "vision_model.pre_layrnorm.weight": v["ln_pre.weight"], "vision_model.pre_layrnorm.bias": v["ln_pre.bias"],
           "vision_model.post_layernorm.weight": v["ln_post.weight"],
           "vision_model.post_layernorm.bias": v["ln_post.bias"]}
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for name, part in zip(("q_proj", "k_proj", "v_proj"), v[src + "attn.in_proj_weight"].chunk(3)):
            out[dst + f"self_attn.{name}.weight"] = part
        for name, part in zip(("q_proj", "k_proj", "v_proj"), v[src + "attn.in_proj_bias"].chunk(3)):
            out[dst + f"self_attn.{name}.bias"] = part
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[dst + b + ".weight"] = v[src + a + ".weight"]
            out[dst + b + ".bias"] = v[src + a + ".bias"]
    return cfg, {k: t.float().contiguous() for k, t in out.items()}


class FarlFeatures(torch.nn.Module):
    """φ: images [B,3,H,W] in -1..1 -> FaRL tokens [B, 1 + (S/16)², 768] (differentiable)."""

    def __init__(self, model, path: str = ""):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.size = int(model.config.image_size)
        self.path = path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        x = images.to(p.device, p.dtype)
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)                       # Resize(224): the shorter side to 224
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2   # CenterCrop(224)
        x = x[..., top:top + self.size, left:left + self.size]
        return self.model(pixel_values=x).last_hidden_state.float()


def load_farl(path: str | os.PathLike, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> FarlFeatures:
    """FaRL's image tower from its released .pth (or any OpenAI-CLIP-layout ViT file), as φ."""
    path = require_file(path, "FaRL feature extractor", FARL_HINT)
    with torch.inference_mode(False):          # ordinary parameters: the guidance differentiates through φ
        return _load_farl(path, device, dtype)


def _load_farl(path: Path, device, dtype) -> FarlFeatures:
    from transformers import CLIPVisionModel
    if path.is_dir():
        raise ModelFileError(f"'{path}' is a folder; give the FaRL .pth file. {FARL_HINT}")
    cfg, sd = clip_visual_to_hf(read_state_dict(path))
    model = CLIPVisionModel(cfg)
    if not any(k.startswith("vision_model.") for k in model.state_dict()):     # transformers >= 5 layout
        sd = {k[len("vision_model."):]: v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelFileError(f"'{path.name}' does not match CLIP's ViT layout (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}). {FARL_HINT}")
    log.info("FaRL feature extractor: %s (ViT, %d layers, width %d, %d px)", Path(path).name,
             cfg.num_hidden_layers, cfg.hidden_size, cfg.image_size)
    return FarlFeatures(model.to(device, dtype), str(path))

