"""Throughput of the engine on batches of 512² faces, random weights at the real size (CPU or CUDA).

For each batch size (faces per UNet call) one batch of random face crops runs through the method's crop path
(VAE encode, inversion, sampling, VAE decode; the path the photo and multi-file drivers call) and prints
seconds per face, faces per second, UNet evaluations per face, peak memory and the share of the time spent
inside the UNet (the rest is overhead: VAE, schedule math, copies). Random weights cost exactly what the real
ones cost (same shapes, same kernels). The last line printed is one JSON object.

    python benchmarks/throughput.py                                         # CUDA: fp16, 512 px, defaults
    python benchmarks/throughput.py --device cpu --size 128 --steps 6 --t-skip 3 --batches 1,2   # a short CPU run

``--steps/--t-skip`` shorten the run; ``seconds_per_face_at_defaults`` then extrapolates to the paper's
defaults from the measured time per UNet evaluation and the per-face overhead (marked as an estimate).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nullface.models.devices import compile_unet, pick_device, pick_dtype  # noqa: E402
from nullface.models.sd15 import NullFacePipe, attach_faceid  # noqa: E402


class PeakMemory:
    """Peak memory while in the block: CUDA's allocator peak, or the process RSS sampled every 5 ms on the CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        import psutil
        proc = psutil.Process()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss)
                time.sleep(0.005)
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()


class UNetClock:
    """Counts UNet sample-evaluations and the seconds spent inside the UNet (forward hooks; CUDA synchronized)."""

    def __init__(self, unet, device: torch.device):
        self.device, self.evals, self.seconds, self._t = device, 0, 0.0, 0.0
        unet.register_forward_pre_hook(self.before)
        unet.register_forward_hook(self.after)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def before(self, module, args):
        self.sync()
        self.evals += int(args[0].shape[0])
        self._t = time.perf_counter()

    def after(self, module, args, out):
        self.sync()
        self.seconds += time.perf_counter() - self._t


def build(method: str, device, dtype):
    """(pipe, settings class, crops function, defaults' UNet evaluations per face) with random weights."""
    if method == "nullface":
        from anonymize_cost import faceid_random, sd15_random
        from nullface.methods.nullface.pipeline import anonymize_crops, unet_evals_per_face
        from nullface.methods.nullface.settings import NullFaceSettings
        sd = sd15_random(device, dtype)
        attach_faceid(sd, faceid_random(sd.unet), "random FaceID")
        sd.to(device, dtype)
        pipe = NullFacePipe(pipeline=sd, device=device, dtype=dtype, checkpoint="random", faceid="random")
        return pipe, NullFaceSettings, anonymize_crops, unet_evals_per_face(NullFaceSettings())
    from anonymize_cost import faceid_random
    from revpers_cost import sdxl_random
    from nullface.methods.revpers import pipeline as R
    from nullface.models.sdxl import FACEID_SDXL_HINT, SDXLPipe
    sd = sdxl_random(device, dtype)
    attach_faceid(sd, faceid_random(sd.unet), "random FaceID SDXL", FACEID_SDXL_HINT)
    sd.to(device, dtype)
    pipe = SDXLPipe(pipeline=sd, device=device, dtype=dtype, checkpoint="random", faceid="random")
    return pipe, R.ReversePersonalizationSettings, R.anonymize_crops, R.unet_evals_per_face()["total"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=("nullface", "revpers"), default="nullface")
    ap.add_argument("--size", type=int, default=512, help="face crop size in pixels (512 = the paper)")
    ap.add_argument("--steps", type=int, default=None, help="T (default: the method's)")
    ap.add_argument("--t-skip", type=int, default=None, help="NullFace's T_skip (default 70)")
    ap.add_argument("--batches", default="1,4,8,16", help="faces per call to measure, comma separated")
    ap.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet (one warm-up batch per size)")
    ap.add_argument("--warmup", action="store_true", help="one untimed batch of each size first (default on CUDA)")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    t = time.perf_counter()
    pipe, Settings, crops_fn, evals_at_defaults = build(args.method, device, dtype)
    load_s = time.perf_counter() - t
    given = {k: v for k, v in (("steps", args.steps), ("t_skip", args.t_skip)) if v is not None}
    if args.method == "nullface":
        given["inversion_batch"] = 8            # several steps per inversion call, on the CPU too
    settings = Settings(**given).validate()
    if args.compile:
        compile_unet(pipe.unet)
    clock = UNetClock(pipe.unet, device)
    rng = np.random.RandomState(0)
    rows = []
    for b in [int(v) for v in args.batches.split(",")]:
        crops = list(rng.randint(0, 256, (b, args.size, args.size, 3)).astype(np.uint8))
        ids = rng.randn(b, 512).astype(np.float32)
        ids /= np.linalg.norm(ids, axis=1, keepdims=True)
        masks = [None] * b
        if args.warmup or args.compile or device.type == "cuda":
            crops_fn(pipe, crops, list(ids), masks, settings)
        clock.evals, clock.seconds = 0, 0.0
        with PeakMemory(device) as mem:
            clock.sync()
            t = time.perf_counter()
            crops_fn(pipe, crops, list(ids), masks, settings)
            clock.sync()
            total = time.perf_counter() - t
        per_eval = clock.seconds / max(1, clock.evals)
        overhead_per_face = (total - clock.seconds) / b
        rows.append({
            "batch": b, "seconds": round(total, 3), "seconds_per_face": round(total / b, 3),
            "faces_per_second": round(b / total, 3), "unet_evals_per_face": clock.evals / b,
            "unet_share": round(clock.seconds / total, 3), "peak_memory_mb": round(mem.peak / 2**20, 1),
            "seconds_per_face_at_defaults": round(per_eval * evals_at_defaults + overhead_per_face, 2),
        })
        print(f"batch {b:3d}: {total / b:8.3f} s/face  {b / total:7.3f} faces/s  {clock.evals / b:6.1f} UNet "
              f"evals/face  {100 * clock.seconds / total:5.1f}% in the UNet  peak {mem.peak / 2**20:9.1f} MB  "
              f"(~{rows[-1]['seconds_per_face_at_defaults']} s/face at the defaults)", flush=True)
    result = {"method": args.method, "size": args.size, "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "dtype": str(dtype).replace("torch.", ""), "compile": args.compile, "settings": given,
              "unet_evals_per_face_at_defaults": evals_at_defaults, "load_seconds": round(load_s, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
