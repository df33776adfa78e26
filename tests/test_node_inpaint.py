"""The inpainting nodes (nodes/inpaint.py) without ComfyUI, on tiny random models."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nullface.errors import ModelFileError
from nullface.faces.identity import FaceModels
from nullface.methods.inpaint.settings import InpaintSettings
from tests import faces_data as fd
from tests.inpaint_models import build_inpaint_models


@pytest.fixture(scope="module")
def mod(pack):
    import sys
    return sys.modules[f"{pack.__name__}.nodes.inpaint"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_inpaint_models(tmp_path_factory.mktemp("inpaint_nodes"))


@pytest.fixture(scope="module")
def pipe(mod, files):
    loader = mod.NullFaceInpaintLoader()
    return loader.load(str(files["folder"]), str(files["farl"]), "cpu", "fp32", True)[0]


def call(mod, name, **kw):
    cls = mod.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)(**kw)


def widgets(steps=3, **over):
    d = {f.name: f.default for f in dataclasses.fields(InpaintSettings)}
    d.update(steps=steps, **over)
    return d


def test_registered_with_tooltips_and_widget_defaults_from_the_settings(pack, mod):
    for name, cls in mod.NODE_CLASS_MAPPINGS.items():
        assert name in pack.NODE_CLASS_MAPPINGS
        assert mod.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("NullFace ")
        for group in cls.INPUT_TYPES().values():
            for key, spec in group.items():
                assert spec[1].get("tooltip"), f"{name}.{key} has no tooltip"
    req = mod.NullFaceInpaintAnonymize.INPUT_TYPES()["required"]
    for name, spec in InpaintSettings.specs().items():
        assert req[name][1]["default"] == spec.default and req[name][1]["tooltip"] == spec.help
    assert req["guidance_scale"][1]["max"] == 1000.0 and req["steps"][0] == "INT"


def test_loader_returns_a_typed_handle_and_refuses_plain_sd15(mod, tmp_path):
    from tests.tiny_models import save_sd15_folder
    plain = save_sd15_folder(tmp_path / "plain")
    with pytest.raises(ModelFileError, match="4-channel"):
        mod.NullFaceInpaintLoader().load(str(plain), mod.NO_FEATURES, "cpu", "fp32", True)
    assert mod.NullFaceInpaintLoader.RETURN_TYPES == ("NULLFACE_INPAINT_PIPE",)


def test_anonymize_node_keeps_the_unmasked_pixels(mod, pipe):
    img = torch.rand(1, 64, 64, 3)
    m = torch.zeros(1, 64, 64)
    m[:, 16:48, 16:48] = 1                                  # at least half of the aligned face (MIN_FACE_SHARE)
    (out,) = call(mod, "NullFaceInpaintAnonymize", inpaint_pipe=pipe, image=img, mask=m,
                  target=torch.rand(1, 48, 48, 3), **widgets())
    assert out.shape == img.shape
    assert torch.equal(out[0][m[0] == 0], img[0][m[0] == 0]) and not torch.equal(out, img)


def test_photo_node_anonymizes_and_reports(mod, pipe):
    models = FaceModels(detector=fd.FixedDetector(fd.faces("astronaut")[:1]), arcface=None)
    img = fd.image("astronaut")
    out, report, n = call(mod, "NullFaceInpaintPhoto", inpaint_pipe=pipe, face_models=models,
                          image=torch.from_numpy(img[None].astype(np.float32) / 255), target=torch.rand(1, 64, 64, 3),
                          keep="eyes", on_failure="error", on_no_face="error", crop_size=64, audit_tries=0,
                          **widgets())
    assert n == 1 and "1 anonymized" in report
    assert not torch.equal(out, torch.from_numpy(img[None].astype(np.float32) / 255))


def test_photo_node_audit_fails_closed(mod, pipe, monkeypatch):
    """A face the audit still links to its original gets the failure policy, never the face back."""
    from nullface.errors import FaceFailedError

    class Always:
        passed = False

        def summary(self):
            return "dlib distance 0.1 < 0.6"

    from tests.conftest import pack_module
    monkeypatch.setattr(pack_module("nodes.photo"), "crop_audit",       # the photo nodes' shared audit setup
                        lambda recognizers: (lambda original, result, crop: Always()))
    import nullface.privacy.audit as au
    monkeypatch.setattr(au, "DlibRecognizer", lambda *a, **k: object())
    models = FaceModels(detector=fd.FixedDetector(fd.faces("astronaut")[:1]), arcface=None)
    img = torch.from_numpy(fd.image("astronaut")[None].astype(np.float32) / 255)
    kw = dict(inpaint_pipe=pipe, face_models=models, image=img, target=torch.rand(1, 64, 64, 3), keep="",
              on_no_face="error", crop_size=64, audit_tries=2, **widgets(steps=2))
    with pytest.raises(FaceFailedError, match="re-identified"):
        call(mod, "NullFaceInpaintPhoto", on_failure="error", **kw)
    out, report, n = call(mod, "NullFaceInpaintPhoto", on_failure="pixelate", **kw)
    assert n == 0 and "FAIL after 2 try(s)" in report and "pixelate" in report


# ------------------------------------------------------------------------------------- CLI
def test_cli_method_inpaint_end_to_end(files, tmp_path, capsys):
    """``anonymize --method inpaint --target IMAGE``: faces repainted, pixels outside the faces identical."""
    import json

    from PIL import Image

    from nullface.commands.cli import main
    from nullface.faces.crop import crop_face, region_in_image
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    img = fd.image("astronaut")
    Image.fromarray(img).save(src / "a.png")
    Image.fromarray((np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "t.png")
    base = ["anonymize", str(src), "-o", str(out), "--method", "inpaint", "--checkpoint", str(files["folder"]),
            "--detector", "dlib", "--crop-size", "64", "--inpaint-steps", "2", "--device", "cpu", "--dtype", "fp32", "--no-audit"]
    assert main(base) == 2 and "--target" in capsys.readouterr().err            # guidance on needs a target
    code = main(base + ["--target", str(tmp_path / "t.png"), "--features", str(files["farl"])])
    report = json.loads((out / "report.json").read_text())
    entry = report["files"]["a.png"]
    assert code == 0 and entry["status"] == "done" and entry["anonymized"] == entry["faces_found"] >= 1
    assert report["options"]["method"] == "inpaint"
    res = np.asarray(Image.open(out / "a.png"))
    allowed = np.logical_or.reduce([region_in_image(img.shape, crop_face(img, f, 64)) for f in fd.faces("astronaut")])
    changed = np.any(res != img, -1)
    assert changed.any() and not np.any(changed & ~allowed)


def test_cli_method_inpaint_refuses_a_plain_sd15(tmp_path, capsys):
    from PIL import Image

    from nullface.commands.cli import main
    from tests.tiny_models import save_sd15_folder
    plain = save_sd15_folder(tmp_path / "plain")
    Image.fromarray(fd.image("astronaut")).save(tmp_path / "a.png")
    code = main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--method", "inpaint",
                 "--checkpoint", str(plain), "--inpaint-guidance-scale", "0", "--detector", "dlib", "--device", "cpu"])
    assert code == 2 and "4-channel" in capsys.readouterr().err


def test_cli_method_inpaint_audit_retries_with_the_next_seed_then_fails_closed(files, tmp_path):
    """--audit works on this method's outputs: threshold 10 makes dlib link every pair, so each try fails."""
    import json

    from PIL import Image

    from nullface.commands.cli import main
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(fd.image("astronaut")).save(src / "a.png")
    code = main(["anonymize", str(src), "-o", str(out), "--method", "inpaint", "--checkpoint", str(files["folder"]),
                 "--inpaint-guidance-scale", "0", "--detector", "dlib", "--crop-size", "64", "--inpaint-steps", "2",
                 "--device", "cpu", "--dtype", "fp32", "--audit", "--max-tries", "2", "--audit-threshold", "10",
                 "--on-failure", "blur"])
    entry = json.loads((out / "report.json").read_text())["files"]["a.png"]
    tries = entry["audit"][0]["tries"]
    assert len(tries) == 2 and tries[1]["settings"]["seed"] == tries[0]["settings"]["seed"] + 1
    assert tries[0]["audit"]["results"][0]["recognizer"] == "dlib"
    assert code == 1 and entry["failed"] >= 1 and all(f["policy"] == "blur" for f in entry["faces"])
