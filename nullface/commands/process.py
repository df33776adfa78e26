"""Files through the multi-image driver: read, anonymize together, write atomically, one report entry each
(what a plain run and each ``--ray`` worker do with a group of files)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..faces.imageio import read_image
from ..privacy.saving import save_image

log = logging.getLogger("nullface")


def _read(src: Path):
    from ..errors import NullFaceError
    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    try:
        return read_image(src)
    except NullFaceError:
        raise
    except Exception as exc:
        raise ValueError(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from None


def _fail(entry: dict, exc: BaseException, key: str, audited: bool) -> None:
    """The report entry of a file that was not written: status, error, what was found before it failed."""
    from ..errors import NullFaceError
    kind = type(exc).__name__
    entry["status"] = {"NoFaceError": "no_face", "FaceFailedError": "failed"}.get(kind, "error")
    entry["error"] = str(exc) if isinstance(exc, (NullFaceError, ValueError, OSError)) else f"{kind}: {exc}"
    partial = getattr(exc, "result", None)                       # what was found before the file failed
    if partial is not None:
        entry.update(partial.to_dict())
    entry["faces_found"] = getattr(exc, "faces_found", entry.get("faces_found", 0))
    entry["failed"] = getattr(exc, "faces_failed", entry.get("failed", 0))
    entry["anonymized"] = 0                                      # nothing was written
    if audited and "audit" not in entry:
        entry["audit"] = [a.to_dict() for a in getattr(partial, "audits", [])]
    entry["output"] = None
    log.error("%s: %s", key, entry["error"])


def shareable(entry: dict, src: Path, key: str, out_rel: Path) -> dict:
    """The report entry without any folder of this machine (the report goes where the outputs are shared)."""
    entry["input"] = key
    entry["output"] = None if entry["output"] is None else str(out_rel)
    if "error" in entry:
        entry["error"] = entry["error"].replace(str(src), key)
    return entry


def process_files(files: list, detector, anonymizer, options, quality: int = 95) -> list[dict]:
    """Anonymize files ``[(src, key, target)]`` together through the multi-image driver (the faces of all of
    them share the anonymizer's batches when it takes several photos per call); write each output atomically.
    One report entry per file; never raises, except KeyboardInterrupt. ``seconds`` is the file's share of
    the group's time."""
    from ..privacy.photo import anonymize_photos
    t0 = time.perf_counter()
    audited = hasattr(anonymizer, "audits")
    entries, images, slots = [], [], []
    for k, (src, key, target) in enumerate(files):
        entries.append({"input": str(src), "output": None, "faces_found": 0, "anonymized": 0, "failed": 0,
                        "ignored": 0})
        try:
            images.append(_read(src))
            slots.append(k)
        except Exception as exc:                                 # reported per file; the run goes on
            _fail(entries[k], exc, key, audited)
    results = anonymize_photos(images, detector, anonymizer, options, names=[files[k][1] for k in slots],
                               mode="RGBA") if images else []   # CMYK files are RGB
    for k, res in zip(slots, results):
        entry, (src, key, target) = entries[k], files[k]
        if isinstance(res, BaseException):
            _fail(entry, res, key, audited)
            continue
        entry.update(res.to_dict())
        if audited:
            entry["audit"] = [a.to_dict() for a in res.audits]
        entry["status"] = ("passed" if res.found == 0 and not res.ignored else
                           "done" if res.failed == 0 else "done_with_policy")
        try:
            save_image(res.image, target, quality)
            entry["output"] = str(target)
        except Exception as exc:
            _fail(entry, exc, key, audited)
    share = round((time.perf_counter() - t0) / max(1, len(files)), 3)
    for entry in entries:
        entry["seconds"] = share
    return entries
