"""Loading SDXL and IP-Adapter FaceID for SDXL from local files only (Reverse Personalization's backbone)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .devices import pick_device, pick_dtype
from ..errors import ModelFileError
from .sd15 import CONFIG_DIR as SD15_CONFIG_DIR
from .quiet import expected_messages_silenced
from .files import check_checkpoint_file, check_model_folder, checkpoint_keys, load_or_explain, require_file
from .sd15 import NullFacePipe, attach_faceid, check_model_files, load_check, read_faceid

log = logging.getLogger("nullface")

CONFIG_DIR = Path(__file__).parent / "configs" / "sdxl"
SDXL_HINT = ("Stable Diffusion XL base 1.0: 'sd_xl_base_1.0.safetensors' (6.9 GB) from "
             "huggingface.co/stabilityai/stable-diffusion-xl-base-1.0 (CreativeML Open RAIL++-M), "
             "in ComfyUI/models/checkpoints, or a diffusers folder in ComfyUI/models/diffusers.")
FACEID_SDXL_HINT = ("IP-Adapter FaceID for SDXL: 'ip-adapter-faceid_sdxl.bin' (1.07 GB, holds its LoRA) from "
                    "huggingface.co/h94/IP-Adapter-FaceID (non-commercial research use, as its InsightFace "
                    "training data), in ComfyUI/models/ipadapter.")

REVPERS_FILES = (("SDXL checkpoint", SDXL_HINT), ("IP-Adapter FaceID SDXL model", FACEID_SDXL_HINT))

_CLIP_L = "conditioner.embedders.0.transformer."          # SDXL's first text encoder (CLIP ViT-L)
_OPENCLIP_G = "conditioner.embedders.1.model."            # SDXL's second text encoder (OpenCLIP bigG)
_REFINER = "conditioner.embedders.0.model."               # the refiner has only OpenCLIP bigG
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


@dataclass
class SDXLPipe(NullFacePipe):
    """SDXL (UNet, VAE, two text encoders and tokenizers) with IP-Adapter FaceID SDXL in its UNet."""

    @torch.no_grad()
    def encode_prompt(self, prompt: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(token embeddings [1,77,2048], pooled [1,1280]) of ``prompt``, as SDXL's pipeline encodes it.

        ``None`` is SDXL's empty *negative* prompt: zero embeddings (``force_zeros_for_empty_prompt``).
        """
        key = ("sdxl", prompt)
        if key not in self._prompt_cache:
            embeds, _, pooled, _ = self.modules.encode_prompt("" if prompt is None else prompt, device=self.device,
                                                               num_images_per_prompt=1,
                                                               do_classifier_free_guidance=False)
            if prompt is None:
                embeds, pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
            self._prompt_cache[key] = (embeds.to(self.dtype), pooled.to(self.dtype))
        return self._prompt_cache[key]

    @property
    def zero_empty_prompt(self) -> bool:
        """Whether the checkpoint's pipeline zeroes an empty negative prompt (SDXL base: yes)."""
        return bool(getattr(self.modules.config, "force_zeros_for_empty_prompt", True))

    def _load_again(self, callback=None) -> "SDXLPipe":
        return load_revpers_pipe(self.checkpoint, self.faceid, device=self.device, dtype=self.dtype,
                                 config_dir=self.config_dir, callback=callback)

    def time_ids(self, height: int, width: int) -> torch.Tensor:
        """SDXL's micro-conditioning (original size, crop top-left, target size) for an image of this size."""
        return torch.tensor([[height, width, 0, 0, height, width]], dtype=self.dtype, device=self.device)


def check_sdxl_checkpoint(path: Path) -> None:
    """Reject single files that are not an SDXL base checkpoint with a 4-channel UNet, naming what they are."""
    keys = checkpoint_keys(path, SDXL_HINT)
    first = keys.get(_UNET_IN)
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        raise ModelFileError(f"'{path.name}' is a Stable Diffusion 1.x checkpoint; Reverse Personalization needs "
                             f"SDXL (NullFace uses SD1.5). {SDXL_HINT}")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ModelFileError(f"'{path.name}' is a Stable Diffusion 2.x checkpoint; Reverse Personalization needs "
                             f"SDXL. {SDXL_HINT}")
    if first is None:
        raise ModelFileError(f"'{path.name}' is not a Stable Diffusion checkpoint (no UNet weights found). "
                             f"{SDXL_HINT}")
    if not any(k.startswith(_OPENCLIP_G) for k in keys):
        if any(k.startswith(_REFINER) for k in keys):
            raise ModelFileError(f"'{path.name}' is the SDXL refiner; Reverse Personalization needs the SDXL base "
                                 f"model. {SDXL_HINT}")
        raise ModelFileError(f"'{path.name}' is not an SDXL checkpoint (no OpenCLIP bigG text encoder under "
                             f"'{_OPENCLIP_G}'). {SDXL_HINT}")
    if not any(k.startswith(_CLIP_L) for k in keys):
        raise ModelFileError(f"'{path.name}' lacks SDXL's CLIP ViT-L text encoder ('{_CLIP_L}'). {SDXL_HINT}")
    if first[1] != 4:
        raise ModelFileError(f"'{path.name}' has a {first[1]}-channel UNet (an inpainting or other variant); "
                             f"Reverse Personalization needs the plain 4-channel SDXL UNet. {SDXL_HINT}")


def _tokenizers():
    """SDXL's two CLIP tokenizers from the shipped vocabulary (the second pads with '!', as SDXL's does)."""
    from transformers import CLIPTokenizer
    tok = str(SD15_CONFIG_DIR / "tokenizer")
    return CLIPTokenizer.from_pretrained(tok), CLIPTokenizer.from_pretrained(tok, pad_token="!")


def load_sdxl(path: str | os.PathLike, device: torch.device, dtype: torch.dtype,
              config_dir: str | os.PathLike | None = None):
    """A diffusers StableDiffusionXLPipeline from a diffusers folder or a single .safetensors/.ckpt file.

    Single files use the SDXL configs shipped in ``nullface/models/configs/sdxl`` (or ``config_dir``) and the CLIP
    tokenizer shipped for SD1.5 (the same vocabulary), so nothing is fetched from the hub.
    """
    from diffusers import StableDiffusionXLPipeline

    path = require_file(path, "SDXL checkpoint", SDXL_HINT)
    common = dict(torch_dtype=dtype, local_files_only=True)
    if path.is_dir():
        check_model_folder(path, SDXL_HINT)
        if "StableDiffusionXL" not in (path / "model_index.json").read_text():
            raise ModelFileError(f"'{path.name}' is not an SDXL diffusers folder (its model_index.json names "
                                 f"another pipeline). {SDXL_HINT}")
        pipe = load_or_explain(lambda: StableDiffusionXLPipeline.from_pretrained(str(path), **common),
                               f"'{path.name}' could not be loaded as SDXL", SDXL_HINT)
    else:
        check_checkpoint_file(path, SDXL_HINT)
        check_sdxl_checkpoint(path)
        tok, tok2 = _tokenizers()
        pipe = load_or_explain(
            lambda: StableDiffusionXLPipeline.from_single_file(str(path), config=str(config_dir or CONFIG_DIR),
                                                               tokenizer=tok, tokenizer_2=tok2, **common),
            f"'{path.name}' could not be loaded as SDXL", SDXL_HINT)
    unet = pipe.unet
    if unet.config.in_channels != 4 or unet.config.addition_embed_type != "text_time":
        raise ModelFileError(f"'{path.name}' is not the plain SDXL base UNet (in_channels "
                             f"{unet.config.in_channels}, addition_embed_type {unet.config.addition_embed_type}). "
                             f"{SDXL_HINT}")
    return pipe.to(device)


def read_faceid_sdxl(path: str | os.PathLike) -> dict:
    """The FaceID SDXL state dict; the separate LoRA file or another adapter gives an error saying what it is."""
    try:
        return read_faceid(path, FACEID_SDXL_HINT)
    except ModelFileError as exc:
        p = Path(path).expanduser()
        if p.is_file() and p.suffix == ".safetensors":
            keys = _lora_keys(p)
            if keys:
                raise ModelFileError(f"'{p.name}' is a LoRA file alone (keys like '{keys[0]}'); give "
                                     f"ip-adapter-faceid_sdxl.bin, which holds both the adapter and its LoRA. "
                                     f"{FACEID_SDXL_HINT}") from None
        raise exc


def _lora_keys(path: Path) -> list[str]:
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return [k for k in f.keys() if "lora" in k.lower()][:1]
    except Exception:
        return []


def load_revpers_pipe(checkpoint: str | os.PathLike, faceid: str | os.PathLike, *,
                      device: str | torch.device = "auto", dtype: str | torch.dtype | None = "auto",
                      config_dir: str | os.PathLike | None = None, callback=None) -> SDXLPipe:
    """SDXL + IP-Adapter FaceID SDXL (with its LoRA), ready for Reverse Personalization; ``callback`` as
    ``load_pipe``'s (a Cancel can stop the load between its parts)."""
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    check_model_files(checkpoint, faceid, kinds=REVPERS_FILES)      # every missing file in one message
    faceid_sd = read_faceid_sdxl(faceid)            # fail fast on a wrong adapter before the big load
    width = faceid_sd["image_proj"]["norm.weight"].shape[0]
    if width == 768:
        raise ModelFileError(f"'{Path(faceid).name}' is the FaceID adapter for SD1.5 (768-wide tokens); "
                             f"Reverse Personalization needs the SDXL one. {FACEID_SDXL_HINT}")
    check = load_check(callback)
    with expected_messages_silenced(check):         # diffusers' expected warnings and loading bars (quiet.py)
        pipe = load_sdxl(checkpoint, dev, dt, config_dir)
        check()
        attach_faceid(pipe, faceid_sd, Path(faceid).name, FACEID_SDXL_HINT)
        check()
        pipe.to(dev, dt)
    if dt == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)           # SDXL's VAE overflows in fp16; diffusers and the reference upcast it
    pipe.set_progress_bar_config(disable=True)
    log.info("Reverse Personalization pipeline: %s + %s on %s (%s)", Path(checkpoint).name, Path(faceid).name,
             dev, dt)
    return SDXLPipe(pipeline=pipe, device=dev, dtype=dt, checkpoint=str(checkpoint), faceid=str(faceid))
