"""Cost of one face with the inpainting method (papers/000) on the real architectures with random weights.

SD1.5 inpainting (9-channel UNet from ``nullface/models/configs/sd15_inpainting``, VAE, CLIP-L text encoder) and
FaRL ViT-B/16 (CLIP's image tower: width 768, 12 layers, 224 px, patch 16) are built with random weights,
which cost exactly what the real ones cost. Runs one anonymization and prints, as its last line, a JSON
object: ``unet_evals``, ``guidance_backward`` (VAE-decoder + FaRL forward/backward passes), seconds per
phase and ``peak_rss_mb``.

    python benchmarks/inpaint_cost.py --size 256 --device cpu
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.models.devices import pick_device, pick_dtype  # noqa: E402
from nullface.models.farl import FarlFeatures  # noqa: E402
from nullface.methods.inpaint.settings import InpaintSettings  # noqa: E402
from nullface.methods.inpaint.pipeline import INPAINT_CONFIG_DIR, InpaintPipe, anonymize_inpaint  # noqa: E402
from nullface.models.sd15 import CONFIG_DIR  # noqa: E402


def inpaint_random(device, dtype):
    """SD1.5 inpainting built from the shipped configs with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(INPAINT_CONFIG_DIR / "unet")))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(CONFIG_DIR / "vae")))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(CONFIG_DIR / "text_encoder")))
    tok = CLIPTokenizer.from_pretrained(str(CONFIG_DIR / "tokenizer"))
    sched = DDIMScheduler.from_pretrained(str(CONFIG_DIR / "scheduler"))
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device, dtype)


def farl_random(device):
    """FaRL ViT-B/16's architecture (CLIP image tower) with random weights, in float32 as the loader."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    torch.manual_seed(1)
    cfg = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    return FarlFeatures(CLIPVisionModel(cfg).to(device, torch.float32), "random FaRL ViT-B/16")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="face crop size in pixels (512 = the paper)")
    ap.add_argument("--steps", type=int, default=InpaintSettings().steps, help="DDIM steps S (authors: 45)")
    ap.add_argument("--guidance-scale", type=float, default=InpaintSettings().guidance_scale,
                    help="ρ (0 = plain SD inpainting: no decoder/FaRL backward passes)")
    ap.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    ap.add_argument("--batch", type=int, default=1, help="faces per call")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    t0 = time.perf_counter()
    sd = inpaint_random(device, dtype)
    pipe = InpaintPipe(pipeline=sd, device=device, dtype=dtype, checkpoint="random", faceid="",
                       features=farl_random(device))
    load = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    faces = torch.rand(args.batch, args.size, args.size, 3, generator=g)
    masks = torch.zeros(args.batch, args.size, args.size)
    s4 = args.size // 4
    masks[:, s4:3 * s4, s4:3 * s4] = 1
    target = torch.rand(1, args.size, args.size, 3, generator=g)
    settings = InpaintSettings(steps=args.steps, guidance_scale=args.guidance_scale)
    stats, step_times, last = {}, [], [time.perf_counter()]

    def callback(info):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    t1 = time.perf_counter()
    anonymize_inpaint(pipe, faces, masks, target, settings, stats=stats, callback=callback)
    total = time.perf_counter() - t1
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = {"method": "inpaint (papers/000)", "size": args.size, "steps": settings.steps,
              "guidance_scale": settings.guidance_scale, "batch": args.batch, "device": str(device),
              "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
              "unet_evals": stats["unet_evals"], "guidance_backward": stats["guidance_backward"],
              "unet_evals_per_face": stats["unet_evals"] / args.batch,
              "seconds": {"load": round(load, 2), "anonymize": round(total, 2),
                          "per_step_mean": round(sum(step_times) / max(1, len(step_times)), 3)},
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
