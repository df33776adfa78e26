"""The Save Anonymized Image node, run without ComfyUI: files carry pixels only."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from nullface.errors import InputError
from tests.conftest import pack_module
from tests.test_saving import jpeg_markers, png_chunks, webp_chunks

node_save = pack_module("nodes.save")
numpy_to_images = pack_module("nodes._common").numpy_to_images


def test_node_declaration():
    cls = node_save.NullFaceSaveAnonymized
    spec = cls.INPUT_TYPES()
    for group in spec.values():
        for name, (kind, opts) in group.items():
            assert opts.get("tooltip"), name
    assert cls.CATEGORY == "NullFace/save" and cls.OUTPUT_NODE is True and cls.RETURN_TYPES == ()
    assert "prompt" not in str(spec.get("hidden", {}))      # never asks ComfyUI for the workflow
    assert node_save.NODE_DISPLAY_NAME_MAPPINGS["NullFaceSaveAnonymized"] == "NullFace Save Anonymized Image"


def test_saves_outside_comfyui_into_cwd_output(tmp_path, monkeypatch, astronaut):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", None)          # not inside ComfyUI
    images = numpy_to_images([astronaut[:64, :64], astronaut[64:128, :64]])
    out = node_save.NullFaceSaveAnonymized().save(images, "anonymized", "png", 95)
    ui = out["ui"]["images"]
    assert ui == [{"filename": "anonymized_00001.png", "subfolder": "", "type": "output"},
                  {"filename": "anonymized_00002.png", "subfolder": "", "type": "output"}]
    data = (tmp_path / "output" / "anonymized_00001.png").read_bytes()
    assert set(png_chunks(data)) <= {"IHDR", "IDAT", "IEND"}
    back = np.asarray(Image.open(tmp_path / "output" / "anonymized_00002.png"))
    np.testing.assert_array_equal(back, astronaut[64:128, :64])


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_saves_into_comfyui_output_folder(tmp_path, monkeypatch, astronaut, fmt):
    fake = types.SimpleNamespace(get_output_directory=lambda: str(tmp_path / "comfy_out"))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    out = node_save.NullFaceSaveAnonymized().save(numpy_to_images([astronaut]), "anon", fmt, 80, subfolder="batch/1")
    (item,) = out["ui"]["images"]
    assert item == {"filename": f"anon_00001.{fmt}", "subfolder": "batch/1", "type": "output"}
    path = tmp_path / "comfy_out" / "batch" / "1" / item["filename"]
    data = path.read_bytes()
    if fmt == "jpg":
        assert not any(0xE1 <= m <= 0xEF or m == 0xFE for m in jpeg_markers(data))
    else:
        assert not set(webp_chunks(data)) & {"EXIF", "XMP ", "ICCP"}
    assert len(Image.open(path).getexif()) == 0


def test_failed_audit_images_are_not_saved(tmp_path, monkeypatch, astronaut):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", None)
    verdicts = [types.SimpleNamespace(passed=True), types.SimpleNamespace(passed=False)]
    images = numpy_to_images([astronaut[:32, :32]] * 2)
    out = node_save.NullFaceSaveAnonymized().save(images, "anonymized", "png", 95, audit=verdicts)
    assert [i["filename"] for i in out["ui"]["images"]] == ["anonymized_00001.png"]
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["anonymized_00001.png"]
    out = node_save.NullFaceSaveAnonymized().save(images, "anonymized", "png", 95, audit=verdicts[1])
    assert out["ui"]["images"] == []
    with pytest.raises(InputError, match="audit covers 2"):
        node_save.NullFaceSaveAnonymized().save(images[:1], "anonymized", "png", 95, audit=verdicts)


@pytest.mark.parametrize("bad", [{"subfolder": "../up"}, {"subfolder": "/abs/x y"}, {"filename_prefix": "a/b"},
                                 {"filename_prefix": "../x"}])
def test_bad_names_are_rejected(tmp_path, monkeypatch, astronaut, bad):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", None)
    kwargs = {"filename_prefix": "anonymized", "format": "png", "quality": 95, **bad}
    with pytest.raises(InputError):
        node_save.NullFaceSaveAnonymized().save(numpy_to_images([astronaut[:8, :8]]), **kwargs)
    assert not (tmp_path / "output").exists()
