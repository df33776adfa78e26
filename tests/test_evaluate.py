"""``python -m nullface eval`` and its metrics, on real photos with dlib's real weights."""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from nullface.privacy import evaluate as E
from nullface.privacy.audit import DlibLandmarker
from nullface.errors import InputError, MissingDependencyError

ASTRO_FACE = (175, 76, 265, 166)     # dlib's box of Eileen Collins' face in skimage's astronaut


def _blur_face(image, box=ASTRO_FACE, radius=14, grow=18):
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = x1 - grow, y1 - grow, x2 + grow, y2 + grow
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    out = image.copy()
    out[y1:y2, x1:x2] = blurred[y1:y2, x1:x2]
    return out


@pytest.fixture(scope="module")
def landmarker():
    return DlibLandmarker(68)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, astronaut, t1_image):
    root = tmp_path_factory.mktemp("eval")
    orig, anon = root / "originals", root / "anonymized"
    (orig / "group").mkdir(parents=True)
    (anon / "group").mkdir(parents=True)
    Image.fromarray(astronaut).save(orig / "astro_same.png")
    Image.fromarray(astronaut).save(anon / "astro_same.png")
    Image.fromarray(astronaut).save(orig / "astro_blur.jpg", quality=95)
    Image.fromarray(_blur_face(astronaut)).save(anon / "astro_blur.png")     # other extension: still paired
    crop = t1_image[250:520, 400:900]
    Image.fromarray(crop).save(orig / "group" / "t1crop.png")
    Image.fromarray(crop).save(anon / "group" / "t1crop.webp", lossless=True)
    return orig, anon


def _run_eval(argv):
    """The eval command through the package CLI when every command exists, else through its own parser."""
    if importlib.util.find_spec("nullface.commands.anonymize") is not None:
        from nullface.commands.cli import main
        return main(["eval", *argv])
    from nullface.commands import eval as ev
    parser = argparse.ArgumentParser()
    ev.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.run(args)


def test_eval_command_writes_table_csv_and_sheet(folders, tmp_path, capsys):
    orig, anon = folders
    out = tmp_path / "out"
    sheet_path = tmp_path / "private" / "sheet.png"
    rc = _run_eval([str(orig), str(anon), "-o", str(out), "--contact-sheet", str(sheet_path)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "ORIGINAL faces" in text
    for col in ("Re-ID dlib (%)", "Expression", "Eye open.", "Pose (deg)", "BG PSNR (dB)", "BG SSIM"):
        assert col in text
    assert "3 pair(s)" in text

    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert [r["key"] for r in rows] == ["astro_blur.jpg", "astro_same.png", "group/t1crop.png", "SUMMARY"]
    by = {r["key"]: r for r in rows}
    same = by["astro_same.png"]
    assert float(same["reid_dlib_pct"]) == 100.0
    assert float(same["bg_psnr"]) == E.PSNR_CAP and float(same["bg_ssim"]) == pytest.approx(1.0)
    assert float(same["pose_deg"]) < 0.5 and float(same["expression"]) < 1e-6 and float(same["eye_openness"]) == 0
    crop = by["group/t1crop.png"]
    assert int(crop["faces"]) >= 1 and float(crop["reid_dlib_pct"]) == 100.0
    assert float(crop["pose_deg"]) < 0.5
    blur = by["astro_blur.jpg"]
    assert float(blur["reid_dlib_pct"]) < 100.0
    assert 25.0 < float(blur["bg_psnr"]) < E.PSNR_CAP          # jpeg original vs png: close, not identical
    summary = by["SUMMARY"]
    assert int(summary["faces"]) == sum(int(r["faces"]) for r in rows[:-1])

    report = json.loads((out / "eval.json").read_text())
    assert report["summary"]["pairs"] == 3
    blur_faces = next(p for p in report["pairs"] if p["key"] == "astro_blur.jpg")["faces"]
    real = next(f for f in blur_faces if abs(f["bbox"][0] - ASTRO_FACE[0]) < 10 and abs(f["bbox"][1] - ASTRO_FACE[1]) < 10)
    assert real["reidentified"] == {"dlib": False} and real["scores"]["dlib"] > 0.6

    sheet = Image.open(sheet_path)
    assert sheet.size == (3 * 160, 3 * 160 + 2 * 4)
    arr = np.asarray(sheet.convert("RGB"))
    assert arr[160 + 4:320 + 4, 320:].max() == 0          # the unchanged copy's difference cell is black
    assert arr[:160, 320:].max() > 100                    # the blurred face shows up amplified


def test_contact_sheet_is_opt_in_and_never_beside_the_anonymized_set(folders, tmp_path, capsys):
    """The sheet shows the original faces: not written by default, refused inside the shared folders."""
    orig, anon = folders
    assert _run_eval([str(orig), str(anon)]) == 0                     # default OUTDIR: beside ANONYMIZED
    out = anon.parent / "eval"
    assert sorted(p.name for p in out.iterdir()) == ["eval.csv", "eval.json"]
    for inside in (anon / "sheet.png", out / "sheet.png"):
        assert _run_eval([str(orig), str(anon), "-o", str(out), "--contact-sheet", str(inside)]) == 2
        assert "ORIGINAL faces" in capsys.readouterr().out and not inside.exists()


def test_eval_reports_bad_pairs_and_missing_files(tmp_path, astronaut, capsys):
    orig, anon = tmp_path / "o", tmp_path / "a"
    orig.mkdir(), anon.mkdir()
    Image.fromarray(astronaut).save(orig / "x.png")
    Image.fromarray(astronaut[:256]).save(anon / "x.png")          # wrong size
    Image.fromarray(astronaut).save(orig / "lonely.png")
    Image.fromarray(astronaut).save(anon / "stray.png")
    rc = _run_eval([str(orig), str(anon), "-o", str(tmp_path / "out"), "--max-rows", "1"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "no anonymized copy of lonely" in text and "stray" in text and "with errors" in text
    rows = list(csv.DictReader((tmp_path / "out" / "eval.csv").open()))
    assert rows[0]["key"] == "x.png" and "512x256" in rows[0]["error"]
    assert rows[-1]["key"] == "SUMMARY"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run_eval([str(orig), str(empty), "-o", str(tmp_path / "out2")]) == 2
    assert "no image" in capsys.readouterr().out


def test_pair_files(tmp_path):
    o, a = tmp_path / "o", tmp_path / "a"
    for p in (o / "d" / "one.jpg", o / "two.png", o / "three.png", o / ".hidden.png", o / "notes.txt",
              a / "d" / "one.png", a / "elsewhere" / "two.webp", a / "four.png"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    pairing = E.pair_files(o, a)
    assert [(k, x.name, y.name) for k, x, y in pairing.pairs] == [("d/one.jpg", "one.jpg", "one.png"),
                                                                   ("two.png", "two.png", "two.webp")]
    assert pairing.missing == ("three",) and pairing.extra == ("four",)
    with pytest.raises(InputError, match="does not exist"):
        E.pair_files(o, tmp_path / "nope")


# -------------------------------------------------------------------------------------------- metric units

def _landmarks(landmarker, astronaut):
    return landmarker(astronaut, np.array(ASTRO_FACE, np.float32))


def test_landmark_proxies(landmarker, astronaut):
    pts = _landmarks(landmarker, astronaut)
    assert 0.15 < E.eye_aspect_ratio(pts) < 0.45            # eyes open
    assert E.expression_distance(pts, pts) < 1e-9
    # a similarity transform of the same landmarks is no expression change
    ang = np.deg2rad(20)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    assert E.expression_distance(pts, 1.7 * pts @ rot.T + 40) < 1e-3
    closed = pts.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):     # lids meet half way
        closed[upper] = closed[lower] = (pts[upper] + pts[lower]) / 2
    assert E.eye_aspect_ratio(closed) < 0.01
    assert E.expression_distance(pts, closed) > 0.5
    opened = pts.copy()
    opened[[65, 66, 67], 1] += 15
    assert E.mouth_aspect_ratio(opened) > E.mouth_aspect_ratio(pts) + 0.2


def test_head_pose(landmarker, astronaut):
    size = (astronaut.shape[1], astronaut.shape[0])
    pts = _landmarks(landmarker, astronaut)
    p = E.head_pose(pts, size)
    assert abs(p.yaw) < 20 and abs(p.roll) < 10                 # a near-frontal, upright portrait
    assert E.rotation_angle(p.rotation, E.head_pose(pts, size).rotation) < 1e-6
    mirrored = astronaut[:, ::-1].copy()
    x1, y1, x2, y2 = ASTRO_FACE
    q = E.head_pose(landmarker(mirrored, np.array([512 - x2, y1, 512 - x1, y2], np.float32)), size)
    assert abs(p.yaw + q.yaw) < 4 and abs(p.roll + q.roll) < 4  # mirroring flips yaw and roll
    assert abs(p.pitch - q.pitch) < 4


def test_head_pose_needs_cv2(monkeypatch, landmarker, astronaut):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependencyError, match="opencv"):
        E.head_pose(_landmarks(landmarker, astronaut), (512, 512))


def test_background_metrics(astronaut):
    keep = ~E.face_region_mask(astronaut.shape[:2], [np.array(ASTRO_FACE)], margin=0.25)
    assert not keep[121, 220] and keep[5, 5] and keep.mean() > 0.9
    blurred = _blur_face(astronaut)
    assert E.masked_psnr(astronaut, astronaut, keep) == E.PSNR_CAP
    assert E.masked_ssim(astronaut, astronaut, keep) == pytest.approx(1.0)
    # the blur stays inside the grown box: the background is untouched
    assert E.masked_psnr(astronaut, blurred, keep) == E.PSNR_CAP
    assert E.masked_psnr(astronaut, blurred, np.ones_like(keep)) < 40
    noisy = np.clip(astronaut + np.random.default_rng(0).normal(0, 5, astronaut.shape), 0, 255).astype(np.uint8)
    assert 32 < E.masked_psnr(astronaut, noisy, keep) < 36
    assert np.isnan(E.masked_psnr(astronaut, noisy, np.zeros_like(keep)))


def test_ssim_matches_scikit_image(astronaut):
    from skimage.metrics import structural_similarity
    noisy = np.clip(astronaut + np.random.default_rng(1).normal(0, 12, astronaut.shape), 0, 255).astype(np.uint8)
    ours = E.ssim_map(astronaut, noisy)
    _, ref = structural_similarity(E._luma(astronaut), E._luma(noisy), gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255, full=True)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner] - ref[inner]).max() < 1e-6


def test_table_layout():
    s = E.Summary("folder", 2, 3, {"dlib": 0.0, "arcface": 33.3333}, 2.5, 0.01, 0.02, 1.5, E.PSNR_CAP, 0.99)
    text = E.format_table(s)
    lines = text.splitlines()
    assert "Identity" in lines[0] and "Attribute" in lines[0] and "Background" in lines[0]
    assert "Re-ID dlib (%)" in lines[1] and "Re-ID arcface (%)" in lines[1]
    assert lines[3].startswith("folder") and "33.33" in lines[3] and "100.00" in lines[3]
    nan = E.Summary("x", 0, 0, {"dlib": float("nan")}, *[float("nan")] * 6)
    assert " - " in E.format_table(nan) + " "


def test_eval_with_arcface_root(tmp_path, astronaut, capsys):
    """--insightface-root adds ArcFace (here the tiny random-weight stand-in with ArcFace's signature)."""
    from tests.tiny_models import save_arcface_onnx
    root = tmp_path / "insightface"
    save_arcface_onnx(root / "models" / "buffalo_l" / "w600k_r50.onnx")
    orig, anon = tmp_path / "o", tmp_path / "a"
    orig.mkdir(), anon.mkdir()
    Image.fromarray(astronaut).save(orig / "same.png")
    Image.fromarray(astronaut).save(anon / "same.png")
    rc = _run_eval([str(orig), str(anon), "-o", str(tmp_path / "out"), "--insightface-root", str(root)])
    text = capsys.readouterr().out
    assert rc == 0 and "Re-ID arcface (%)" in text and "Re-ID dlib (%)" in text
    rows = list(csv.DictReader((tmp_path / "out" / "eval.csv").open()))
    assert float(rows[0]["reid_arcface_pct"]) == 100.0 and float(rows[0]["reid_dlib_pct"]) == 100.0

    rc = _run_eval([str(orig), str(anon), "-o", str(tmp_path / "out2"), "--insightface-root", str(tmp_path / "none")])
    text = capsys.readouterr().out
    assert rc == 0 and "ArcFace is skipped" in text and "Re-ID arcface" not in text


def test_byte_identical_background_scores_as_identical(astronaut, t1_image, landmarker):
    """The background is everything outside the region the photo path actually pastes: an output whose
    background is byte-identical scores 100 dB and SSIM 1 (it scored about 34 dB when the background was
    taken as the face boxes grown by 25 %, smaller than the paste region)."""
    from nullface.faces.detect import DlibDetector
    from nullface.privacy.photo import anonymize_photo
    det = DlibDetector()
    invert = lambda image, crops: [255 - c.image for c in crops]  # noqa: E731
    for image in (astronaut, t1_image):
        out = anonymize_photo(image, det, invert).image
        faces = det.detect(image)
        pair = E.evaluate_pair(image, out, faces, [], landmarker, margin=0.25)
        assert pair.bg_psnr == E.PSNR_CAP and pair.bg_ssim == pytest.approx(1.0, abs=1e-12)
        changed = np.any(out != image, -1)
        assert changed.any() and not (changed & ~E.paste_region_mask(image, faces)).any()
