"""NullFace Save Anonymized Image: pixels only, no workflow / prompt / EXIF, neutral file names."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ..nullface.privacy import saving as engine
from ..nullface.errors import InputError

from ._common import AUDIT, CATEGORY, images_to_numpy

log = logging.getLogger("nullface")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def output_directory() -> Path:
    """ComfyUI's output folder, or ./output outside ComfyUI."""
    try:
        import folder_paths
        return Path(folder_paths.get_output_directory())
    except Exception:
        return Path.cwd() / "output"


def check_subfolder(subfolder: str) -> str:
    """A relative folder of plain names ('' for none); never absolute, never '..'."""
    sub = (subfolder or "").strip().replace("\\", "/").strip("/")
    if not sub:
        return ""
    parts = sub.split("/")
    if not all(_PART.match(p) for p in parts):
        raise InputError(f"invalid subfolder {subfolder!r}: use plain folder names of letters, digits, '_' or '-' "
                         "separated by '/', e.g. 'anonymized/2024'")
    return "/".join(parts)


def audit_verdicts(audit: Any, count: int) -> list[bool] | None:
    """Per-image 'passed' flags from a NULLFACE_AUDIT (one audit, or one per image); None when not connected."""
    if audit is None:
        return None
    audits = list(audit) if isinstance(audit, (list, tuple)) else [audit]
    if len(audits) not in (1, count):
        raise InputError(f"the audit covers {len(audits)} images but {count} images are to be saved")
    flags = [bool(getattr(a, "passed", False)) for a in audits]
    return flags * count if len(flags) == 1 else flags


class NullFaceSaveAnonymized:
    """Saves images with no metadata at all, as ``<prefix>_<counter>.<ext>`` in ComfyUI's output folder."""

    CATEGORY = f"{CATEGORY}/save"
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    DESCRIPTION = ("Saves anonymized images without any metadata: unlike ComfyUI's Save Image it embeds no "
                   "workflow or prompt (which can name the original file), and writes no EXIF, GPS, XMP or ICC "
                   "data. Names are <prefix>_<counter>, never derived from the input. Connect the Re-ID Audit "
                   "to refuse saving images in which a face was re-identified.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "the anonymized images to save"}),
                "filename_prefix": ("STRING", {
                    "default": "anonymized",
                    "tooltip": "file names are <prefix>_00001.<ext>, ...; letters, digits, '_' and '-' only. "
                               "Do not put the person's or the original file's name here"}),
                "format": (["png", "jpg", "webp"], {
                    "default": "png", "tooltip": "png: lossless; jpg and webp: lossy at the given quality"}),
                "quality": ("INT", {"default": 95, "min": 1, "max": 100, "step": 1,
                                    "tooltip": "jpg / webp quality (ignored for png)"}),
            },
            "optional": {
                "subfolder": ("STRING", {"default": "", "tooltip": "optional folder inside the output folder"}),
                "audit": (AUDIT, {"tooltip": "NullFace Re-ID Audit result: images whose audit failed are NOT "
                                             "saved (fail closed)"}),
            },
        }

    def save(self, images, filename_prefix="anonymized", format="png", quality=95, subfolder="", audit=None):
        arrays = images_to_numpy(images)
        sub = check_subfolder(subfolder)
        engine.check_prefix(filename_prefix)
        verdicts = audit_verdicts(audit, len(arrays))
        folder = output_directory() / sub if sub else output_directory()
        results = []
        for i, arr in enumerate(arrays):
            if verdicts is not None and not verdicts[i]:
                log.warning("image %d is not saved: its re-identification audit failed", i)
                continue
            path = engine.save_clean(arr, folder, prefix=filename_prefix, fmt=format, quality=quality)
            results.append({"filename": path.name, "subfolder": sub, "type": "output"})
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {"NullFaceSaveAnonymized": NullFaceSaveAnonymized}
NODE_DISPLAY_NAME_MAPPINGS = {"NullFaceSaveAnonymized": "NullFace Save Anonymized Image"}
