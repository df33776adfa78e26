"""The CLI's files: inputs from files, folders and globs, output names, and the JSON report's atomic write."""
from __future__ import annotations

import glob
import json
from pathlib import Path

from ..privacy.saving import write_atomic

from ..privacy.video_io import VIDEO_EXTS

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS


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
            skipped.setdefault(str(f.resolve() if absolute else rel), f"not an image or video this command reads "
                               f"(extension '{f.suffix or 'none'}'; reads {' '.join(sorted(MEDIA_EXTS))})")

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file():
                    if f.suffix.lower() in MEDIA_EXTS:
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
                if mp.is_file() and mp.suffix.lower() in MEDIA_EXTS:
                    add(mp, rel)
                elif mp.is_file():
                    other(mp, rel)
    return sorted(((f, r) for f, r in found.items()), key=lambda x: str(x[1]))


def output_name(rel: Path, fmt: str) -> Path:
    """Where the output of input ``rel`` goes under OUTDIR: same path, extension of the output format (a
    video keeps its container when it can hold the copied audio, else becomes .mkv)."""
    if rel.suffix.lower() in VIDEO_EXTS:
        from ..privacy.video_io import output_suffix
        return rel.with_suffix(output_suffix(rel.suffix))
    if fmt == "same":
        return rel if rel.suffix.lower() in SAME_KEEPS else rel.with_suffix(".png")
    return rel.with_suffix("." + fmt)


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, written atomically (``nullface.privacy.saving.write_atomic``)."""
    write_atomic(path, json.dumps(data, indent=2).encode())
