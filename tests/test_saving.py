"""Saved anonymized images hold pixels only: the files are parsed back byte by byte."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from nullface.privacy import saving
from nullface.errors import InputError

SECRET = "Alice-Smith-SECRET"


def png_chunks(data: bytes) -> list[str]:
    """Chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        out.append(ctype.decode("latin-1"))
        pos += 12 + length
    return out


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of a JPEG's header segments, up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    pos, out = 2, []
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        out.append(marker)
        if marker == 0xDA:                       # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        pos += 2 + length
    return out


def webp_chunks(data: bytes) -> list[str]:
    """Chunk FourCCs of a RIFF WebP file."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    pos, out = 12, []
    while pos < len(data):
        fourcc, size = struct.unpack("<4sI", data[pos:pos + 8])
        out.append(fourcc.decode("latin-1"))
        pos += 8 + size + (size & 1)
    return out


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"                     # Make
    exif[0x013B] = SECRET                       # Artist
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    gps[3] = "E"
    gps[4] = (2.0, 21.0, 3.0)
    return exif


@pytest.fixture(scope="module")
def leaky_sources(tmp_path_factory, astronaut):
    """A JPEG with EXIF GPS + comment and a PNG with text, iTXt, zTXt and EXIF, named after a person."""
    folder = tmp_path_factory.mktemp("src")
    jpg = folder / "alice_smith_home.jpg"
    Image.fromarray(astronaut).save(jpg, quality=90, exif=gps_exif(), comment=SECRET.encode())
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", '{"file": "alice_smith_home.jpg"}')
    info.add_text("prompt", SECRET)
    info.add_itxt("Description", SECRET)
    info.add_text("Comment", SECRET, zip=True)
    png = folder / "alice_smith_home.png"
    Image.fromarray(astronaut).save(png, pnginfo=info, exif=gps_exif())
    # make sure the sources really carry what must not leak
    assert Image.open(jpg).getexif().get_ifd(0x8825)
    assert "workflow" in Image.open(png).info
    assert SECRET.encode() in jpg.read_bytes() and SECRET.encode() in png.read_bytes()
    return jpg, png


def assert_clean(path: Path) -> None:
    data = path.read_bytes()
    assert SECRET.encode() not in data and b"alice" not in data.lower() and b"GPS" not in data
    with Image.open(path) as im:
        assert len(im.getexif()) == 0
        assert not (set(im.info) & {"exif", "icc_profile", "xmp", "comment", "workflow", "prompt", "dpi"})
    ext = path.suffix
    if ext == ".png":
        chunks = png_chunks(data)
        assert chunks[0] == "IHDR" and chunks[-1] == "IEND"
        assert set(chunks) <= {"IHDR", "IDAT", "IEND"}, chunks       # no tEXt/iTXt/zTXt/eXIf/iCCP/tIME
    elif ext == ".jpg":
        markers = jpeg_markers(data)
        assert 0xE1 not in markers                                  # APP1: EXIF / XMP
        assert not any(0xE1 <= m <= 0xEF for m in markers)          # APP2 ICC, APP13 IPTC ...
        assert 0xFE not in markers                                  # COM
    elif ext == ".webp":
        chunks = webp_chunks(data)
        assert not (set(chunks) & {"EXIF", "XMP ", "ICCP"}), chunks
    else:
        raise AssertionError(ext)


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp"])
def test_saved_file_has_no_metadata(tmp_path, astronaut, fmt):
    path = saving.save_clean(astronaut, tmp_path, fmt=fmt)
    assert path.name == f"anonymized_00001.{saving.normalize_format(fmt)}"
    assert_clean(path)
    back = np.asarray(Image.open(path).convert("RGB"))
    assert back.shape == astronaut.shape
    if fmt == "png":
        np.testing.assert_array_equal(back, astronaut)
    else:
        assert np.abs(back.astype(int) - astronaut).mean() < 4


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_source_metadata_does_not_leak(tmp_path, leaky_sources, fmt):
    for source in leaky_sources:
        with Image.open(source) as im:
            im.load()
            path = saving.save_clean(im, tmp_path, fmt=fmt, quality=80)
        assert_clean(path)
        assert "alice" not in path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"anonymized_00001.{fmt}", f"anonymized_00002.{fmt}"]


def test_strip_to_pixels(leaky_sources):
    with Image.open(leaky_sources[1]) as im:
        im.load()
        clean = saving.strip_to_pixels(im)
        assert clean.info == {} and len(clean.getexif()) == 0
        np.testing.assert_array_equal(np.asarray(clean), np.asarray(im.convert("RGB")))
    rgba = saving.strip_to_pixels(np.zeros((4, 5, 4), np.uint8))
    assert rgba.mode == "RGBA" and rgba.size == (5, 4)
    assert saving.strip_to_pixels(np.zeros((4, 5, 1), np.uint8)).mode == "L"
    with pytest.raises(InputError, match="uint8"):
        saving.strip_to_pixels(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(InputError, match="shape"):
        saving.strip_to_pixels(np.zeros((4, 5, 2), np.uint8))


def test_counter_continues_and_never_overwrites(tmp_path, astronaut, monkeypatch):
    small = astronaut[:32, :32]
    (tmp_path / "anonymized_00007.jpg").write_bytes(b"old")
    (tmp_path / "other_00099.png").write_bytes(b"x")
    (tmp_path / "anonymized_final.png").write_bytes(b"x")
    p = saving.save_clean(small, tmp_path)
    assert p.name == "anonymized_00008.png"
    p = saving.save_clean(small, tmp_path, prefix="other", fmt="webp")
    assert p.name == "other_00100.webp"
    # a name taken between counting and writing (another process) is skipped, not overwritten
    (tmp_path / "anonymized_00009.png").write_bytes(b"racer")
    monkeypatch.setattr(saving, "next_counter", lambda d, prefix: 9)
    p = saving.save_clean(small, tmp_path)
    assert p.name == "anonymized_00010.png"
    assert (tmp_path / "anonymized_00009.png").read_bytes() == b"racer"
    assert (tmp_path / "anonymized_00007.jpg").read_bytes() == b"old"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]        # no temp file left behind


def test_rgba_and_permissions(tmp_path):
    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 3] = 128
    png = saving.save_clean(img, tmp_path, fmt="png")
    assert Image.open(png).mode == "RGBA"
    jpg = saving.save_clean(img, tmp_path / "sub" / "dir", fmt="jpg")      # folders are created
    assert Image.open(jpg).mode == "RGB"
    if os.name == "posix":
        assert png.stat().st_mode & 0o044 == 0o044


@pytest.mark.parametrize("prefix", ["", "../evil", "a/b", "with space", ".hidden", "x" * 65, None])
def test_bad_prefix(tmp_path, prefix):
    with pytest.raises(InputError, match="prefix"):
        saving.save_clean(np.zeros((4, 4, 3), np.uint8), tmp_path, prefix=prefix)
    assert list(tmp_path.iterdir()) == []


def test_bad_format_and_quality(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InputError, match="format"):
        saving.save_clean(img, tmp_path, fmt="tiff")
    with pytest.raises(InputError, match="quality"):
        saving.save_clean(img, tmp_path, fmt="jpg", quality=0)
    assert list(tmp_path.iterdir()) == []
