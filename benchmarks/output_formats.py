"""What each ``anonymize --format`` costs on a JPEG photo: file size and background pixels changed.

Runs the CLI on insightface's t1.jpg (6 faces, 1280x886, a JPEG) with a stand-in anonymizer that inverts
each face crop (only the faces may change), once per format, and prints one JSON line per format:
bytes written, size relative to the input JPEG, and pixels outside the faces that differ from the
decoded input.

    python benchmarks/output_formats.py
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.commands.cli import build_parser  # noqa: E402
from nullface.commands import anonymize as cmd  # noqa: E402
from nullface.faces.detect import DlibDetector  # noqa: E402
from nullface.models.resources import package_dir  # noqa: E402


def main() -> None:
    logging.disable(logging.WARNING)
    photo = package_dir("insightface") / "data" / "images" / "t1.jpg"
    original = np.asarray(Image.open(photo).convert("RGB"))
    detector = DlibDetector()
    with tempfile.TemporaryDirectory() as tmp:
        faces = None
        for fmt in ("png", "jpg", "webp"):
            out = Path(tmp) / fmt
            args = build_parser().parse_args(["anonymize", str(photo), "-o", str(out), "--format", fmt])
            cmd.run(args, anonymizer=lambda image, crops: [255 - c.image for c in crops], detector=detector)
            written = out / f"t1.{fmt}"
            result = np.asarray(Image.open(written).convert("RGB"))
            if faces is None:                       # png is lossless: the pixels it changed are the faces
                faces = np.any(result != original, -1)
            background = ~faces
            print(json.dumps({"format": fmt, "bytes": written.stat().st_size,
                              "vs_input": round(written.stat().st_size / photo.stat().st_size, 2),
                              "background_changed": int((np.any(result != original, -1) & background).sum()),
                              "background_pixels": int(background.sum())}))


if __name__ == "__main__":
    main()
