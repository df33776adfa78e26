"""``python -m nullface anonymize --method revpers`` on whole photos with the tiny SDXL models."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nullface.commands.cli import main


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from tests.tiny_sdxl import build_sdxl
    return build_sdxl(tmp_path_factory.mktemp("xl"))


def run(tiny, tiny_xl, src, out, *extra):
    return main(["anonymize", str(src), "-o", str(out), "--method", "revpers", "--checkpoint", str(tiny_xl["sdxl"]),
                 "--faceid", str(tiny_xl["faceid_sdxl"]), "--insightface-root", str(tiny["insightface_root"]),
                 "--steps", "4", "--crop-size", "64", "--device", "cpu", "--dtype", "fp32", *extra])


def test_revpers_anonymizes_every_face_of_a_photo(tiny, tiny_xl, astronaut, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    out = tmp_path / "out"
    # not about the audit: the tiny models barely change dlib's false-positive face on the mission patch
    assert run(tiny, tiny_xl, src, out, "--guidance-scale", "-7.5", "--prompt", "an elderly woman",
               "--no-audit") == 0
    report = json.loads((out / "report.json").read_text())
    entry = report["files"]["a.png"]
    assert entry["status"] == "done" and entry["anonymized"] == entry["faces_found"] >= 1
    result = np.asarray(Image.open(out / "a.png"))
    assert result.shape == astronaut.shape and not np.array_equal(result, astronaut)
    outside = np.ones(astronaut.shape[:2], bool)
    for f in entry["faces"]:
        x1, y1, x2, y2 = map(int, f["bbox"])
        w, h = x2 - x1, y2 - y1
        outside[max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w] = False
    assert np.array_equal(result[outside], astronaut[outside])       # only the face region changed
    assert report["options"]["method"] == "revpers" and report["options"]["guidance_scale"] == -7.5


def test_revpers_refuses_sd15_files_with_exit_2(tiny, tiny_xl, astronaut, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    code = main(["anonymize", str(src), "-o", str(tmp_path / "out"), "--method", "revpers", "--checkpoint",
                 str(tiny["sd15"]), "--faceid", str(tiny_xl["faceid_sdxl"]), "--insightface-root",
                 str(tiny["insightface_root"]), "--device", "cpu"])
    assert code == 2
    assert "SDXL" in capsys.readouterr().err
