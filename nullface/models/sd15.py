"""Loading Stable Diffusion 1.5 and IP-Adapter FaceID from local files only (no hub, no network)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .devices import give_back_host_memory, pick_device, pick_dtype
from ..errors import MissingDependencyError, ModelFileError
from .insightface import BUFFALO_HINT, find_buffalo
from .files import (check_checkpoint_file, check_model_folder, checkpoint_keys, load_or_explain, missing_file,
                    raise_missing, read_state_dict, require_file)
from .quiet import expected_messages_silenced

log = logging.getLogger("nullface")

CONFIG_DIR = Path(__file__).parent / "configs" / "sd15"
SD15_HINT = ("Stable Diffusion 1.5: e.g. 'v1-5-pruned-emaonly.safetensors' (4.27 GB) from "
             "huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5 (CreativeML OpenRAIL-M), "
             "in ComfyUI/models/checkpoints, or a diffusers folder in ComfyUI/models/diffusers.")
FACEID_HINT = ("IP-Adapter FaceID for SD1.5: 'ip-adapter-faceid_sd15.bin' (96 MB) from "
               "huggingface.co/h94/IP-Adapter-FaceID (non-commercial research use, as its InsightFace "
               "training data), in ComfyUI/models/ipadapter.")

SD15_FILES = (("Stable Diffusion 1.5 checkpoint", SD15_HINT), ("IP-Adapter FaceID model", FACEID_HINT))


@dataclass
class NullFacePipe:
    """SD1.5 (UNet, VAE, text encoder, tokenizer) with IP-Adapter FaceID loaded into its UNet.

    Memory: ``offload()`` moves the weights to the CPU (accelerator memory back, RAM kept), ``unload()``
    drops them (RAM and accelerator memory back); ``ready()`` brings them back, from the files when
    unloaded. ``manager`` (optional) places the weights instead of ``ready`` moving them itself: an object
    with ``load(pipe)`` (called by ``ready``) and ``forget(pipe)`` (called by ``unload``), e.g. ComfyUI's
    model management through ``nodes/_memory.py``.
    """

    pipeline: Any                      # the diffusers StableDiffusionPipeline that owns the modules; None when unloaded
    device: torch.device               # where the networks run
    dtype: torch.dtype
    checkpoint: str
    faceid: str
    config_dir: str | None = None
    keep_loaded: bool = True           # False: ``release()`` after every run (the loader node's keep_loaded)
    offloaded: bool = False            # the weights sit on the CPU, not on ``device``
    manager: Any = field(default=None, repr=False)
    _prompt_cache: dict = field(default_factory=dict, repr=False)
    _scheduler_config: dict | None = field(default=None, repr=False)

    @property
    def loaded(self) -> bool:
        return self.pipeline is not None

    @property
    def modules(self):
        """The diffusers pipeline, read back from the files first if it was unloaded."""
        if self.pipeline is None:
            self._reload()
        return self.pipeline

    @property
    def unet(self):
        return self.modules.unet

    @property
    def vae(self):
        return self.modules.vae

    @property
    def scheduler_config(self) -> dict:
        if self._scheduler_config is None:
            self._scheduler_config = dict(self.modules.scheduler.config)
        return dict(self._scheduler_config)

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    def weight_bytes(self) -> int:
        """Bytes of all network weights and buffers (0 when unloaded)."""
        if self.pipeline is None:
            return 0
        seen, total = set(), 0
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            module = getattr(self.pipeline, name, None)
            for t in [] if module is None else [*module.parameters(), *module.buffers()]:
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        return total

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """CLIP text embedding [1, 77, D] of ``prompt`` (cached per prompt)."""
        if prompt not in self._prompt_cache:
            pipe = self.modules
            tok = pipe.tokenizer
            ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids.to(self.device)
            self._prompt_cache[prompt] = pipe.text_encoder(ids)[0].to(self.dtype)
        return self._prompt_cache[prompt]

    def set_ip_adapter_scale(self, scale: float) -> None:
        for proc in self.unet.attn_processors.values():
            if hasattr(proc, "scale") and isinstance(proc.scale, list):
                proc.scale = [float(scale)] * len(proc.scale)

    def move(self, on_device: bool) -> None:
        """Put the weights on ``device`` (True) or on the CPU (False); for ``ready`` and managers."""
        if self.pipeline is None or self.offloaded != on_device:
            return
        self.pipeline.to(self.device if on_device else "cpu")
        self.offloaded = not on_device
        self._prompt_cache.clear()
        if not on_device:
            _empty_cache(self.device)

    def offload(self) -> None:
        """Move every module to the CPU and free accelerator memory (RAM stays in use); ``ready`` moves
        them back. Nothing to do when the pipe runs on the CPU: use ``unload`` to free RAM."""
        if self.device.type != "cpu":
            self.move(False)

    def unload(self) -> None:
        """Drop the weights: their RAM and accelerator memory are freed (once nothing else holds them);
        the next ``ready`` reads them back from ``checkpoint`` and ``faceid``."""
        if self.manager is not None:
            self.manager.forget(self)
        if self.pipeline is None:
            return
        self.pipeline = None
        self.offloaded = False
        self._prompt_cache.clear()
        import gc
        gc.collect()
        _empty_cache(self.device)
        give_back_host_memory()             # RAM back to the system, as ComfyUI's own models give it back
        log.info("NullFace models unloaded; they are read from disk again on next use")

    def release(self) -> None:
        """Give back the memory of the device the pipe runs on (``keep_loaded = False``): an accelerator's
        by moving the weights to the CPU, the RAM of a CPU-only run by unloading them."""
        if self.device.type == "cpu":
            self.unload()
        else:
            self.offload()

    def ready(self, callback=None) -> "NullFacePipe":
        """Make sure the weights are loaded and sit on ``device`` (after ``offload`` or ``unload``).
        ``callback`` (the engine's progress callback) may stop a reload from disk between its parts."""
        if self.pipeline is None:
            self._reload(callback)
        if self.manager is not None:
            self.manager.load(self)
        else:
            self.move(True)
        return self

    def _reload(self, callback=None) -> None:
        log.info("NullFace: reading %s again", " + ".join(Path(p).name for p in (self.checkpoint, self.faceid) if p))
        self._adopt(self._load_again(callback))
        self._prompt_cache.clear()

    def _adopt(self, fresh: "NullFacePipe") -> None:
        """Take the weights of a freshly loaded pipe of the same files (``_reload``)."""
        self.pipeline, self.offloaded = fresh.pipeline, fresh.offloaded

    def _load_again(self, callback=None) -> "NullFacePipe":
        """A freshly loaded pipe of the same files (each model family's loader overrides this)."""
        return load_pipe(self.checkpoint, self.faceid, device=self.device, dtype=self.dtype,
                         config_dir=self.config_dir, offloaded=self.manager is not None, callback=callback)


def load_check(callback):
    """``check()`` for a load: the engine callback's "load" tick (nothing without a callback)."""
    from ..progress import tick
    return lambda: tick(callback, "load")


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def check_model_files(checkpoint: str | os.PathLike | None, faceid: str | os.PathLike | None, *,
                      insightface_root: str | os.PathLike | None | bool = False, pack: str = "buffalo_l",
                      kinds: tuple | None = None) -> None:
    """One ``ModelFileError`` listing every missing model file, each with the folder searched and where to
    get it (``kinds``: what the checkpoint and the FaceID file are, and the hint for each).
    ``insightface_root`` (when not False) also checks ArcFace (``<pack>/w600k_r50.onnx``)."""
    missing = [missing_file(path, what, hint) for path, (what, hint) in zip((checkpoint, faceid), kinds or SD15_FILES)]
    if insightface_root is not False:
        try:
            if insightface_root is None:
                raise ModelFileError(f"no insightface folder was given (it must hold models/{pack})")
            if not (find_buffalo(insightface_root, pack) / "w600k_r50.onnx").is_file():
                raise ModelFileError(f"'{pack}' under '{insightface_root}' has no w600k_r50.onnx (ArcFace)")
        except ModelFileError as exc:
            text = str(exc)
            missing.append(text if BUFFALO_HINT in text else f"{text}. {BUFFALO_HINT}")
    raise_missing(missing)


def check_sd15_checkpoint(path: Path) -> None:
    """Reject single files that are not a 4-channel SD1.x checkpoint, naming what they are."""
    keys = checkpoint_keys(path, SD15_HINT)
    first = keys.get("model.diffusion_model.input_blocks.0.0.weight")
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        raise ModelFileError(f"'{path.name}' is an SDXL checkpoint; NullFace needs Stable Diffusion 1.5. {SD15_HINT}")
    if first is None:
        raise ModelFileError(f"'{path.name}' is not a Stable Diffusion checkpoint (no UNet weights found). "
                             f"{SD15_HINT}")
    if first[1] != 4:
        raise ModelFileError(f"'{path.name}' has a {first[1]}-channel UNet (an inpainting or other variant); "
                             f"NullFace needs the plain 4-channel SD1.5 UNet. {SD15_HINT}")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ModelFileError(f"'{path.name}' is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder); "
                             f"NullFace needs Stable Diffusion 1.5. {SD15_HINT}")


def load_sd15(path: str | os.PathLike, device: torch.device, dtype: torch.dtype,
              config_dir: str | os.PathLike | None = None):
    """A diffusers StableDiffusionPipeline from a diffusers folder or a single .safetensors/.ckpt file.

    Single files use the SD1.5 configs and tokenizer shipped in ``nullface/models/configs/sd15`` (or ``config_dir``),
    so nothing is fetched from the hub.
    """
    from diffusers import StableDiffusionPipeline

    path = require_file(path, "Stable Diffusion 1.5 checkpoint", SD15_HINT)
    common = dict(torch_dtype=dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    if path.is_dir():
        check_model_folder(path, SD15_HINT)                   # a truncated download: named, before the load
        pipe = load_or_explain(
            lambda: StableDiffusionPipeline.from_pretrained(str(path), feature_extractor=None, **common),
            f"the diffusers folder '{path}' could not be loaded as Stable Diffusion 1.5", SD15_HINT)
    else:
        check_checkpoint_file(path, SD15_HINT)
        check_sd15_checkpoint(path)
        cfg = str(config_dir or CONFIG_DIR)
        pipe = load_or_explain(lambda: StableDiffusionPipeline.from_single_file(str(path), config=cfg, **common),
                               f"'{path.name}' could not be loaded as Stable Diffusion 1.5", SD15_HINT)
    unet = pipe.unet
    if unet.config.in_channels != 4:
        raise ModelFileError(f"'{path.name}' has a {unet.config.in_channels}-channel UNet (inpainting?); "
                             f"NullFace needs the plain 4-channel SD1.5 UNet. {SD15_HINT}")
    if getattr(pipe, "text_encoder_2", None) is not None or unet.config.addition_embed_type is not None:
        raise ModelFileError(f"'{path.name}' is not an SD1.5 model (SDXL-style conditioning). {SD15_HINT}")
    return pipe.to(device)


def read_faceid(path: str | os.PathLike, hint: str = FACEID_HINT) -> dict:
    """The IP-Adapter FaceID state dict as {'image_proj': ..., 'ip_adapter': ...}, checked for the right kind."""
    path = require_file(path, "IP-Adapter FaceID model", hint)
    raw = read_state_dict(path)
    if "image_proj" in raw and "ip_adapter" in raw:
        sd = {"image_proj": dict(raw["image_proj"]), "ip_adapter": dict(raw["ip_adapter"])}
    else:
        sd = {"image_proj": {}, "ip_adapter": {}}
        for k, v in raw.items():
            head, _, rest = k.partition(".")
            if head in sd:
                sd[head][rest] = v
    proj = sd["image_proj"]
    if not proj or not sd["ip_adapter"]:
        raise ModelFileError(f"'{path.name}' is not an IP-Adapter file (no image_proj/ip_adapter weights). "
                             f"{hint}")
    if any(k.startswith("perceiver_resampler") for k in proj):
        raise ModelFileError(f"'{path.name}' is IP-Adapter FaceID Plus; plain FaceID is needed. {hint}")
    if "norm.weight" not in proj or "proj.0.weight" not in proj or "proj.2.weight" not in proj:
        raise ModelFileError(f"'{path.name}' is an IP-Adapter of another kind (image projection keys "
                             f"{sorted(proj)[:4]}...), not FaceID. {hint}")
    if proj["proj.0.weight"].shape[1] != 512:
        raise ModelFileError(f"'{path.name}' expects {proj['proj.0.weight'].shape[1]}-d identity embeddings, "
                             f"not ArcFace's 512. {hint}")
    return sd


def attach_faceid(pipe, state_dict: dict, name: str = "faceid", hint: str = FACEID_HINT) -> None:
    """Load FaceID's image projection, attention weights and LoRA into ``pipe`` through diffusers."""
    cross = pipe.unet.config.cross_attention_dim
    width = state_dict["image_proj"]["norm.weight"].shape[0]
    if width != cross:
        raise ModelFileError(f"the FaceID adapter '{name}' is built for cross-attention width {width}, but this "
                             f"UNet has {cross} (SDXL adapter with SD1.5, or the other way round). {hint}")
    has_lora = any("_lora." in k for k in state_dict["ip_adapter"])
    if has_lora:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise MissingDependencyError("IP-Adapter FaceID's LoRA needs the 'peft' package: pip install peft") from None
    pipe.load_ip_adapter(state_dict, subfolder=None, weight_name=None, image_encoder_folder=None)
    if has_lora and "faceid_0" not in getattr(pipe.unet, "peft_config", {}):
        raise ModelFileError(f"the FaceID LoRA in '{name}' was not applied (diffusers/peft versions?); "
                             "the output would not match the method.")


def load_pipe(checkpoint: str | os.PathLike, faceid: str | os.PathLike, *, device: str | torch.device = "auto",
              dtype: str | torch.dtype | None = "auto", config_dir: str | os.PathLike | None = None,
              offloaded: bool = False, callback=None) -> NullFacePipe:
    """SD1.5 + IP-Adapter FaceID, ready for inversion and sampling.

    ``offloaded``: build on the CPU and leave the weights there (``ready()`` or a memory manager moves them
    to ``device`` when they are needed). ``callback`` (the engine's progress callback) is called between
    the parts of the load, where a Cancel can stop it.
    """
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    check_model_files(checkpoint, faceid)      # every missing file in one message
    faceid_sd = read_faceid(faceid)            # fail fast on a wrong adapter before the big load
    where = torch.device("cpu") if offloaded else dev
    check = load_check(callback)
    with expected_messages_silenced(check):    # diffusers' expected warnings and loading bars (nullface/quiet.py)
        pipe = load_sd15(checkpoint, where, dt, config_dir)
        check()
        attach_faceid(pipe, faceid_sd, Path(faceid).name)
        check()
        pipe.to(where, dt)
    pipe.set_progress_bar_config(disable=True)
    log.info("NullFace pipeline: %s + %s on %s (%s)", Path(checkpoint).name, Path(faceid).name, dev, dt)
    return NullFacePipe(pipeline=pipe, device=dev, dtype=dt, checkpoint=str(checkpoint), faceid=str(faceid),
                        config_dir=None if config_dir is None else str(config_dir),
                        offloaded=offloaded and where != dev)
