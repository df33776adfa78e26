"""The native path (ComfyUI's own models) against the engine (diffusers), on the same random full-size weights.

Needs a real ComfyUI (not on the package registries): this is a hand check, not a CI test.

    # 1. full-size random SD1.5 (single-file LDM layout, fp16) + FaceID (real keys and shapes, LoRA rank 128),
    #    an input face, an identity and a mask, and a small probe node pack, under BASE (a ComfyUI base dir)
    python benchmarks/native_vs_engine.py build --base /work/comfy-base-native
    # 2. the engine on them (CPU, float32)
    python benchmarks/native_vs_engine.py engine --base ... --size 256 --steps 100 --t-skip 70
    # 3. the same in a running ComfyUI (python main.py --cpu --base-directory BASE --port 8189), through
    #    CheckpointLoaderSimple -> NullFace Apply FaceID -> NullFace Inversion -> SamplerCustomAdvanced with the
    #    NullFace Guider -> VAEDecode; then POST /free and list ComfyUI's loaded models before and after
    python benchmarks/native_vs_engine.py native --base ... --port 8189 --size 256 --steps 100 --t-skip 70
    # 4. the figures (max |Δ| of x0, the start latent, the final latents and the decoded images), one JSON line
    python benchmarks/native_vs_engine.py compare --base ... --size 256 --steps 100 --t-skip 70

The probe pack (written by ``build`` into BASE/custom_nodes/nullface_probe) only feeds the stored identity
and mask into the graph, saves float tensors, and lists ComfyUI's loaded models: it is test scaffolding,
not part of NullFace.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CKPT = "sd15-random-fp16.safetensors"
FACEID = "ip-adapter-faceid_sd15.bin"
IMAGE = "nullface_face.png"
IMAGE2 = "nullface_face_mirrored.png"

PROBE = r'''
"""Test scaffolding for benchmarks/native_vs_engine.py (not part of NullFace)."""
import json, os
import numpy as np
import torch
import folder_paths

DATA = os.path.join(os.path.dirname(folder_paths.models_dir), "nullface_check")


class _Identity:                        # what NULLFACE_IDENTITY consumers read: .vectors [B, 512]
    def __init__(self, vectors):
        self.vectors = vectors

    def __len__(self):
        return len(self.vectors)


class ProbeIdentity:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "c_id.npy"})}}
    RETURN_TYPES = ("NULLFACE_IDENTITY",)
    FUNCTION = "run"
    CATEGORY = "_probe"

    def run(self, name):
        return (_Identity(np.load(os.path.join(DATA, name)).astype(np.float32)),)


class ProbeMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "mask.npy"})}}
    RETURN_TYPES = ("MASK",)
    FUNCTION = "run"
    CATEGORY = "_probe"

    def run(self, name):
        return (torch.from_numpy(np.load(os.path.join(DATA, name)).astype(np.float32)),)


class ProbeSave:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "x"})},
                "optional": {"latent": ("LATENT",), "image": ("IMAGE",), "sigmas": ("SIGMAS",)}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "_probe"

    def run(self, name, latent=None, image=None, sigmas=None):
        out = {}
        if latent is not None:
            out["latent"] = latent["samples"].float().cpu()
        if image is not None:
            out["image"] = image.float().cpu()
        if sigmas is not None:
            out["sigmas"] = sigmas.float().cpu()
        torch.save(out, os.path.join(DATA, name + ".pt"))
        return {}


class ProbeLoaded:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "loaded"}), "nonce": ("INT", {"default": 0})},
                "optional": {"after": ("LATENT",)}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "_probe"

    @classmethod
    def IS_CHANGED(cls, **kw):
        return float("nan")

    def run(self, name, nonce, after=None):
        import comfy.model_management as mm
        rows = []
        for lm in mm.current_loaded_models:
            m = lm.model
            replace = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
            rows.append({"class": type(m.model).__name__ if m is not None else None,
                         "nullface_faceid": any(getattr(p, "nullface_faceid", False) for p in replace.values()),
                         "lora_patches": len(getattr(m, "patches", {}) or {}),
                         "loaded_mb": round(lm.model_loaded_memory() / 2**20, 1) if m is not None else 0})
        with open(os.path.join(DATA, name + ".json"), "w") as f:
            json.dump(rows, f)
        return {}


NODE_CLASS_MAPPINGS = {"ProbeIdentity": ProbeIdentity, "ProbeMask": ProbeMask, "ProbeSave": ProbeSave,
                       "ProbeLoaded": ProbeLoaded}
'''


def faceid_full(unet, seed: int = 3, rank: int = 128) -> dict:
    """ip-adapter-faceid_sd15's keys and shapes (projection 512->1024->4x768 + LayerNorm, k/v_ip, LoRA rank 128),
    random, with a LoRA that changes the weights (non-zero up matrices)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=0.02: torch.randn(*s, generator=g) * scale  # noqa: E731
    cross = unet.config.cross_attention_dim
    proj = {"proj.0.weight": r(1024, 512), "proj.0.bias": r(1024), "proj.2.weight": r(4 * cross, 1024, scale=0.05),
            "proj.2.bias": r(4 * cross), "norm.weight": 1 + r(cross, scale=0.1), "norm.bias": r(cross, scale=0.1)}
    ip, mods = {}, dict(unet.named_modules())
    for i, name in enumerate(unet.attn_processors):
        attn = mods[name[: -len(".processor")]]
        h, c = attn.to_q.in_features, attn.to_k.in_features
        for p, (fi, fo) in {"to_q": (h, h), "to_k": (c, h), "to_v": (c, h), "to_out": (h, h)}.items():
            ip[f"{i}.{p}_lora.down.weight"] = r(rank, fi, scale=0.02).half()
            ip[f"{i}.{p}_lora.up.weight"] = r(fo, rank, scale=0.02).half()
        if name.endswith("attn2.processor"):
            ip[f"{i}.to_k_ip.weight"] = r(h, cross, scale=0.05).half()
            ip[f"{i}.to_v_ip.weight"] = r(h, cross, scale=0.05).half()
    return {"image_proj": {k: v.half() for k, v in proj.items()}, "ip_adapter": ip}


def face_image(size: int) -> np.ndarray:
    """scikit-image's astronaut, her face cropped square and resized (a real face, from an installed package)."""
    from PIL import Image
    from skimage import data
    img = Image.fromarray(data.astronaut()).crop((140, 20, 300, 180)).resize((size, size), Image.LANCZOS)
    return np.asarray(img.convert("RGB"))


def build(base: Path, size: int) -> None:
    from benchmarks.anonymize_cost import sd15_random
    from tests.ldm_checkpoint import ldm_state_dict, write_checkpoint
    ckpt = base / "models" / "checkpoints" / CKPT
    faceid = base / "models" / "ipadapter" / FACEID
    check = base / "nullface_check"
    check.mkdir(parents=True, exist_ok=True)
    if not ckpt.is_file() or not faceid.is_file():
        t = time.time()
        pipe = sd15_random("cpu", torch.float16)
        folder = check / "diffusers-fp16"
        pipe.save_pretrained(str(folder), safe_serialization=True)
        faceid.parent.mkdir(parents=True, exist_ok=True)
        torch.save(faceid_full(pipe.unet), faceid)
        del pipe
        write_checkpoint(ldm_state_dict(folder), ckpt)
        print(f"built {ckpt} and {faceid} in {time.time() - t:.0f} s")
    from PIL import Image
    (base / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(face_image(size)).save(base / "input" / IMAGE)
    Image.fromarray(face_image(size)[:, ::-1]).save(base / "input" / IMAGE2)        # a second face for batches
    rng = np.random.default_rng(0)
    e = rng.standard_normal((2, 512)).astype(np.float32)
    c_id = -e / np.linalg.norm(e, axis=1, keepdims=True)                              # c_id = -λ_id e, λ_id 1
    np.save(check / "c_id.npy", c_id[:1])
    np.save(check / "c_id2.npy", c_id)
    mask = np.ones((size, size), np.float32)                                          # keep a band (eyes)
    mask[size * 3 // 8: size // 2, size // 5: size * 4 // 5] = 0.0
    np.save(check / "mask.npy", mask[None])
    probe = base / "custom_nodes" / "nullface_probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "__init__.py").write_text(PROBE)
    print(json.dumps({"checkpoint": str(ckpt), "faceid": str(faceid), "image": str(base / "input" / IMAGE)}))


def tag(args) -> str:
    return f"{args.size}_{args.steps}_{args.t_skip}" + (f"_b{args.batch}" if args.batch > 1 else "")


def run_engine(args) -> None:
    from PIL import Image
    from nullface.faces.identity import IdentityCondition
    from nullface.models.sd15 import load_pipe
    from nullface.methods.nullface.native import mask_delay_steps
    from nullface.methods.nullface.pipeline import decode, encode, invert_latents, sample_latents
    from nullface.methods.nullface.settings import NullFaceSettings
    base, check = args.base, args.base / "nullface_check"
    t = time.time()
    pipe = load_pipe(base / "models" / "checkpoints" / CKPT, base / "models" / "ipadapter" / FACEID,
                     device="cpu", dtype="fp32")
    delay = mask_delay_steps(args.mask_delay, args.steps - args.t_skip)
    # settings take the delay as a fraction of the running steps (newer) or as a step count (older)
    fraction = isinstance(NullFaceSettings().mask_delay, float)
    s = NullFaceSettings(steps=args.steps, t_skip=args.t_skip, lambda_cfg=args.lambda_cfg, seed=0,
                         mask_delay=args.mask_delay if fraction else delay)
    names = [IMAGE, IMAGE2][:args.batch]
    image = np.stack([np.asarray(Image.open(base / "input" / n).convert("RGB")) for n in names])
    with torch.no_grad():
        x0 = encode(pipe, image)
        inv = invert_latents(pipe, x0, s)
        c_id = np.load(check / ("c_id2.npy" if args.batch > 1 else "c_id.npy"))
        mask = torch.from_numpy(np.load(check / "mask.npy"))
        lat = sample_latents(pipe, inv, IdentityCondition(c_id), s, masks=mask)
        img = decode(pipe, lat)
    torch.save({"x0": x0, "x_start": inv.x_start, "latent": lat, "image": img, "mask_delay_steps": delay},
               check / f"engine_{tag(args)}.pt")
    print(json.dumps({"engine_seconds": round(time.time() - t, 1), "mask_delay_steps": delay}))


def api_prompt(args) -> dict:
    """The native graph in the API format (the example workflow's shape, with the probe's identity and mask)."""
    n = {}

    def add(i, cls, **inputs):
        n[str(i)] = {"class_type": cls, "inputs": inputs}
        return [str(i), 0]

    add(1, "CheckpointLoaderSimple", ckpt_name=CKPT)
    add(2, "ProbeIdentity", name="c_id2.npy" if args.batch > 1 else "c_id.npy")
    add(3, "NullFaceApplyFaceID", model=["1", 0], faceid=FACEID, identity=["2", 0], ip_adapter_scale=1.0,
        lora_strength=1.0)
    add(4, "CLIPTextEncode", text="", clip=["1", 1])
    add(5, "LoadImage", image=IMAGE)
    pixels = ["5", 0]
    if args.batch > 1:                                    # two faces, each with its own identity
        add(16, "LoadImage", image=IMAGE2)
        pixels = add(17, "ImageBatch", image1=["5", 0], image2=["16", 0])
    add(6, "VAEEncode", pixels=pixels, vae=["1", 2])
    add(7, "NullFaceNativeInversion", model=["3", 0], negative=["4", 0], latent=["6", 0], steps=args.steps,
        t_skip=args.t_skip, seed=0, inversion_batch=8)
    add(8, "ProbeMask", name="mask.npy")
    add(9, "NullFaceGuider", model=["3", 0], positive=["4", 0], negative=["4", 0], lambda_cfg=args.lambda_cfg,
        mask_delay=args.mask_delay, soft_mask=False, mask=["8", 0])
    add(10, "DisableNoise")
    n["11"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["10", 0], "guider": ["9", 0], "sampler": ["7", 2], "sigmas": ["7", 1], "latent_image": ["7", 0]}}
    add(12, "VAEDecode", samples=["11", 0], vae=["1", 2])
    t = tag(args)
    add(13, "ProbeSave", name=f"native_{t}_final", latent=["11", 0], image=["12", 0], sigmas=["7", 1])
    add(14, "ProbeSave", name=f"native_{t}_start", latent=["7", 0])
    add(15, "ProbeSave", name=f"native_{t}_x0", latent=["6", 0])
    return n


def post(port: int, path: str, data: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if data is not None else "GET",
                                 data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body.strip().startswith(b"{") else None


def wait_prompt(port: int, prompt_id: str, limit: float) -> dict:
    t = time.time()
    while time.time() - t < limit:
        hist = post(port, f"/history/{prompt_id}")
        if hist and prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
            return hist[prompt_id]
        time.sleep(2)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {limit} s")


def run_native(args) -> None:
    check = args.base / "nullface_check"
    t = time.time()
    pid = post(args.port, "/prompt", {"prompt": api_prompt(args)})["prompt_id"]
    hist = wait_prompt(args.port, pid, args.limit)
    status = hist.get("status", {})
    if status.get("status_str") != "success":
        print(json.dumps(status.get("messages"))[-3000:])
        raise SystemExit("the native prompt failed")
    seconds = round(time.time() - t, 1)

    def probe(name, nonce):
        # the same graph (cached: nothing re-runs, and ComfyUI keeps its outputs) + a probe after the sampler
        p = api_prompt(args)
        p["99"] = {"class_type": "ProbeLoaded", "inputs": {"name": name, "nonce": nonce, "after": ["11", 0]}}
        h = wait_prompt(args.port, post(args.port, "/prompt", {"prompt": p})["prompt_id"], 300)
        if h.get("status", {}).get("status_str") != "success":
            raise SystemExit(f"probe failed: {json.dumps(h.get('status'))[-2000:]}")
        return json.loads((check / f"{name}.json").read_text())

    before = probe("loaded_before_free", int(t))
    post(args.port, "/free", {"unload_models": True})
    time.sleep(3)
    after = probe("loaded_after_free", int(t) + 1)
    # fail closed: random noise on top of the replayed noise maps is refused with one clear line
    p = api_prompt(args)
    p["10"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    h = wait_prompt(args.port, post(args.port, "/prompt", {"prompt": p})["prompt_id"], 600)
    refused = [m[1].get("exception_message") for m in h.get("status", {}).get("messages", [])
               if m[0] == "execution_error"]
    print(json.dumps({"native_seconds": seconds, "loaded_before_free": before, "loaded_after_free": after,
                      "random_noise_refused": refused}))


def compare(args) -> None:
    check = args.base / "nullface_check"
    t = tag(args)
    eng = torch.load(check / f"engine_{t}.pt")
    fin = torch.load(check / f"native_{t}_final.pt")
    start = torch.load(check / f"native_{t}_start.pt")["latent"]
    x0 = torch.load(check / f"native_{t}_x0.pt")["latent"] * 0.18215
    sig = fin["sigmas"]
    x_start = start * 0.18215 / torch.sqrt(1 + sig[0] ** 2)               # ComfyUI's LATENT -> DDPM latent
    lat_native, lat_engine = fin["latent"], eng["latent"] / 0.18215       # both in ComfyUI's LATENT units
    img_native, img_engine = fin["image"], eng["image"]

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())
    out = {"size": args.size, "steps": args.steps, "t_skip": args.t_skip,
           "max_abs_x0": float((x0 - eng["x0"]).abs().max()),
           "max_abs_x_start": float((x_start - eng["x_start"]).abs().max()),
           "max_abs_final_latent": float((lat_native - lat_engine).abs().max()),
           "rel_final_latent": rel(lat_native, lat_engine),
           "max_abs_image": float((img_native - img_engine).abs().max()),
           "mean_abs_image": float((img_native - img_engine).abs().mean()),
           "max_abs_image_8bit": int(((img_native * 255).round() - (img_engine * 255).round()).abs().max()),
           "latent_scale": float(lat_engine.abs().max()),
           "sigmas_first_last": [float(sig[0]), float(sig[-1])]}
    print(json.dumps(out))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "engine", "native", "compare"])
    ap.add_argument("--base", type=Path, required=True, help="ComfyUI base directory (models/, input/, custom_nodes/)")
    ap.add_argument("--port", type=int, default=8189)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--t-skip", type=int, default=70)
    ap.add_argument("--batch", type=int, default=1, choices=[1, 2], help="faces per run (2: the face and its mirror)")
    ap.add_argument("--lambda-cfg", type=float, default=10.0)
    ap.add_argument("--mask-delay", type=float, default=1 / 3)
    ap.add_argument("--limit", type=float, default=1800, help="seconds to wait for ComfyUI")
    args = ap.parse_args(argv)
    if args.what == "build":
        build(args.base, args.size)
    elif args.what == "engine":
        run_engine(args)
    elif args.what == "native":
        run_native(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
