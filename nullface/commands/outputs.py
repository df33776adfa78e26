"""The CLI's files: inputs from files, folders and globs, output names, and pixels-only atomic writes."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


SAME_KEEPS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}   # "same": a GIF is written as PNG


LOSSY = {".jpg", ".jpeg", ".webp"}


def collect_inputs(inputs: list[str], exclude: Path | None = None,
                   skipped: dict[str, str] | None = None, absolute: bool = False) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image named by files, folders and globs.

    Files under ``exclude`` (the output folder) are skipped so that outputs are never taken as inputs.
    A name that matches nothing is kept, to be reported as missing. Every other file seen in a folder or
    glob that is not an image (by extension) goes into ``skipped`` (path -> reason), so the report lists it:
    the path relative to its input root, or its absolute path with ``absolute``.
    """
    found: dict[Path, Path] = {}
    skip = exclude.resolve() if exclude is not None else None

    def outside(f: Path) -> bool:
        r = f.resolve()
        return skip is None or not (r == skip or skip in r.parents)

    def add(f: Path, rel: Path) -> None:
        if outside(f):
            found.setdefault(f.resolve(), rel)

    def other(f: Path, rel: Path) -> None:
        if skipped is not None and outside(f):
            skipped.setdefault(str(f.resolve() if absolute else rel), f"not an image this command reads (extension '{f.suffix or 'none'}'; "
                                       f"reads {' '.join(sorted(IMAGE_EXTS))})")

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file():
                    if f.suffix.lower() in IMAGE_EXTS:
                        add(f, f.relative_to(path))
                    else:
                        other(f, f.relative_to(path))
        elif path.is_file():
            add(path, Path(path.name))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                found.setdefault(path.resolve(), Path(path.name))     # reported as missing later
            parts = path.parts
            first = next((i for i, p in enumerate(parts) if any(ch in p for ch in "*?[")), len(parts) - 1)
            base = Path(*parts[:first]) if first else Path(".")
            for mth in matches:
                mp = Path(mth)
                try:
                    rel = mp.relative_to(base)
                except ValueError:
                    rel = Path(mp.name)
                if mp.is_file() and mp.suffix.lower() in IMAGE_EXTS:
                    add(mp, rel)
                elif mp.is_file():
                    other(mp, rel)
    return sorted(((f, r) for f, r in found.items()), key=lambda x: str(x[1]))


def output_name(rel: Path, fmt: str) -> Path:
    """Where the output of input ``rel`` goes under OUTDIR: same path, extension of the output format."""
    if fmt == "same":
        return rel if rel.suffix.lower() in SAME_KEEPS else rel.with_suffix(".png")
    return rel.with_suffix("." + fmt)


def save_image(image: np.ndarray, target: Path, quality: int = 95) -> None:
    """Pixels only (no EXIF, ICC or text), in the format of ``target``'s extension, atomically: a hidden
    temp file in the same folder, then rename. Nothing half-written is left behind, whatever interrupts it.
    JPEG and BMP have no alpha channel: an RGBA image loses its alpha there."""
    from ..privacy.saving import save_options, strip_to_pixels
    target.parent.mkdir(parents=True, exist_ok=True)
    ext = target.suffix.lower()
    opts = {".bmp": {"format": "BMP"}, ".tif": {"format": "TIFF"}, ".tiff": {"format": "TIFF"}}.get(ext) \
        or save_options(ext, quality)
    img = strip_to_pixels(image)
    if opts["format"] in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            img.save(fh, **opts)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
