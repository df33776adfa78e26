"""How exactly Reverse Personalization's null path replays its inversion, on a tiny random-weight SDXL.

With zero identity and no attribute prompt the sampler, fed the inversion's noise maps z_i at the default
guidance w = -10, must return the input latents. This prints, per step count, the largest |x_out - x0| of that
replay and the UNet evaluations one face costs (a batch of k rows counts k), then one JSON line.
Runs in well under a minute on a CPU (the tiny model's latents are 8x8); it needs the test extras.

    python benchmarks/revpers_replay.py --steps 6 20 50
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.methods.revpers import pipeline as R  # noqa: E402
from nullface.models.sdxl import load_revpers_pipe  # noqa: E402
from tests.tiny_sdxl import build_sdxl  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[6, 20, 50])
    ap.add_argument("--faces", type=int, default=1, help="faces inverted as one batch")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_sdxl(Path(tmp))
        pipe = load_revpers_pipe(paths["sdxl"], paths["faceid_sdxl"], device="cpu", dtype="fp32")
        g = np.random.default_rng(args.seed)
        face = torch.from_numpy(g.uniform(0.1, 0.9, (args.faces, 64, 64, 3)).astype(np.float32))
        x0 = R.encode(pipe, face)
        for steps in args.steps:
            s = dataclasses.replace(R.ReversePersonalizationSettings(), steps=steps, seed=args.seed)
            inv = R.invert_latents(pipe, x0, s)
            out, evals = R.sample_latents(pipe, inv, np.zeros((1, 512), np.float32))
            err = float((out - x0).abs().max())
            row = {"steps": steps, "replay_max_abs_error": err, "latent_max_abs": float(x0.abs().max()),
                   "unet_evals_per_face": {"invert": inv.unet_evals // args.faces, "sample": evals // args.faces}}
            print(f"steps {steps:4d}: max |replay - input| = {err:.3g} (latents up to {row['latent_max_abs']:.3g}); "
                  f"UNet evaluations per face: invert {row['unet_evals_per_face']['invert']}, "
                  f"sample {row['unet_evals_per_face']['sample']}")
            rows.append(row)
    print(json.dumps({"faces": args.faces, "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
