"""Write a diffusers SD1.x folder as ONE checkpoint in the original (CompVis/ldm) key layout.

This is the layout of the files users keep in ``ComfyUI/models/checkpoints`` (e.g.
``v1-5-pruned-emaonly.safetensors``):

- UNet under ``model.diffusion_model.`` (``time_embed``, ``input_blocks``, ``middle_block``,
  ``output_blocks``, ``out``);
- VAE under ``first_stage_model.`` (``encoder.down.{i}.block.{j}``, ``mid.block_1``, ``mid.attn_1`` with
  ``q/k/v/proj_out`` stored as 1x1 convolutions, ``decoder.up.{N-1-i}``, ``quant_conv``, ...);
- CLIP text encoder under ``cond_stage_model.transformer.`` followed by the HF CLIP names
  (``text_model.embeddings...``, ``text_model.encoder.layers.{k}...``), as in the released SD1.x files;
- the DDPM schedule buffers (``betas``, ``alphas_cumprod``, ...) the original training code stores.

The conversion reads the block counts, ``layers_per_block`` and which blocks carry attention from the
folder's configs and weights, so it works for the tiny test model as well as for the full-size SD1.5.
Every source tensor must be mapped; an unknown key raises instead of being silently dropped.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_MARKER = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"

# diffusers ResnetBlock2D name -> ldm ResBlock name (UNet)
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
# diffusers ResnetBlock2D name -> ldm ResnetBlock name (VAE)
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "conv_shortcut": "nin_shortcut"}
# diffusers Attention (VAE mid block) -> ldm AttnBlock
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


# --------------------------------------------------------------------------------------------- reading
def read_component(folder: Path, name: str) -> tuple[dict, dict]:
    """(config, state dict) of one component folder of a diffusers model."""
    from safetensors.torch import load_file
    sub = folder / name
    config = json.loads((sub / "config.json").read_text())
    files = sorted(sub.glob("*.safetensors"))
    if not files:
        files = sorted(sub.glob("*.bin"))
        if not files:
            raise FileNotFoundError(f"no weights in {sub}")
        sd = {}
        for f in files:
            sd.update(torch.load(str(f), map_location="cpu", weights_only=True))
        return config, sd
    sd = {}
    for f in files:
        sd.update(load_file(str(f)))
    return config, sd


def _rename(sd: dict, table: dict[str, tuple[str, dict | None]], what: str) -> dict:
    """Map each key through the longest matching diffusers prefix in ``table``.

    ``table``: diffusers prefix (ending with '.') -> (ldm prefix, optional renames of the first
    component(s) after the prefix).
    """
    prefixes = sorted(table, key=len, reverse=True)
    out = {}
    for key, value in sd.items():
        for pre in prefixes:
            if key.startswith(pre):
                new_pre, renames = table[pre]
                rest = key[len(pre):]
                if renames:
                    for old in sorted(renames, key=len, reverse=True):
                        if rest.startswith(old + "."):
                            rest = renames[old] + rest[len(old):]
                            break
                    else:
                        raise KeyError(f"{what}: no ldm name for '{key}'")
                out[new_pre + rest] = value
                break
        else:
            raise KeyError(f"{what}: '{key}' has no place in the ldm layout")
    return out


# --------------------------------------------------------------------------------------------- UNet
def unet_to_ldm(config: dict, sd: dict) -> dict:
    """diffusers UNet2DConditionModel state dict -> ldm UNetModel keys (without the prefix)."""
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("the ldm layout needs one layers_per_block for every block")
    n_blocks = len(config["block_out_channels"])
    if len(config["down_block_types"]) != n_blocks or len(config["up_block_types"]) != n_blocks:
        raise ValueError("block_out_channels, down_block_types and up_block_types differ in length")
    res = _UNET_RESNET
    table: dict[str, tuple[str, dict | None]] = {
        "conv_in.": ("input_blocks.0.0.", None),
        "time_embedding.linear_1.": ("time_embed.0.", None),
        "time_embedding.linear_2.": ("time_embed.2.", None),
        "conv_norm_out.": ("out.0.", None),
        "conv_out.": ("out.2.", None),
        "mid_block.resnets.0.": ("middle_block.0.", res),
        "mid_block.attentions.0.": ("middle_block.1.", None),
        "mid_block.resnets.1.": ("middle_block.2.", res),
    }
    # input_blocks: [conv_in] then per block `layers` x (resnet[, attention]) and a downsampler
    # (except after the last block).
    for i in range(n_blocks):
        base = 1 + i * (layers + 1)
        for j in range(layers):
            table[f"down_blocks.{i}.resnets.{j}."] = (f"input_blocks.{base + j}.0.", res)
            table[f"down_blocks.{i}.attentions.{j}."] = (f"input_blocks.{base + j}.1.", None)
        table[f"down_blocks.{i}.downsamplers.0.conv."] = (f"input_blocks.{base + layers}.0.op.", None)
    # output_blocks: per block `layers + 1` x (resnet[, attention]); the upsampler sits in the last of them,
    # after the attention where the block has one.
    for i in range(n_blocks):
        base = i * (layers + 1)
        has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd)
        for j in range(layers + 1):
            table[f"up_blocks.{i}.resnets.{j}."] = (f"output_blocks.{base + j}.0.", res)
            table[f"up_blocks.{i}.attentions.{j}."] = (f"output_blocks.{base + j}.1.", None)
        up_slot = 2 if has_attn else 1
        table[f"up_blocks.{i}.upsamplers.0.conv."] = (f"output_blocks.{base + layers}.{up_slot}.conv.", None)
    extra = [k for k in sd if k.startswith(("class_embedding.", "add_embedding.", "encoder_hid_proj."))]
    if extra:
        raise ValueError(f"not an SD1.x UNet (extra embeddings: {extra[:3]})")
    return _rename(sd, table, "UNet")


# --------------------------------------------------------------------------------------------- VAE
def vae_to_ldm(config: dict, sd: dict) -> dict:
    """diffusers AutoencoderKL state dict -> ldm AutoencoderKL keys (without the prefix)."""
    n_blocks = len(config["block_out_channels"])
    table: dict[str, tuple[str, dict | None]] = {
        "quant_conv.": ("quant_conv.", None),
        "post_quant_conv.": ("post_quant_conv.", None),
    }
    for part in ("encoder", "decoder"):
        table[f"{part}.conv_in."] = (f"{part}.conv_in.", None)
        table[f"{part}.conv_out."] = (f"{part}.conv_out.", None)
        table[f"{part}.conv_norm_out."] = (f"{part}.norm_out.", None)
        table[f"{part}.mid_block.resnets.0."] = (f"{part}.mid.block_1.", _VAE_RESNET)
        table[f"{part}.mid_block.resnets.1."] = (f"{part}.mid.block_2.", _VAE_RESNET)
        table[f"{part}.mid_block.attentions.0."] = (f"{part}.mid.attn_1.", _VAE_ATTN)
    for i in range(n_blocks):
        n_res = max([int(k.split(".")[4]) + 1 for k in sd if k.startswith(f"encoder.down_blocks.{i}.resnets.")],
                    default=0)
        for j in range(n_res):
            table[f"encoder.down_blocks.{i}.resnets.{j}."] = (f"encoder.down.{i}.block.{j}.", _VAE_RESNET)
        table[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = (f"encoder.down.{i}.downsample.conv.", None)
        # the decoder's up blocks are numbered from the lowest resolution in diffusers, from the highest in ldm
        ldm_i = n_blocks - 1 - i
        n_res = max([int(k.split(".")[4]) + 1 for k in sd if k.startswith(f"decoder.up_blocks.{i}.resnets.")],
                    default=0)
        for j in range(n_res):
            table[f"decoder.up_blocks.{i}.resnets.{j}."] = (f"decoder.up.{ldm_i}.block.{j}.", _VAE_RESNET)
        table[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = (f"decoder.up.{ldm_i}.upsample.conv.", None)
    out = _rename(sd, table, "VAE")
    # ldm's AttnBlock uses 1x1 convolutions where diffusers uses linear layers
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            if value.ndim == 2:
                out[key] = value[:, :, None, None]
    return out


# --------------------------------------------------------------------------------------------- CLIP
def clip_to_ldm(sd: dict) -> dict:
    """HF CLIPTextModel state dict -> the names after ``cond_stage_model.transformer.``.

    Recent transformers save CLIPTextModel without its ``text_model.`` level; the released SD1.x files
    have it, so it is put back. ``position_ids`` is kept in the file as the released checkpoints do.
    """
    out = {}
    for key, value in sd.items():
        if not key.startswith("text_model."):
            key = "text_model." + key
        out[key] = value
    pos = "text_model.embeddings.position_embedding.weight"
    if pos not in out:
        raise KeyError("not a CLIP text model (no position embedding)")
    out.setdefault("text_model.embeddings.position_ids", torch.arange(out[pos].shape[0])[None])
    return out


def ddpm_buffers(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> dict:
    """The 'scaled linear' noise schedule buffers the ldm LatentDiffusion module stores in its state dict."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    bufs = {"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
            "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt()}
    return {k: v.float() for k, v in bufs.items()}


# --------------------------------------------------------------------------------------------- API
def ldm_state_dict(diffusers_folder: str | Path) -> dict:
    """The complete original-layout state dict of a diffusers SD1.x folder."""
    folder = Path(diffusers_folder)
    unet_cfg, unet_sd = read_component(folder, "unet")
    vae_cfg, vae_sd = read_component(folder, "vae")
    _, clip_sd = read_component(folder, "text_encoder")
    out = {}
    out.update({UNET_PREFIX + k: v for k, v in unet_to_ldm(unet_cfg, unet_sd).items()})
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae_cfg, vae_sd).items()})
    out.update({CLIP_PREFIX + k: v for k, v in clip_to_ldm(clip_sd).items()})
    out.update(ddpm_buffers())
    return out


def write_checkpoint(state_dict: dict, out_path: str | Path) -> Path:
    """.safetensors when the name says so, otherwise a torch pickle ``{"state_dict": ...}`` (.ckpt)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}  # no shared storage
    if out_path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(tensors, str(out_path), metadata={"format": "pt"})
    else:
        torch.save({"state_dict": tensors, "global_step": 0}, str(out_path))
    return out_path


def save_ldm_checkpoint(diffusers_folder: str | Path, out_path: str | Path) -> Path:
    """Convert a diffusers SD1.x folder (unet/vae/text_encoder) into one original-layout checkpoint file."""
    return write_checkpoint(ldm_state_dict(diffusers_folder), out_path)


# --------------------------------------------------------------------------------------------- wrong files
def inpainting_variant(state_dict: dict) -> dict:
    """The SD1.5-inpainting shape: the UNet's first convolution takes 9 channels (latent + mask + masked image)."""
    sd = dict(state_dict)
    key = UNET_PREFIX + "input_blocks.0.0.weight"
    w = sd[key]
    extra = torch.zeros(w.shape[0], 9 - w.shape[1], *w.shape[2:], dtype=w.dtype)
    sd[key] = torch.cat([w, extra], dim=1)
    return sd


def sdxl_like_variant(state_dict: dict) -> dict:
    """An SDXL marker: the second (OpenCLIP bigG) text encoder under ``conditioner.embedders.1.``."""
    sd = dict(state_dict)
    sd[SDXL_MARKER] = torch.zeros(96, 32)
    return sd


def save_inpainting_checkpoint(diffusers_folder: str | Path, out_path: str | Path) -> Path:
    return write_checkpoint(inpainting_variant(ldm_state_dict(diffusers_folder)), out_path)


def save_sdxl_like_checkpoint(diffusers_folder: str | Path, out_path: str | Path) -> Path:
    return write_checkpoint(sdxl_like_variant(ldm_state_dict(diffusers_folder)), out_path)
