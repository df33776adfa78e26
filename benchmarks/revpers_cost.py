"""Cost of one Reverse Personalization anonymization on the real SDXL architecture with random weights.

Random weights cost exactly what the real ones cost (same shapes, same kernels), so this measures the engine
without downloading anything: SDXL base's UNet (2.57 B parameters), VAE and both text encoders from the
shipped configs, and an IP-Adapter FaceID SDXL adapter with the real shapes (projection 512 -> 4 x 2048,
k/v_ip on every cross-attention, LoRA rank 128 on every attention). The last line printed is one JSON object:
``unet_evals`` (a batch of k rows counts k) and ``seconds`` per phase for the steps run, and the evaluations
and extrapolated seconds at the authors' defaults (100 steps).

    python benchmarks/revpers_cost.py --size 512 --steps 3 --device cpu --dtype bf16
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.methods.revpers import pipeline as R  # noqa: E402
from nullface.methods.revpers.settings import ReversePersonalizationSettings as RS  # noqa: E402
from nullface.models.devices import pick_device, pick_dtype  # noqa: E402
from nullface.models.sd15 import attach_faceid  # noqa: E402
from nullface.models.sdxl import CONFIG_DIR, FACEID_SDXL_HINT, SDXLPipe, _tokenizers  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from anonymize_cost import faceid_random  # noqa: E402  (same shapes rule: 512 -> 4 x cross, LoRA rank 128)


def _randomize(module: torch.nn.Module, device, dtype, seed: int) -> torch.nn.Module:
    """Allocate a meta-built module on ``device`` and fill it with random weights (norms at 1/0)."""
    module = module.to_empty(device=device).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or "ln_" in name or "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(dtype))
        for name, b in module.named_buffers():
            if "position_ids" in name:
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return module


def sdxl_random(device, dtype):
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(CONFIG_DIR / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(CONFIG_DIR / "vae")))
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(str(CONFIG_DIR / "text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(CONFIG_DIR / "text_encoder_2")))
    parts = [_randomize(m, device, dtype, i) for i, m in enumerate((unet, vae, te1, te2))]
    tok, tok2 = _tokenizers()
    sched = EulerDiscreteScheduler.from_pretrained(str(CONFIG_DIR / "scheduler"))
    return StableDiffusionXLPipeline(unet=parts[0], vae=parts[1], text_encoder=parts[2], text_encoder_2=parts[3],
                                     tokenizer=tok, tokenizer_2=tok2, scheduler=sched)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="face crop size in pixels (1024 = the authors')")
    ap.add_argument("--steps", type=int, default=100, help="DPM-Solver++ steps (authors: 100)")
    ap.add_argument("--prompt", default="", help="attribute prompt")
    ap.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    seconds = {}

    def mark(phase: str, start: float) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[phase] = time.perf_counter() - start
        print(f"{phase}: {seconds[phase]:.1f} s", file=sys.stderr, flush=True)   # progress as phases end

    t = time.perf_counter()
    sd = sdxl_random(device, dtype)
    base_params = sum(p.numel() for p in sd.unet.parameters())
    attach_faceid(sd, faceid_random(sd.unet), "random FaceID SDXL", FACEID_SDXL_HINT)
    sd.to(device, dtype)
    pipe = SDXLPipe(pipeline=sd, device=device, dtype=dtype, checkpoint="random", faceid="random")
    mark("load", t)

    counter = {"evals": 0}
    sd.unet.register_forward_pre_hook(lambda m, a: counter.__setitem__("evals", counter["evals"] + a[0].shape[0]))
    faces = np.random.RandomState(0).randint(0, 256, (1, args.size, args.size, 3)).astype(np.uint8)
    s = RS(steps=args.steps, prompt=args.prompt)
    e = np.random.RandomState(1).standard_normal((1, 512)).astype(np.float32)
    e /= np.linalg.norm(e)

    with torch.no_grad():
        t = time.perf_counter()
        x0 = R.encode(pipe, faces)
        pipe.encode_prompt("")
        pipe.encode_prompt(None)
        mark("encode", t)

        t = time.perf_counter()
        inv = R.invert_latents(pipe, x0, s)
        mark("invert", t)
        inversion_evals = counter["evals"]

        t = time.perf_counter()
        latents, _ = R.sample_latents(pipe, inv, R.identity_vectors([e[0]], s.id_scale))
        mark("sample", t)

        t = time.perf_counter()
        R.decode(pipe, latents)
        mark("decode", t)

    evals = counter["evals"]
    per_eval = (seconds["invert"] + seconds["sample"]) / max(1, evals)
    defaults = R.unet_evals_per_face(RS(prompt=args.prompt))
    result = {
        "size": args.size, "steps": args.steps, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "unet_params": base_params, "unet_params_with_faceid": sum(p.numel() for p in sd.unet.parameters()),
        "unet_evals": evals, "unet_evals_inversion": inversion_evals,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "seconds_per_unet_eval": round(per_eval, 3),
        "unet_evals_at_defaults": defaults,
        "seconds_at_defaults_estimate": round(defaults["total"] * per_eval + seconds["encode"] + seconds["decode"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
