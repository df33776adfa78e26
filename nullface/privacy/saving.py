"""Save anonymized images with pixels only: no metadata, and names that do not echo the input.

An anonymized face is worthless if the file still says who it was: EXIF can hold GPS coordinates, the
camera's serial number, the capture time and the owner's name; XMP and IPTC hold captions and tagged
people; an embedded thumbnail can still show the original face; ComfyUI's own SaveImage writes the
workflow and prompt (file paths, often the original file name) into PNG text chunks. A file name such
as ``alice_at_home.jpg`` identifies just as well. So this module re-creates the image from its pixel
values, writes no ancillary metadata of any kind, names files ``<prefix>_<counter>.<ext>`` and writes
them atomically without ever overwriting a file.

``write_atomic`` is the package's one atomic file writer (a hidden temp file in the target's folder, flushed,
then renamed): ``save_clean`` (the nodes), ``save_image`` (the CLI) and the CLI's JSON reports use it.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

import numpy as np
from PIL import Image

from ..errors import InputError

FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
_PREFIX_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
COUNTER_DIGITS = 5


def strip_to_pixels(image: np.ndarray | Image.Image) -> Image.Image:
    """A new PIL image built from the pixel values alone: no ``info``, EXIF, ICC, text or palette metadata.

    Accepts a uint8 HxW, HxWx3 or HxWx4 array or a PIL image (converted to RGB/RGBA/L first).
    """
    if isinstance(image, Image.Image):
        mode = image.mode if image.mode in ("RGB", "RGBA", "L") else ("RGBA" if "A" in image.getbands() else "RGB")
        arr = np.array(image.convert(mode))
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise InputError(f"expected a uint8 image array, got {arr.dtype}; convert floats with "
                             "(x * 255).round().clip(0, 255).astype(np.uint8)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.size == 0:
        raise InputError(f"the image is empty (shape {arr.shape}): there is nothing to save")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    out = Image.frombytes(mode, (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    out.info.clear()
    return out


def normalize_format(fmt: str) -> str:
    """'png' | 'jpg' | 'webp' from a format name or extension (``jpeg``, ``.PNG`` ...)."""
    key = str(fmt).lower().lstrip(".")
    if key not in FORMATS:
        raise InputError(f"unsupported image format '{fmt}': use one of png, jpg, webp")
    return FORMATS[key]


def check_prefix(prefix: str) -> str:
    """The file-name prefix, which must be a plain word (letters, digits, '_' or '-'), not a path."""
    if not isinstance(prefix, str) or not _PREFIX_OK.match(prefix):
        raise InputError(f"invalid file name prefix {prefix!r}: use 1-64 letters, digits, '_' or '-' "
                         "(no folders, dots or spaces), e.g. 'anonymized'")
    return prefix


def next_counter(directory: str | Path, prefix: str) -> int:
    """One more than the largest counter of ``<prefix>_<counter>.<any ext>`` files in ``directory``."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)\.[A-Za-z0-9]+$")
    top = 0
    directory = Path(directory)
    if directory.is_dir():
        for entry in os.scandir(directory):
            m = pattern.match(entry.name)
            if m:
                top = max(top, int(m.group(1)))
    return top + 1


def save_options(fmt: str, quality: int = 95) -> dict:
    """PIL ``save`` keyword arguments for a metadata-free file (nothing but pixels is ever passed)."""
    fmt = normalize_format(fmt)
    if fmt == "png":
        return {"format": "PNG", "compress_level": 6}
    if not 1 <= int(quality) <= 100:
        raise InputError(f"quality must be in 1..100, got {quality}")
    if fmt == "jpg":
        return {"format": "JPEG", "quality": int(quality), "optimize": True}
    return {"format": "WEBP", "quality": int(quality), "method": 4}


Writer = Union[bytes, Callable[[BinaryIO], None]]


def _stage(directory: Path, data: Writer) -> Path:
    """A hidden temp file in ``directory`` holding ``data`` (bytes, or a function writing to the open file),
    flushed to disk and readable like any output; removed again if writing fails or is interrupted."""
    fd, tmp_name = tempfile.mkstemp(prefix=".nullface-", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)         # mkstemp creates 0600; an output is an ordinary readable file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _publish(tmp: Path, target: Path) -> bool:
    """Move the finished temp file to ``target`` unless ``target`` exists; True when it was placed."""
    try:
        os.link(tmp, target)         # atomic and fails if the name is taken
    except FileExistsError:
        return False
    except OSError:                  # no hard links on this file system: exists-check + atomic replace
        if target.exists():
            return False
        os.replace(tmp, target)
        return True
    os.unlink(tmp)
    return True


def write_atomic(target: str | Path, data: Writer, *, overwrite: bool = True) -> bool:
    """Write ``data`` (bytes, or a function writing to the open binary file) to ``target`` atomically: the
    file appears whole or not at all, whatever interrupts the write. ``overwrite=False`` never replaces an
    existing file and returns False when ``target`` exists; True when the file was placed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _stage(target.parent, data)
    try:
        if overwrite:
            os.replace(tmp, target)
            return True
        return _publish(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_image(image: np.ndarray, target: str | Path, quality: int = 95) -> None:
    """Pixels only (no EXIF, ICC or text), in the format of ``target``'s extension (png, jpg, webp, bmp, tif),
    atomically (``write_atomic``); an existing ``target`` is replaced. JPEG and BMP have no alpha channel:
    an RGBA image loses its alpha there."""
    target = Path(target)
    ext = target.suffix.lower()
    opts = {".bmp": {"format": "BMP"}, ".tif": {"format": "TIFF"}, ".tiff": {"format": "TIFF"}}.get(ext) \
        or save_options(ext, quality)
    img = strip_to_pixels(image)
    if opts["format"] in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    write_atomic(target, lambda fh: img.save(fh, **opts))


def save_clean(image: np.ndarray | Image.Image, directory: str | Path, prefix: str = "anonymized",
               fmt: str = "png", quality: int = 95) -> Path:
    """Save pixels only as ``directory/<prefix>_<00001>.<ext>``; returns the path written.

    The counter continues after the highest existing one, an existing file is never overwritten, and
    the file appears atomically (written to a hidden temp file in the same folder first).
    """
    fmt = normalize_format(fmt)
    prefix = check_prefix(prefix)
    pil = strip_to_pixels(image)
    if fmt == "jpg" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    kwargs = save_options(fmt, quality)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = _stage(directory, lambda fh: pil.save(fh, **kwargs))     # encoded once, placed under a free name
    try:
        counter = next_counter(directory, prefix)
        for _ in range(10000):
            target = directory / f"{prefix}_{counter:0{COUNTER_DIGITS}d}.{fmt}"
            if _publish(tmp, target):
                return target
            counter += 1
        raise InputError(f"could not find a free file name for prefix '{prefix}' in {directory}")
    finally:
        if tmp.exists():
            tmp.unlink()
