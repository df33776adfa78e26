"""RSS of a process before and after the NullFace pipe is unloaded (what ComfyUI's POST /free does on a
CPU-only run), with and without giving the C heap back (glibc's malloc_trim).

    python benchmarks/memory_free.py build --out /tmp/sd15-random            # random SD1.5 + FaceID on disk
    python benchmarks/memory_free.py measure --out /tmp/sd15-random          # one JSON line of figures

``build`` writes a diffusers folder of SD1.5 with random weights at full size (``--width 320``; a smaller
``--width``, e.g. 160, scales every UNet channel count down) and a FaceID .bin of the real shapes, both in
fp16 (as the released files); ``measure`` loads them in fp32 on the CPU as ComfyUI's loader does, runs
one 64x64 inversion, unloads without trimming, then trims, printing the RSS at each point (Linux only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(out: Path, width: int) -> None:
    from anonymize_cost import faceid_random, sd15_random
    from nullface.models.sd15 import CONFIG_DIR
    from diffusers import UNet2DConditionModel
    pipe = sd15_random(torch.device("cpu"), torch.float32)
    if width != 320:
        cfg = dict(UNet2DConditionModel.load_config(str(CONFIG_DIR / "unet")))
        cfg["block_out_channels"] = [width * m for m in (1, 2, 4, 4)]
        pipe.unet = UNet2DConditionModel.from_config(cfg)
        pipe.register_modules(unet=pipe.unet)
    pipe.to(torch.float16).save_pretrained(str(out / "sd15"), safe_serialization=True)
    sd = faceid_random(pipe.unet)
    half = {k: {n: t.half() for n, t in v.items()} for k, v in sd.items()}
    torch.save(half, str(out / "ip-adapter-faceid_sd15.bin"))
    print(json.dumps({"built": str(out), "unet_params_M": round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6)}))


def measure(out: Path) -> dict:
    import gc

    import nullface.models.sd15 as sd15
    from nullface.methods.nullface.pipeline import invert_images
    from nullface.methods.nullface.settings import NullFaceSettings
    from nullface.models.devices import give_back_host_memory
    figures = {"start_mb": rss_mb()}
    pipe = sd15.load_pipe(out / "sd15", out / "ip-adapter-faceid_sd15.bin", device="cpu", dtype="fp32")
    figures["loaded_mb"] = rss_mb()
    figures["weights_mb"] = pipe.weight_bytes() / 2 ** 20
    invert_images(pipe, torch.rand(1, 64, 64, 3), NullFaceSettings(steps=10, t_skip=8))
    figures["after_run_mb"] = rss_mb()
    real = sd15.give_back_host_memory
    sd15.give_back_host_memory = lambda: False           # the unload as before: no trim
    pipe.unload()
    sd15.give_back_host_memory = real
    gc.collect()
    figures["unloaded_untrimmed_mb"] = rss_mb()
    figures["trimmed"] = give_back_host_memory()
    figures["unloaded_trimmed_mb"] = rss_mb()
    return {k: round(v) if isinstance(v, float) else v for k, v in figures.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("build", "measure"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=320, help="UNet base channels (320 = SD1.5)")
    a = p.parse_args(argv)
    if a.what == "build":
        build(a.out, a.width)
    else:
        print(json.dumps(measure(a.out)))


if __name__ == "__main__":
    main()
