"""``python -m nullface anonymize`` on a folder of mixed inputs, with the real engine on the tiny models."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nullface.commands.cli import main

# the audit (on by default) is the subject of its own tests: the tiny random models barely change the
# astronaut's mission patch, a false-positive face that dlib then still matches, so the audit rightly fails it
METHOD = ["--steps", "10", "--t-skip", "7", "--crop-size", "64", "--device", "cpu", "--dtype", "fp32", "--no-audit"]


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
        assert (out / name).with_suffix(".png").is_file()                    # PNG by default: lossless
    assert not (out / "wall.png").exists() and not (out / "broken.jpg").exists()
    assert Image.open(out / "people" / "rgba.png").mode == "RGBA"
    assert Image.open(out / "people" / "gray.png").size == (512, 512)
    assert not Image.open(out / "people" / "astronaut.png").getexif()          # no metadata carried over
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
    import nullface.privacy.photo as photo
    calls = []
    monkeypatch.setattr(photo, "anonymize_photos", lambda *a, **k: calls.append(1))
    assert run_cli(tiny, src, out, "--on-no-face", "pass") == 0
    assert calls == [] and (out / "a.png").stat().st_mtime_ns == first


def test_failed_face_policy_and_interrupt(tiny, astronaut, tmp_path, monkeypatch):
    from nullface.commands import anonymize as cmd
    src = tmp_path / "in"
    src.mkdir()
    for n in ("a.png", "b.png", "c.png"):
        Image.fromarray(astronaut).save(src / n)
    out = tmp_path / "out"
    from nullface.commands.cli import build_parser
    args = build_parser().parse_args(["anonymize", str(src), "-o", str(out), "--checkpoint", "x", "--faceid", "y"])
    from nullface.faces.detect import DlibDetector
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


# ------------------------------------------------------------------ fast runs with a fake anonymizer
def parse(*argv):
    from nullface.commands.cli import build_parser
    return build_parser().parse_args(["anonymize", *map(str, argv)])


def fake_run(*argv, anonymizer=None):
    from nullface.commands import anonymize as cmd
    from tests import faces_data as fd
    return cmd.run(parse(*argv), anonymizer=anonymizer or fd.invert, detector=fd.detector())


@pytest.fixture(scope="module")
def mixed_fast(tmp_path_factory, astronaut):
    """Every kind of input a folder of real photos holds."""
    src = tmp_path_factory.mktemp("mixed")
    (src / "people" / "deep").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0110] = "Secret Phone 12"                                     # camera model
    exif[0x0112] = 6                                                     # orientation: turn 90 degrees
    turned = Image.fromarray(astronaut).rotate(90, expand=True)          # as a phone stores it
    turned.save(src / "people" / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(astronaut).save(src / "people" / "deep" / "astronaut.png")
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(src / "wall.png")                  # no face
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")                      # corrupt
    (src / "notes.txt").write_text("not an image")                                                # ignored
    Image.fromarray(astronaut).convert("L").save(src / "people" / "gray.png")                     # grayscale
    rgba = np.concatenate([astronaut, np.full((512, 512, 1), 180, np.uint8)], -1)
    Image.fromarray(rgba).save(src / "people" / "rgba.png")                                        # RGBA
    Image.fromarray((np.asarray(Image.fromarray(astronaut).convert("L")).astype(np.uint16) * 257)).save(
        src / "people" / "sixteen.png")                                                           # 16-bit
    Image.fromarray(astronaut).resize((4000, 3000)).save(src / "huge.jpg", quality=85)           # huge
    Image.fromarray(astronaut).resize((16, 16)).save(src / "tiny.png")                            # tiny
    return src


def test_mixed_folder_fast(mixed_fast, tmp_path, capsys):
    out = tmp_path / "out"
    code = fake_run(mixed_fast, "-o", out)
    report = json.loads((out / "report.json").read_text())
    files = report["files"]
    good = ["people/phone.jpg", "people/deep/astronaut.png", "people/gray.png", "people/rgba.png",
            "people/sixteen.png", "huge.jpg"]
    assert set(files) == set(good) | {"wall.png", "broken.jpg", "tiny.png"}
    for name in good:
        e = files[name]
        assert e["status"] == "done" and e["faces_found"] >= 1 and e["anonymized"] == e["faces_found"], (name, e)
        assert (out / name).with_suffix(".png").is_file() and e["faces"][0]["status"] == "anonymized"
    assert files["broken.jpg"]["status"] == "error" and "corrupt" in files["broken.jpg"]["error"]
    assert files["wall.png"]["status"] == "no_face" and files["tiny.png"]["status"] == "no_face"
    assert not (out / "wall.png").exists() and not (out / "broken.jpg").exists() and not (out / "notes.txt").exists()
    phone = Image.open(out / "people" / "phone.png")
    assert phone.size == (512, 512) and not phone.getexif() and "exif" not in phone.info      # upright, clean
    assert Image.open(out / "people" / "rgba.png").mode == "RGBA"
    assert np.all(np.asarray(Image.open(out / "people" / "rgba.png"))[..., 3] == 180)
    assert Image.open(out / "people" / "gray.png").mode == "L"
    assert Image.open(out / "huge.png").size == (4000, 3000)
    before = np.asarray(Image.open(mixed_fast / "people" / "deep" / "astronaut.png"))
    after = np.asarray(Image.open(out / "people" / "deep" / "astronaut.png"))
    changed = np.any(before != after, -1)
    assert changed.any() and changed.mean() < 0.25 and not changed[:, 420:].any()   # only the faces changed
    t = report["totals"]
    assert (t["files"], t["files_done"], t["files_error"], t["files_no_face"]) == (9, 6, 1, 2)
    assert t["faces_anonymized"] == t["faces_found"] >= 6 and t["faces_failed"] == 0
    assert code == 1                                                        # a corrupt file and two without faces
    printed = capsys.readouterr().out
    assert "huge.jpg" in printed and "Report:" in printed
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]        # no temp files left


def test_resume_skips_done_files_and_retries_the_rest(tmp_path, astronaut, caplog):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    Image.fromarray(astronaut[:, ::-1]).save(src / "b.png")
    Image.fromarray(np.full((100, 100, 3), 50, np.uint8)).save(src / "empty.png")
    out = tmp_path / "out"
    calls = []

    def counting(image, crops):
        calls.append(len(crops))
        return [255 - c.image for c in crops]

    assert fake_run(src, "-o", out, anonymizer=counting) == 1                # empty.png: no face (error)
    first = (out / "a.png").stat().st_mtime_ns
    n = len(calls)
    assert fake_run(src, "-o", out, anonymizer=counting) == 1                # only empty.png is tried again
    assert len(calls) == n and (out / "a.png").stat().st_mtime_ns == first
    assert fake_run(src, "-o", out, "--on-no-face", "pass", anonymizer=counting) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["files"]["empty.png"]["status"] == "passed" and (out / "empty.png").is_file()
    with caplog.at_level("WARNING", logger="nullface"):
        assert fake_run(src, "-o", out, "--on-no-face", "pass", "--keep", "eyes", anonymizer=counting) == 0
    assert "--overwrite" in caplog.text and len(calls) == n               # other options: warned, skipped
    (out / "b.png").unlink()                                              # a lost output is made again
    assert fake_run(src, "-o", out, "--on-no-face", "pass", anonymizer=counting) == 0
    assert len(calls) == n + 1 and (out / "b.png").is_file()
    assert fake_run(src, "-o", out, "--on-no-face", "pass", "--overwrite", anonymizer=counting) == 0
    assert len(calls) == n + 3


def test_outputs_inside_the_input_folder_are_not_taken_as_inputs(tmp_path, astronaut):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    out = src / "anonymized"
    assert fake_run(src, "-o", out) == 0
    assert fake_run(src, "-o", out, "--overwrite") == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["files"]) == ["a.png"] and not (out / "anonymized").exists()


def test_name_collisions_and_missing_files(tmp_path, astronaut):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        Image.fromarray(astronaut).save(tmp_path / d / "same.png")
    out = tmp_path / "out"
    code = fake_run(tmp_path / "x" / "same.png", tmp_path / "y" / "same.png", tmp_path / "nope.png", "-o", out)
    report = json.loads((out / "report.json").read_text())["files"]
    assert code == 1 and report["nope.png"]["status"] == "error" and "no such file" in report["nope.png"]["error"]
    assert report["same.png"]["status"] == "done" and (out / "same.png").is_file()
    clash = report["same.png (input 2)"]                                  # keyed without any folder layout
    assert clash["status"] == "error" and "already written from same.png (input 1)" in clash["error"]
    assert str(tmp_path) not in (out / "report.json").read_text()


def test_interrupt_keeps_finished_files_and_resumes(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("a.png", "b.png", "c.png"):
        Image.fromarray(astronaut).save(src / n)
    out = tmp_path / "out"
    seen = []

    def stop_on_second(image, crops):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return [255 - c.image for c in crops]

    assert fake_run(src, "-o", out, anonymizer=stop_on_second) == 130
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] and list(report["files"]) == ["a.png"] and (out / "a.png").is_file()
    assert not (out / "b.png").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]
    assert fake_run(src, "-o", out) == 0                                    # resumes with b and c
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["files"]) == ["a.png", "b.png", "c.png"] and not report["interrupted"]


def test_an_interrupted_save_leaves_no_half_written_file(tmp_path, astronaut, monkeypatch):
    from nullface.commands import anonymize as cmd
    target = tmp_path / "x.png"

    class Boom(KeyboardInterrupt):
        pass

    def save(self, fh, *a, **k):
        fh.write(b"half")
        raise Boom()

    monkeypatch.setattr(Image.Image, "save", save)
    from nullface.commands import process
    with pytest.raises(Boom):
        process.save_image(astronaut, target)
    assert list(tmp_path.iterdir()) == []


def test_read_image_modes(tmp_path, astronaut):
    from nullface.commands.process import read_image
    pil = Image.fromarray(astronaut)
    pil.convert("P").save(tmp_path / "p.png", transparency=0)
    pil.convert("CMYK").save(tmp_path / "c.jpg")
    pil.convert("1").save(tmp_path / "b.png")
    pil.convert("LA").save(tmp_path / "la.png")
    Image.fromarray(np.asarray(pil.convert("L")).astype(np.uint16) * 257).save(tmp_path / "16.png")
    shapes = {n: read_image(tmp_path / n).shape for n in ("p.png", "c.jpg", "b.png", "la.png", "16.png")}
    assert shapes == {"p.png": (512, 512, 4), "c.jpg": (512, 512, 3), "b.png": (512, 512), "la.png": (512, 512, 4),
                      "16.png": (512, 512)}
    sixteen = read_image(tmp_path / "16.png")
    assert sixteen.dtype == np.uint8 and np.array_equal(sixteen, np.asarray(pil.convert("L")))


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert fake_run(tmp_path, "-o", tmp_path / "o", "--keep", "ears") == 2
    assert "ears" in capsys.readouterr().err
    from nullface.commands import anonymize as cmd
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert cmd.run(parse(tmp_path, "-o", tmp_path / "o2")) == 2               # no --checkpoint / --faceid
    assert "--checkpoint" in capsys.readouterr().err


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


def _args(src, out, *extra):
    from nullface.commands.cli import build_parser
    return build_parser().parse_args(["anonymize", str(src), "-o", str(out), "--checkpoint", "x", "--faceid", "y",
                                      *extra])


def test_ignored_faces_are_listed_and_make_the_exit_code_non_zero(tmp_path):
    """--min-face-size 99 on a crop of t1.jpg with a 108-px and a 90-px face: the small face is left as it
    is, listed with its box and reason, and the run exits 3 unless --allow-ignored-faces."""
    from nullface.commands import anonymize as cmd
    from nullface.faces.detect import DlibDetector
    from tests import faces_data as fd
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(fd.image("t1")[100:500, 200:650]).save(src / "crop.png")
    invert = lambda image, crops: [255 - c.image for c in crops]  # noqa: E731
    out = tmp_path / "out"
    assert cmd.run(_args(src, out, "--min-face-size", "99"), anonymizer=invert, detector=DlibDetector()) == 3
    e = json.loads((out / "report.json").read_text())["files"]["crop.png"]
    assert e["status"] == "done" and e["anonymized"] == 1 and e["ignored"] == 1 and (out / "crop.png").is_file()
    (small,) = e["ignored_faces"]
    assert small["reason"].startswith("smaller than min_face_size=99") and small["bbox"][2] - small["bbox"][0] < 99
    out2 = tmp_path / "out2"
    assert cmd.run(_args(src, out2, "--min-face-size", "99", "--allow-ignored-faces"), anonymizer=invert,
                   detector=DlibDetector()) == 0
    out3 = tmp_path / "out3"                                # --max-faces means the same: the others are ignored
    assert cmd.run(_args(src, out3, "--max-faces", "1"), anonymizer=invert, detector=DlibDetector()) == 3
    e = json.loads((out3 / "report.json").read_text())["files"]["crop.png"]
    assert e["ignored"] == 1 and e["ignored_faces"][0]["reason"].startswith("beyond max_faces=1")


class _Audit:
    def __init__(self, k):
        self.k = k

    def to_dict(self):
        return {"face": self.k, "passed": False}


def test_failed_file_keeps_its_audit_and_counts_every_failed_face(tmp_path, monkeypatch):
    from nullface.commands import anonymize as cmd
    from tests import faces_data as fd
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(fd.image("t1")).save(src / "t1.png")

    def half(image, crops):                       # the first face of the call works, the others fail the audit
        half.audits += [_Audit(len(half.audits) + k) for k in range(len(crops))]
        return [255 - crops[0].image] + [RuntimeError("still re-identified")] * (len(crops) - 1)
    half.audits = []
    out = tmp_path / "out"
    detector = fd.FixedDetector(fd.faces("t1"))
    assert cmd.run(_args(src, out), anonymizer=half, detector=detector) == 1
    report = json.loads((out / "report.json").read_text())
    e = report["files"]["t1.png"]
    assert e["status"] == "failed" and e["faces_found"] == 6
    assert e["failed"] == report["totals"]["faces_failed"] == sum(f["status"] == "failed" for f in e["faces"]) > 1
    assert len(e["audit"]) == 6 and half.audits == []                        # the failed file keeps its audit
    assert e["anonymized"] == 0 and report["totals"]["faces_anonymized"] == 0 and not (out / "t1.png").exists()


def test_totals_count_only_faces_of_written_files(tmp_path, monkeypatch):
    from nullface.commands import anonymize as cmd
    from tests import faces_data as fd
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(fd.image("t1")).save(src / "t1.png")

    def disk_full(image, target):
        raise OSError("No space left on device")
    from nullface.commands import process
    monkeypatch.setattr(process, "save_image", disk_full)
    out = tmp_path / "out"
    invert = lambda image, crops: [255 - c.image for c in crops]  # noqa: E731
    assert cmd.run(_args(src, out), anonymizer=invert, detector=fd.FixedDetector(fd.faces("t1"))) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["files"]["t1.png"]["status"] == "error" and report["totals"]["faces_anonymized"] == 0


@pytest.mark.parametrize("flags, words", [(["--steps", "10", "--t-skip", "10"], "t_skip"),
                                          (["--lambda-cfg", "0"], "lambda_cfg"), (["--lambda-id", "0"], "lambda_id"),
                                          (["--ip-scale", "0"], "ip_adapter_scale"),
                                          (["--mask-delay", "10"], "mask_delay")])
def test_settings_that_anonymize_nothing_are_refused_before_any_file(tmp_path, capsys, flags, words):
    from nullface.commands import anonymize as cmd
    from tests import faces_data as fd
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(fd.image("astronaut")).save(src / "a.png")
    calls = []
    spy = lambda image, crops: calls.append(1) or [255 - c.image for c in crops]  # noqa: E731
    out = tmp_path / "out"
    assert cmd.run(_args(src, out, *flags), anonymizer=spy, detector=fd.FixedDetector(fd.faces("astronaut"))) == 2
    assert words in capsys.readouterr().err and calls == [] and not (out / "a.png").exists()


def test_the_audit_is_on_by_default_and_off_only_loudly(tmp_path, monkeypatch, caplog):
    """The audit's recognizers are built by default when dlib is installed; --no-audit turns it off with a
    warning and a record in the report; without dlib each face is reported 'not audited' (an explicit
    --audit is then an error). --audit stays accepted."""
    import nullface.privacy.audit as audit_mod
    from nullface.commands import anonymize as cmd
    from nullface.commands.options import audit_recognizers
    from nullface.errors import MissingDependencyError
    from tests import faces_data as fd
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(fd.image("astronaut")).save(src / "a.png")
    assert [r.name for r in audit_recognizers(_args(src, tmp_path))] == ["dlib"]            # by default
    assert [r.name for r in audit_recognizers(_args(src, tmp_path, "--audit"))] == ["dlib"]  # still accepted
    assert audit_recognizers(_args(src, tmp_path, "--no-audit")) is None
    detector = fd.FixedDetector(fd.faces("astronaut")[:1])

    def audited(image, crops):                       # what an anonymizer built with the audit says of itself
        return [255 - c.image for c in crops]
    audited.audited = True
    assert cmd.run(_args(src, tmp_path / "on"), anonymizer=audited, detector=detector) == 0
    report = json.loads((tmp_path / "on" / "report.json").read_text())
    assert report["audit"] == "on" and report["files"]["a.png"]["faces"][0]["audit"] == "passed"
    with caplog.at_level("WARNING", logger="nullface"):
        assert cmd.run(_args(src, tmp_path / "off", "--no-audit"), anonymizer=fd.invert, detector=detector) == 0
    assert "--no-audit" in caplog.text and "NOT checked" in caplog.text
    report = json.loads((tmp_path / "off" / "report.json").read_text())
    assert report["audit"] == "off (--no-audit)" and report["options"]["audit"] is False
    assert [f["audit"] for f in report["files"]["a.png"]["faces"]] == ["not audited"]
    monkeypatch.setattr(audit_mod, "audit_unavailable", lambda: "dlib is not installed")
    assert audit_recognizers(_args(src, tmp_path)) is None                # by default: not audited, said so
    with pytest.raises(MissingDependencyError, match="dlib is not installed"):
        audit_recognizers(_args(src, tmp_path, "--audit"))
    assert cmd.run(_args(src, tmp_path / "none"), anonymizer=fd.invert, detector=detector) == 0
    report = json.loads((tmp_path / "none" / "report.json").read_text())
    assert report["audit"] == "not audited: dlib is not installed"
    assert report["files"]["a.png"]["faces"][0]["audit"] == "not audited"
