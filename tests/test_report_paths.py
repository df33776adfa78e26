"""report.json is meant to be shared: by default it holds no folder of this machine (inputs relative to their
input root, outputs relative to OUTDIR, model files by name); ``--absolute-paths`` keeps them. Resume works
either way. (The report held absolute input paths before.)"""
from __future__ import annotations

import json

from PIL import Image

from tests.test_cli_anonymize import fake_run


def _photos(tmp_path, astronaut):
    src = tmp_path / "private" / "alice" / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "trip" / "a.png")
    Image.fromarray(astronaut).save(src / "b.jpg")
    (src / "notes.txt").write_text("not an image")
    (tmp_path / "private" / "ckpt.safetensors").write_bytes(b"")
    return src


def test_report_holds_no_absolute_path_by_default_and_resumes(tmp_path, astronaut):
    src = _photos(tmp_path, astronaut)
    out = tmp_path / "share"
    argv = [str(src), str(src / "missing.png"), "-o", str(out), "--checkpoint",
            str(tmp_path / "private" / "ckpt.safetensors")]
    assert fake_run(*argv) == 1                                   # missing.png: an error entry
    text = (out / "report.json").read_text()
    assert str(tmp_path) not in text and "alice" not in text, text
    report = json.loads(text)
    files = report["files"]
    assert files["trip/a.png"]["input"] == "trip/a.png" and files["trip/a.png"]["output"] == "trip/a.png"
    assert files["b.jpg"]["output"] == "b.png" and (out / files["b.jpg"]["output"]).is_file()
    assert files["missing.png"]["status"] == "error" and "missing.png" in files["missing.png"]["error"]
    assert set(report["skipped"]) == {"notes.txt"} and report["options"]["checkpoint"] == "ckpt.safetensors"
    calls = []

    def counting(image, crops):
        calls.append(1)
        return [255 - c.image for c in crops]

    assert fake_run(*argv, anonymizer=counting) == 1              # resumes: the done files are skipped
    assert calls == [] and json.loads((out / "report.json").read_text())["files"]["trip/a.png"] == files["trip/a.png"]


def test_absolute_paths_on_request(tmp_path, astronaut):
    src = _photos(tmp_path, astronaut)
    out = tmp_path / "out"
    assert fake_run(str(src), "-o", str(out), "--absolute-paths") == 0
    report = json.loads((out / "report.json").read_text())
    entry = report["files"]["trip/a.png"]
    assert entry["input"] == str((src / "trip" / "a.png").resolve())
    assert entry["output"] == str(out / "trip" / "a.png")
    assert set(report["skipped"]) == {str((src / "notes.txt").resolve())}
    assert report["options"]["inputs"] == [str(src.resolve())]
    calls = []
    assert fake_run(str(src), "-o", str(out), anonymizer=lambda i, c: calls.append(1)) == 0   # resume, other form
    assert calls == []
