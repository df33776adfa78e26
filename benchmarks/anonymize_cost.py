"""Cost of one NullFace anonymization on the real SD1.5 architecture with random weights.

Random weights cost exactly what the real ones cost (same shapes, same kernels), so this measures
the engine without downloading anything. The last line printed is one JSON object.

    python benchmarks/anonymize_cost.py --size 256 --device cpu
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.models.sd15 import CONFIG_DIR, NullFacePipe, attach_faceid  # noqa: E402
from nullface.models.devices import pick_device, pick_dtype  # noqa: E402
from nullface.methods.nullface.denoiser import PipeDenoiser  # noqa: E402
from nullface.faces.identity import ArcFace, negate_identities  # noqa: E402
from nullface.methods.nullface.pipeline import decode, encode, invert_latents, sample_latents  # noqa: E402
from nullface.methods.nullface.settings import NullFaceSettings  # noqa: E402


def sd15_random(device, dtype):
    """SD1.5 (UNet, VAE, CLIP-L text encoder) built from the shipped configs with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(CONFIG_DIR / "unet")))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(CONFIG_DIR / "vae")))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(CONFIG_DIR / "text_encoder")))
    tok = CLIPTokenizer.from_pretrained(str(CONFIG_DIR / "tokenizer"))
    sched = DDIMScheduler.from_pretrained(str(CONFIG_DIR / "scheduler"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device, dtype)


def faceid_random(unet, rank: int = 128) -> dict:
    """ip-adapter-faceid_sd15's shapes: projection 512->1024->4x768 + LayerNorm, k/v_ip, LoRA rank 128."""
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02  # noqa: E731
    cross = unet.config.cross_attention_dim
    proj = {"proj.0.weight": r(1024, 512), "proj.0.bias": r(1024), "proj.2.weight": r(4 * cross, 1024),
            "proj.2.bias": r(4 * cross), "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    ip, mods = {}, dict(unet.named_modules())
    for i, name in enumerate(unet.attn_processors):
        attn = mods[name[: -len(".processor")]]
        h, c = attn.to_q.in_features, attn.to_k.in_features
        for p, (fi, fo) in {"to_q": (h, h), "to_k": (c, h), "to_v": (c, h), "to_out": (h, h)}.items():
            ip[f"{i}.{p}_lora.down.weight"] = r(rank, fi)
            ip[f"{i}.{p}_lora.up.weight"] = torch.zeros(fo, rank)
        if name.endswith("attn2.processor"):
            ip[f"{i}.to_k_ip.weight"] = r(h, cross)
            ip[f"{i}.to_v_ip.weight"] = r(h, cross)
    return {"image_proj": proj, "ip_adapter": ip}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="face crop size in pixels (512 = the paper)")
    ap.add_argument("--steps", type=int, default=100, help="T")
    ap.add_argument("--t-skip", type=int, default=70, help="T_skip")
    ap.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    ap.add_argument("--batch", type=int, default=1, help="faces per call")
    ap.add_argument("--inversion-batch", type=int, default=0,
                    help="UNet evaluations per inversion call (0 = auto: 1 on the CPU, 8 elsewhere)")
    ap.add_argument("--reference-work", action="store_true",
                    help="spend the reference implementation's work instead (all T inversion steps one by one, "
                         "cond and null as separate batch-1 calls) to compare costs")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    seconds = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    sd = sd15_random(device, dtype)
    attach_faceid(sd, faceid_random(sd.unet), "random FaceID")
    sd.to(device, dtype)
    pipe = NullFacePipe(pipeline=sd, device=device, dtype=dtype, checkpoint="random", faceid="random")
    sync()
    seconds["load"] = time.perf_counter() - t

    counter = {"evals": 0}
    sd.unet.register_forward_pre_hook(lambda m, a: counter.__setitem__("evals", counter["evals"] + a[0].shape[0]))
    rng = np.random.RandomState(0)
    faces = rng.randint(0, 256, (args.batch, args.size, args.size, 3)).astype(np.uint8)
    s = NullFaceSettings(steps=args.steps, t_skip=args.t_skip, inversion_batch=args.inversion_batch)

    with torch.no_grad():
        t = time.perf_counter()
        x0 = encode(pipe, faces)
        sync()
        seconds["encode"] = time.perf_counter() - t

        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:       # ArcFace signature model (the real one is not here)
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import save_arcface_onnx
            arc = ArcFace(save_arcface_onnx(Path(tmp) / "w600k_r50.onnx"))
            kps = np.array([[0.37, 0.46], [0.63, 0.46], [0.5, 0.64], [0.4, 0.8], [0.6, 0.8]]) * args.size
            identity = negate_identities([arc.embed(f, kps) for f in faces], s.lambda_id)
        seconds["embed"] = time.perf_counter() - t

        if args.reference_work:
            inv = invert_latents(pipe, x0, s)            # untimed: only its start latent and schedule are used
            counter["evals"] = 0
            t = time.perf_counter()
            den = PipeDenoiser(pipe)                     # the reference's inversion: all T steps, one by one
            for k in range(s.steps):
                den.null(x0, inv.schedule.timesteps[k].repeat(x0.shape[0]))
        else:
            t = time.perf_counter()
            inv = invert_latents(pipe, x0, s)
        sync()
        seconds["invert"] = time.perf_counter() - t
        inversion_evals = counter["evals"]

        t = time.perf_counter()
        if args.reference_work:                          # cond and null as two separate calls per step
            den = PipeDenoiser(pipe, identity.vectors)
            for k in range(s.t_skip, s.steps):
                tk = inv.schedule.timesteps[k].repeat(x0.shape[0])
                den.cond_scale = den.null_scale + 1e-9    # forces two calls
                den(inv.x_start, tk)
            latents = inv.x_start
        else:
            latents = sample_latents(pipe, inv, identity, s)
        sync()
        seconds["sample"] = time.perf_counter() - t

        t = time.perf_counter()
        decode(pipe, latents)
        sync()
        seconds["decode"] = time.perf_counter() - t

    result = {
        "size": args.size, "steps": args.steps, "t_skip": args.t_skip, "batch": args.batch,
        "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "unet_evals": counter["evals"], "unet_evals_inversion": inversion_evals,
        "unet_evals_reference": args.batch * (args.steps + 2 * (args.steps - args.t_skip)),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "seconds_total": round(sum(seconds.values()), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
