"""Normal output is NullFace's own: a tiny-model run of each method prints no loading bar and no third-party
warning (diffusers' "Loading pipeline components", transformers' torchvision fallbacks ...).

One fresh process runs the three methods one after the other, as a user's first run does: import-time
warnings are printed once per process, so an in-process test would miss them. (Before: Reverse
Personalization and inpainting printed diffusers' loading bars, every run two torchvision warnings.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from nullface.commands.cli import main
common = ["--crop-size", "64", "--device", "cpu", "--dtype", "fp32", "--detector", "dlib", "--no-audit"]
runs = {runs!r}
for name, argv in runs.items():
    print(f"=== {{name}}", file=sys.stderr, flush=True)
    code = main(argv + common)
    print(f"=== {{name}} exit {{code}}", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny):
    from tests.inpaint_models import build_inpaint_models
    from tests.tiny_sdxl import build_sdxl
    root = tmp_path_factory.mktemp("quiet")
    return {"xl": build_sdxl(root / "xl"), "inpaint": build_inpaint_models(root / "inpaint")}


def test_each_method_prints_only_nullface_lines(tmp_path, tiny, models, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    target = tmp_path / "target.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(target)
    face = ["--insightface-root", str(tiny["insightface_root"])]
    runs = {
        "nullface": ["anonymize", str(src), "-o", str(tmp_path / "o1"), "--checkpoint", str(tiny["sd15"]),
                     "--faceid", str(tiny["faceid_bin"]), "--steps", "4", "--t-skip", "2", *face],
        "revpers": ["anonymize", str(src), "-o", str(tmp_path / "o2"), "--method", "revpers",
                    "--checkpoint", str(models["xl"]["sdxl"]), "--faceid", str(models["xl"]["faceid_sdxl"]),
                    "--steps", "2", *face],
        "inpaint": ["anonymize", str(src), "-o", str(tmp_path / "o3"), "--method", "inpaint",
                    "--checkpoint", str(models["inpaint"]["folder"]), "--features",
                    str(models["inpaint"]["farl"]), "--target", str(target), "--inpaint-steps", "2", *face],
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(runs=runs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    err = proc.stderr
    for name in runs:
        assert f"=== {name} exit 0" in err, err[-3000:]
    foreign = [ln for ln in err.replace("\r", "\n").splitlines()
               if ln.strip() and not ln.startswith(("=== ", "INFO nullface:", "WARNING nullface:"))]
    assert not foreign, "\n".join(foreign[:20])
