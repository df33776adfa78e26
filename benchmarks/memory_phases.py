"""Peak CPU memory (RSS) of one NullFace face, per phase, on random-weight SD1.5 + FaceID at the real size.

Samples the process RSS every 10 ms and prints, per phase (build, faceid, encode, invert, sample, decode), the
RSS when the phase starts, then one JSON object: the peak MiB of each phase and the process's ru_maxrss.
``lean`` applies what the CLI does (VAE activations in place, the text encoder dropped once the prompts are
encoded). Steps 2, T_skip 1 run one dual UNet call: the peak does not grow with the step count.

    python benchmarks/memory_phases.py 512 2 1 lean
"""
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anonymize_cost import faceid_random, sd15_random  # noqa: E402
from nullface.faces.identity import negate_identities  # noqa: E402
from nullface.methods.nullface.pipeline import decode, encode, invert_latents, sample_latents  # noqa: E402
from nullface.methods.nullface.settings import NullFaceSettings  # noqa: E402
from nullface.models.sd15 import NullFacePipe, attach_faceid, vae_inplace_activations  # noqa: E402


def main(argv):
    size, steps, t_skip = int(argv[0]), int(argv[1]), int(argv[2])
    lean = len(argv) > 3 and argv[3] == "lean"
    proc, phase, peaks = psutil.Process(), ["start"], {}

    def sample():
        while True:
            peaks[phase[0]] = max(peaks.get(phase[0], 0), proc.memory_info().rss)
            time.sleep(0.01)
    threading.Thread(target=sample, daemon=True).start()

    def mark(name):
        time.sleep(0.05)
        phase[0] = name
        print(name, round(proc.memory_info().rss / 2**20), flush=True)

    mark("build")
    sd = sd15_random("cpu", torch.float32)
    mark("faceid")
    attach_faceid(sd, faceid_random(sd.unet), "random FaceID")
    pipe = NullFacePipe(pipeline=sd, device=torch.device("cpu"), dtype=torch.float32, checkpoint="r", faceid="r")
    if lean:
        vae_inplace_activations(sd.vae)
        pipe.keep_prompts_only([""])
    mark("encode")
    faces = np.random.RandomState(0).randint(0, 256, (1, size, size, 3)).astype(np.uint8)
    s = NullFaceSettings(steps=steps, t_skip=t_skip)
    e = np.random.RandomState(1).randn(512).astype(np.float32)
    with torch.no_grad():
        x0 = encode(pipe, faces)
        mark("invert")
        inv = invert_latents(pipe, x0, s)
        mark("sample")
        latents = sample_latents(pipe, inv, negate_identities([e / np.linalg.norm(e)]), s)
        mark("decode")
        decode(pipe, latents)
    mark("end")
    print(json.dumps({"size": size, "lean": lean, "peak_mib": {k: round(v / 2**20) for k, v in peaks.items()},
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main(sys.argv[1:])
