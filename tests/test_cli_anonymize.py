"""``python -m nullface anonymize`` on a folder of mixed inputs, with the real engine on the tiny models."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nullface.cli import main

METHOD = ["--steps", "10", "--t-skip", "7", "--crop-size", "64", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, astronaut):
    src = tmp_path_factory.mktemp("inputs")
    (src / "people").mkdir()
    Image.fromarray(astronaut).save(src / "people" / "astronaut.jpg", exif=b"Exif\x00\x00" + b"\x00" * 20)
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(src / "wall.png")                  # no face
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")                      # corrupt
    Image.fromarray(astronaut).convert("L").save(src / "people" / "gray.png")                     # grayscale
    rgba = np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba).save(src / "people" / "rgba.png")                                        # RGBA
    Image.fromarray(astronaut).resize((3000, 3000)).save(src / "huge.jpg", quality=80)             # huge
    Image.fromarray(astronaut).resize((16, 16)).save(src / "tiny.png")                             # tiny
    return src


def run_cli(tiny, src, out, *extra):
    args = ["anonymize", str(src), "-o", str(out), "--checkpoint", str(tiny["sd15"]), "--faceid",
            str(tiny["faceid_bin"]), "--insightface-root", str(tiny["insightface_root"]), *METHOD, *extra]
    return main(args)


def test_mixed_folder_report_and_exit_code(tiny, mixed, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli(tiny, mixed, out)
    report = json.loads((out / "report.json").read_text())
    files = report["files"]
    assert set(files) == {"people/astronaut.jpg", "wall.png", "broken.jpg", "people/gray.png", "people/rgba.png",
                          "huge.jpg", "tiny.png"}
    assert files["broken.jpg"]["status"] == "error" and "corrupt" in files["broken.jpg"]["error"]
    assert files["wall.png"]["status"] == "no_face" and files["tiny.png"]["status"] == "no_face"
    for name in ("people/astronaut.jpg", "people/gray.png", "people/rgba.png", "huge.jpg"):
        assert files[name]["status"] == "done", (name, files[name])
        assert files[name]["anonymized"] == files[name]["faces_found"] >= 1
        assert (out / name).is_file()
    assert not (out / "wall.png").exists() and not (out / "broken.jpg").exists()
    assert Image.open(out / "people" / "rgba.png").mode == "RGBA"
    assert Image.open(out / "people" / "gray.png").size == (512, 512)
    assert not Image.open(out / "people" / "astronaut.jpg").getexif()          # no metadata carried over
    t = report["totals"]
    assert t["files"] == 7 and t["files_error"] == 1 and t["files_no_face"] == 2 and t["files_done"] == 4
    assert code == 1                                                          # errors and no-face files
    printed = capsys.readouterr().out
    assert "huge.jpg" in printed and "Report:" in printed
    assert not list(out.rglob(".*.part")) and not list(out.rglob("*.tmp"))


def test_resume_skips_done_files_and_pass_policy_exits_zero(tiny, astronaut, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    Image.fromarray(np.full((100, 100, 3), 50, np.uint8)).save(src / "empty.png")
    out = tmp_path / "out"
    assert run_cli(tiny, src, out, "--on-no-face", "pass", "--keep", "eyes,mouth") == 0
    first = (out / "a.png").stat().st_mtime_ns
    report = json.loads((out / "report.json").read_text())
    assert report["files"]["empty.png"]["status"] == "passed"
    assert report["totals"]["faces_anonymized"] >= 1
    import nullface.photo as photo
    calls = []
    monkeypatch.setattr(photo, "anonymize_photo", lambda *a, **k: calls.append(1))
    assert run_cli(tiny, src, out, "--on-no-face", "pass") == 0
    assert calls == [] and (out / "a.png").stat().st_mtime_ns == first


def test_failed_face_policy_and_interrupt(tiny, astronaut, tmp_path, monkeypatch):
    from nullface.commands import anonymize as cmd
    src = tmp_path / "in"
    src.mkdir()
    for n in ("a.png", "b.png", "c.png"):
        Image.fromarray(astronaut).save(src / n)
    out = tmp_path / "out"
    from nullface.cli import build_parser
    args = build_parser().parse_args(["anonymize", str(src), "-o", str(out), "--checkpoint", "x", "--faceid", "y"])
    from nullface.detect import DlibDetector
    det = DlibDetector()
    broken = lambda image, crops: [RuntimeError("boom")] * len(crops)  # noqa: E731
    assert cmd.run(args, anonymizer=broken, detector=det) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["files"]["a.png"]["status"] == "failed" and report["totals"]["faces_failed"] >= 1
    assert not (out / "a.png").exists()                                      # nothing un-anonymized written
    seen = []

    def stop_after_one(image, crops):
        if seen:
            raise KeyboardInterrupt
        seen.append(1)
        return [255 - c.image for c in crops]

    out2 = tmp_path / "out2"
    args.outdir = str(out2)
    assert cmd.run(args, anonymizer=stop_after_one, detector=det) == 130
    report = json.loads((out2 / "report.json").read_text())
    assert report["files"]["a.png"]["status"] == "done" and (out2 / "a.png").is_file()
    assert "b.png" not in report["files"] and not (out2 / "b.png").exists()
    assert not list(out2.glob(".*"))                                          # no half-written file


def test_globs_keep_structure(tmp_path):
    from nullface.commands.anonymize import collect_inputs
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/x.jpg", "a/b/y.png", "a/b/z.txt"):
        (tmp_path / p).write_bytes(b"")
    found = collect_inputs([str(tmp_path / "a" / "**" / "*.*")])
    assert sorted(str(r) for _, r in found) == ["b/y.png", "x.jpg"]
    found = collect_inputs([str(tmp_path / "a")])
    assert sorted(str(r) for _, r in found) == ["b/y.png", "x.jpg"]


def test_audit_retries_then_fails_closed(tiny, astronaut, tmp_path):
    """With --audit, a face dlib still recognizes is retried, then the failure policy applies.

    A threshold of 10 makes dlib call every pair the same person, so every try fails; 0 passes at once.
    """
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    out = tmp_path / "out"
    code = run_cli(tiny, src, out, "--audit", "--max-tries", "2", "--on-failure", "pixelate",
                   "--audit-threshold", "10")
    entry = json.loads((out / "report.json").read_text())["files"]["a.png"]
    audits = entry["audit"]
    assert audits and all(len(a["tries"]) == 2 and not a["passed"] for a in audits)
    tries = audits[0]["tries"]
    assert tries[1]["settings"]["seed"] == tries[0]["settings"]["seed"] + 1
    assert tries[1]["settings"]["lambda_cfg"] > tries[0]["settings"]["lambda_cfg"]
    assert tries[0]["audit"]["results"][0]["recognizer"] == "dlib"
    assert entry["failed"] == len(audits) and all(f["policy"] == "pixelate" for f in entry["faces"])
    assert code == 1 and (out / "a.png").is_file()
    out2 = tmp_path / "out2"
    assert run_cli(tiny, src, out2, "--audit", "--max-tries", "3", "--audit-threshold", "0") == 0
    entry = json.loads((out2 / "report.json").read_text())["files"]["a.png"]
    assert all(a["passed"] and len(a["tries"]) == 1 for a in entry["audit"]) and entry["failed"] == 0
