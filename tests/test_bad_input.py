"""Bad inputs get one clear line and a documented exit code; nothing is lost and no model loads for nothing.

Each test here failed on the code before these checks existed (a traceback, a silent skip or a wrong result).
"""
from __future__ import annotations

import errno
import json
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

from nullface.commands.cli import main
from nullface.commands import anonymize as cmd
from nullface.errors import InputError, ModelFileError
from tests import faces_data as fd
from tests.test_cli_anonymize import fake_run, parse
from tests.test_saving import SECRET, _assert_clean, _gps_exif


@pytest.fixture
def no_models(monkeypatch):
    """Any model load fails the test: the checks must come first."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")
    monkeypatch.setattr(cmd, "build_anonymizer", refuse)
    monkeypatch.setattr(cmd, "detector_from_args", refuse)
    import nullface.models.sd15
    monkeypatch.setattr(nullface.models.sd15, "load_pipe", refuse)


@pytest.fixture
def photo_dir(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    return src


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def cli(*argv):
    return main(["anonymize", *map(str, argv), "--checkpoint", "ckpt.safetensors", "--faceid", "faceid.bin"])


# ------------------------------------------------------------------------------ options, before any model
@pytest.mark.parametrize("flags, words", [
    (["--device", "tpu9"], "tpu9"),
    (["--dtype", "fp8"], "fp8"),
    (["--max-tries", "0"], "--max-tries"),
    (["--audit", "--max-tries", "-2"], "--max-tries"),
    (["--quality", "0"], "--quality"),
    (["--keep", "ears"], "ears"),
    (["--keep", "none,eyes"], "none"),
    (["--steps", "10", "--t-skip", "20"], "t_skip"),
    (["--audit-threshold", "nan"], "--audit-threshold"),
    (["--audit-threshold", "-1"], "--audit-threshold"),
    # issue 14, item 1: Reverse Personalization settings that anonymize nothing, or steer towards the identity
    (["--method", "revpers", "--guidance-scale", "0"], "--guidance-scale"),
    (["--method", "revpers", "--guidance-scale", "1"], "--guidance-scale"),
    (["--method", "revpers", "--guidance-scale", "5"], "--guidance-scale"),
    (["--method", "revpers", "--guidance-scale", "nan"], "--guidance-scale"),
    (["--method", "revpers", "--id-scale", "0"], "--id-scale"),
    (["--method", "revpers", "--ip-scale", "0"], "--ip-scale"),
    (["--method", "revpers", "--steps", "0"], "--steps"),
    (["--lambda-cfg", "nan"], "--lambda-cfg"),
    (["--method", "inpaint", "--start-t", "500"], "start_t"),
    (["--method", "inpaint", "--inpaint-guidance-scale", "inf"], "--inpaint-guidance-scale"),
])
def test_bad_options_exit_2_before_any_model(photo_dir, tmp_path, capsys, no_models, flags, words):
    assert cli(photo_dir, "-o", tmp_path / "out", *flags) == 2
    assert words in one_error_line(capsys)


def test_pick_device_names_the_bad_device():
    from nullface.models.devices import pick_device
    for name in ("tpu9", "cuda:x", "meta", "xpu"):
        with pytest.raises(InputError, match="device"):
            pick_device(name)
    assert pick_device("cpu").type == "cpu"


# ------------------------------------------------------------------------------ output folder and report
def test_output_folder_that_is_a_file(photo_dir, tmp_path, capsys, no_models):
    f = tmp_path / "out.png"
    f.write_bytes(b"precious")
    assert cli(photo_dir, "-o", f) == 2
    assert "is an existing file" in one_error_line(capsys)
    assert f.read_bytes() == b"precious"
    assert cli(photo_dir, "-o", f / "sub") == 2                              # a file inside the path
    assert "is a file" in one_error_line(capsys)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")])
def test_read_only_output_folder_or_mount(photo_dir, tmp_path, capsys, no_models, monkeypatch, code, words):
    out = tmp_path / "out"
    out.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, **k):                    # what the kernel answers on a read-only mount / folder
        if str(k.get("dir", "")) == str(out):
            raise OSError(code, words)
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert cli(photo_dir, "-o", out) == 2
    line = one_error_line(capsys)
    assert words in line and str(out) in line and not any(out.iterdir())


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_really_read_only_folder(photo_dir, tmp_path, capsys, no_models):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert cli(photo_dir, "-o", out) == 2
        assert "permission denied" in one_error_line(capsys)
    finally:
        out.chmod(0o755)


def test_output_blocked_by_a_file_is_refused_before_the_work(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "people").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "people" / "a.png")
    Image.fromarray(astronaut).save(src / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "people").write_bytes(b"a file where a folder must go")
    calls = []

    def counting(image, crops):
        calls.append(1)
        return fd.invert(image, crops)

    assert fake_run(src, "-o", out, anonymizer=counting) == 1
    files = json.loads((out / "report.json").read_text())["files"]
    assert files["people/a.png"]["status"] == "error" and "existing file" in files["people/a.png"]["error"]
    assert files["b.png"]["status"] == "done" and len(calls) == 1           # only b.png was worked on


@pytest.mark.parametrize("content", [b"{\"files\": {\"a.png\": {\"status\": \"do", b"\xff\xfe\x00garbage", b"[1, 2]",
                                     b"{\"files\": [\"a.png\"]}"])
def test_corrupt_report(photo_dir, tmp_path, capsys, no_models, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_bytes(content)
    assert cli(photo_dir, "-o", out) == 2
    line = one_error_line(capsys)
    assert "report.json" in line and "corrupt" in line and "--overwrite" in line
    assert (out / "report.json").read_bytes() == content                     # left as it was


def test_corrupt_report_with_overwrite_is_kept_aside(photo_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{broken")
    assert fake_run(photo_dir, "-o", out, "--overwrite") == 0
    assert json.loads((out / "report.json").read_text())["files"]["a.png"]["status"] == "done"
    kept = list(out.glob("report.corrupt-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == "{broken"


# ------------------------------------------------------------------------------ inputs
def _gif(path, frames):
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=len(ims) > 1, append_images=ims[1:], duration=100, loop=0)


def test_animated_gif_is_refused_per_file_and_every_file_is_listed(tmp_path, astronaut, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _gif(src / "anim.gif", [astronaut, astronaut[:, ::-1].copy()])
    _gif(src / "still.gif", [astronaut])
    Image.fromarray(astronaut).save(src / "a.png")
    (src / "notes.txt").write_text("not an image")
    (src / "photo.heic").write_bytes(b"\x00")
    calls = []

    def counting(image, crops):
        calls.append(1)
        return fd.invert(image, crops)

    out = tmp_path / "out"
    assert fake_run(src, "-o", out, anonymizer=counting) == 1
    report = json.loads((out / "report.json").read_text())
    files = report["files"]
    assert set(files) == {"anim.gif", "still.gif", "a.png"}
    assert files["anim.gif"]["status"] == "error" and "animated" in files["anim.gif"]["error"]
    assert "2 frames" in files["anim.gif"]["error"] and not list(out.glob("anim.*"))
    assert files["still.gif"]["status"] == "done" and (out / "still.png").is_file()
    assert set(report["skipped"]) == {"notes.txt", "photo.heic"}          # relative to the input root
    assert "not an image" in report["skipped"]["notes.txt"]
    assert len(calls) == 2                                                   # the animation never ran
    assert "Traceback" not in capsys.readouterr().err
    # named directly, with the format kept: the same clear error, nothing written
    out2 = tmp_path / "out2"
    assert fake_run(src / "anim.gif", "-o", out2, "--format", "same") == 1
    e = json.loads((out2 / "report.json").read_text())["files"]["anim.gif"]
    assert e["status"] == "error" and "animated" in e["error"] and not list(out2.glob("anim.*"))


def test_cmyk_array_is_not_taken_as_rgba(astronaut):
    from nullface.privacy.photo import anonymize_photo, detect_batch
    pil = Image.fromarray(astronaut).convert("CMYK")
    cmyk = np.asarray(pil)
    det = fd.detector()
    with pytest.raises(InputError, match="CMYK"):
        anonymize_photo(cmyk, det, fd.invert)
    with pytest.raises(InputError, match="CMYK"):
        detect_batch([cmyk], det)
    as_rgb = np.asarray(pil.convert("RGB"))
    for res in (anonymize_photo(cmyk, det, fd.identity, mode="CMYK"), anonymize_photo(pil, det, fd.identity)):
        assert res.image.shape == astronaut.shape and np.array_equal(res.image, as_rgb)
        assert res.found >= 1
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 7, np.uint8)], -1)
    res = anonymize_photo(rgba, det, fd.invert, mode="RGBA")
    assert res.image.shape == rgba.shape and np.all(res.image[..., 3] == 7)
    with pytest.raises(InputError, match="mode"):
        anonymize_photo(rgba, det, fd.invert, mode="BGRA")
    from nullface.faces.imageio import to_nhwc
    assert to_nhwc(pil).shape == (1, 512, 512, 3)                            # a CMYK PIL image is RGB there too


def test_empty_array_to_save_clean(tmp_path):
    from nullface.privacy.saving import save_clean
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5), np.uint8), np.zeros((4, 0, 4), np.uint8)):
        with pytest.raises(InputError, match="empty"):
            save_clean(empty, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from tests.tiny_models import save_sd15_folder
    return save_sd15_folder(tmp_path_factory.mktemp("sd") / "tiny-sd15")


@pytest.mark.parametrize("part", ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                                  "vae/diffusion_pytorch_model.safetensors"])
@pytest.mark.parametrize("keep_bytes", [100, 0.5])
def test_truncated_diffusers_file_is_named(sd_folder, tmp_path, part, keep_bytes):
    import torch

    from nullface.models.sd15 import load_sd15
    broken = shutil.copytree(sd_folder, tmp_path / "tiny-sd15")
    f = broken / part
    data = f.read_bytes()
    f.write_bytes(data[:keep_bytes if isinstance(keep_bytes, int) else int(len(data) * keep_bytes)])
    with pytest.raises(ModelFileError) as info:
        load_sd15(broken, torch.device("cpu"), torch.float32)
    msg = str(info.value)
    assert part in msg and str(broken) in msg and "download" in msg and "\n" not in msg


def test_truncated_torch_file_is_named(tmp_path):
    import torch

    from nullface.models.files import check_weight_file
    good = tmp_path / "w.bin"
    torch.save({"w": torch.zeros(4000)}, good)
    check_weight_file(good)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut.bin.*incomplete"):
        check_weight_file(cut)


def test_truncated_model_through_the_cli_is_one_line(tiny, photo_dir, tmp_path, capsys):
    broken = shutil.copytree(tiny["sd15"], tmp_path / "tiny-sd15")
    f = broken / "unet" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[:5000])
    code = main(["anonymize", str(photo_dir), "-o", str(tmp_path / "out"), "--checkpoint", str(broken), "--faceid",
                 str(tiny["faceid_bin"]), "--insightface-root", str(tiny["insightface_root"]), "--device", "cpu"])
    assert code == 2
    assert "unet/diffusion_pytorch_model.safetensors" in one_error_line(capsys)


# ------------------------------------------------------------------------------ output format
@pytest.fixture
def jpeg_dir(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "p.jpg", quality=90, exif=_gps_exif(), comment=SECRET.encode())
    Image.fromarray(astronaut).save(src / "q.png")
    _gif(src / "g.gif", [astronaut])
    return src


def test_default_png_keeps_every_pixel_outside_the_faces(jpeg_dir, tmp_path):
    out = tmp_path / "out"
    assert fake_run(jpeg_dir, "-o", out) == 0
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".json") == ["g.png", "p.png", "q.png"]
    before = np.asarray(Image.open(jpeg_dir / "p.jpg").convert("RGB"))
    after = np.asarray(Image.open(out / "p.png"))
    changed = np.any(before != after, -1)
    assert changed.any() and changed.mean() < 0.25 and not changed[:, 420:].any()   # only the faces changed
    _assert_clean(out / "p.png")


@pytest.mark.parametrize("fmt, names", [
    ("jpg", ["g.jpg", "p.jpg", "q.jpg"]), ("webp", ["g.webp", "p.webp", "q.webp"]),
    ("same", ["g.png", "p.jpg", "q.png"]),
])
def test_output_formats_carry_no_metadata(jpeg_dir, tmp_path, fmt, names):
    out = tmp_path / "out"
    assert fake_run(jpeg_dir, "-o", out, "--format", fmt, "--quality", "80") == 0
    written = sorted(p.name for p in out.iterdir() if p.suffix != ".json")
    assert written == names
    for name in names:
        _assert_clean(out / name)
    report = json.loads((out / "report.json").read_text())
    assert report["files"]["p.jpg"]["output"] == names[1]                   # relative to OUTDIR
    assert fake_run(jpeg_dir, "-o", out, "--format", fmt, "--quality", "80") == 0   # resumes: all done
    assert json.loads((out / "report.json").read_text())["files"] == report["files"]


def test_two_inputs_one_output_name(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.jpg")
    Image.fromarray(astronaut).save(src / "a.png")
    out = tmp_path / "out"
    assert fake_run(src, "-o", out) == 1                                     # both would be a.png
    files = json.loads((out / "report.json").read_text())["files"]
    statuses = sorted(e["status"] for e in files.values())
    assert statuses == ["done", "error"] and "--format" in [e for e in files.values() if e["status"] == "error"][0][
        "error"]
    assert fake_run(src, "-o", tmp_path / "out2", "--format", "same") == 0


# ------------------------------------------------------------------------------ one keep default per method
def test_one_keep_default_per_method_in_cli_nodes_and_api():
    """Each method states its kept regions once (its settings' KEEP, from its paper); the CLI, the photo nodes
    and the photo API read them. Before, the revpers and inpaint nodes kept nothing while the CLI kept eyes,mouth."""
    from types import SimpleNamespace
    from nullface.commands.methods import METHODS
    from nullface.faces.regions import parse_regions
    from nullface.methods.inpaint.pipeline import inpaint_crop_anonymizer
    from nullface.methods.nullface.pipeline import crop_anonymizer
    from nullface.methods.revpers.pipeline import crop_anonymizer as revpers_anonymizer
    from nullface.privacy.photo import PhotoOptions, anonymize_photo
    from tests.conftest import load_pack
    classes = {k: m.settings_cls() for k, m in METHODS.items()}
    assert {k: c.KEEP for k, c in classes.items()} == {"nullface": ("eyes", "mouth"), "revpers": (), "inpaint": ()}
    nodes = load_pack().NODE_CLASS_MAPPINGS
    photo_nodes = {"nullface": "NullFaceAnonymizePhoto", "revpers": "RevPersAnonymizePhoto",
                   "inpaint": "NullFaceInpaintPhoto"}
    arcface = SimpleNamespace(arcface=object())
    engines = {"nullface": lambda s: crop_anonymizer(None, arcface, s),
               "revpers": lambda s: revpers_anonymizer(None, arcface, s),
               "inpaint": lambda s: inpaint_crop_anonymizer(None, None, s)}
    for method, cls in classes.items():
        assert cmd._options(parse("x", "-o", "y", "--method", method)).keep == cls.KEEP                # CLI
        node = nodes[photo_nodes[method]].INPUT_TYPES()["required"]["keep"][1]["default"]
        assert parse_regions(node) == cls.KEEP                                                         # node
        assert engines[method](cls()).keep == cls.KEEP                                                 # API
    assert cmd._options(parse("x", "-o", "y", "--method", "revpers", "--keep", "eyes")).keep == ("eyes",)
    assert cmd._options(parse("x", "-o", "y", "--keep", "none")).keep == ()
    assert PhotoOptions().keep is None               # the API's default: the anonymizer's method decides

    def spy(image, crops):
        m = crops[0].mask                            # None: the whole crop is anonymized
        seen.append(1.0 if m is None else float(np.mean(m)))
        return [255 - c.image for c in crops]
    seen = []
    spy.keep = classes["nullface"].KEEP
    anonymize_photo(fd.image("astronaut"), fd.FixedDetector(fd.faces("astronaut")[:1]), spy, PhotoOptions())
    spy.keep = classes["revpers"].KEEP
    anonymize_photo(fd.image("astronaut"), fd.FixedDetector(fd.faces("astronaut")[:1]), spy, PhotoOptions())
    assert seen[0] < seen[1]                         # NullFace keeps its eyes and mouth, revpers the whole face


def test_main_turns_late_errors_and_ctrl_c_into_one_line(monkeypatch, capsys):
    def late(args):
        raise ModelFileError("'w600k_r50.onnx' in '/models' is incomplete or corrupt: download it again")
    monkeypatch.setattr(cmd, "run", late)
    assert main(["anonymize", "x", "-o", "y"]) == 2
    assert "w600k_r50.onnx" in one_error_line(capsys)

    def ctrl_c(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cmd, "run", ctrl_c)
    assert main(["anonymize", "x", "-o", "y"]) == 130
    assert "Traceback" not in capsys.readouterr().err
