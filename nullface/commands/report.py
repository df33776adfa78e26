"""The CLI's report.json: the output folder checked before any model loads, resume, totals and the summary."""
from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("nullface")

REPORT = "report.json"


DONE = ("done", "passed")                       # statuses that resume skips


def os_reason(exc: OSError) -> str:
    return {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted",
            errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded"}.get(exc.errno, exc.strerror
                                                                                        or type(exc).__name__)


def prepare_outdir(outdir: Path) -> Path:
    """Create the output folder and prove that a file can be written in it (read-only folder or mount,
    a file in the way ...), before any model loads. Raises InputError."""
    import tempfile

    from ..errors import InputError
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"the output folder '{outdir}' is an existing file: give -o a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"the output folder '{outdir}' cannot be created: part of its path is a file") from None
    except OSError as exc:
        raise InputError(f"the output folder '{outdir}' cannot be created ({os_reason(exc)}): "
                         "choose a writable folder with -o") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".nullface-write-test-", dir=outdir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write in the output folder '{outdir}' ({os_reason(exc)}): "
                         "choose a writable folder with -o") from None
    return outdir


def load_report(path: Path, overwrite: bool = False) -> dict:
    """The report of an earlier run ({} when there is none). A corrupt one stops the run (it alone says which
    files are done); with ``overwrite`` it is kept aside as ``report.corrupt-<time>.json`` and ignored."""
    from ..errors import InputError
    if not path.exists():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict) or not isinstance(report.get("files", {}), dict) \
                or not all(isinstance(e, dict) for e in report.get("files", {}).values()):
            raise ValueError("not a NullFace report")
        return report
    except (OSError, ValueError) as exc:                     # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = f"{type(exc).__name__}: {exc}"
    if not overwrite:
        raise InputError(f"the report of the earlier run, '{path}', is corrupt ({reason}), so the files already "
                         "done are unknown: move it away to start over, or pass --overwrite to redo every file")
    aside = path.with_name(f"report.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.replace(path, aside)
    log.warning("the report '%s' was corrupt (%s): kept as '%s'; every file is processed again", path, reason,
                aside.name)
    return {}


def output_problem(outdir: Path, out_rel: Path) -> str | None:
    """Why the output ``outdir/out_rel`` could not be written (a file or folder in the way), else None."""
    target = outdir / out_rel
    if target.is_dir():
        return f"its output '{target}' is an existing folder"
    for part in reversed(out_rel.parents):                      # outdir itself, then each subfolder
        folder = outdir / part
        if folder.exists() and not folder.is_dir():
            return f"its output folder '{folder}' is an existing file"
    return None


def error_entry(src: Path, message: str) -> dict:
    log.error("%s: %s", src, message)
    return {"input": str(src), "output": None, "status": "error", "faces_found": 0, "anonymized": 0, "failed": 0,
            "error": message}


def with_totals(report: dict) -> dict:
    files = report.get("files", {}).values()
    report["totals"] = {
        "files": len(report.get("files", {})),
        "files_done": sum(e.get("status") in ("done", "done_with_policy") for e in files),
        "files_passed_without_face": sum(e.get("status") == "passed" for e in files),
        "files_no_face": sum(e.get("status") == "no_face" for e in files),
        "files_failed": sum(e.get("status") == "failed" for e in files),
        "files_error": sum(e.get("status") == "error" for e in files),
        "faces_found": sum(e.get("faces_found", 0) for e in files),
        "faces_anonymized": sum(e.get("anonymized", 0) for e in files if e.get("output")),   # written only
        "faces_failed": sum(e.get("failed", 0) for e in files),
        "faces_ignored": sum(e.get("ignored", 0) for e in files),
    }
    return report


def print_summary(report: dict, path: Path, skipped: int = 0) -> None:
    rows = [("file", "status", "found", "anonymized", "failed", "ignored")]
    for key, e in report.get("files", {}).items():
        rows.append((key, e.get("status", "?"), str(e.get("faces_found", 0)), str(e.get("anonymized", 0)),
                     str(e.get("failed", 0)), str(e.get("ignored", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    t = report["totals"]
    print(f"\n{t['files']} file(s): {t['files_done']} anonymized, {t['files_passed_without_face']} without face "
          f"(passed), {t['files_no_face']} without face (error), {t['files_failed']} failed, {t['files_error']} "
          f"unreadable or errored" + (f", {skipped} skipped (already done)" if skipped else "")
          + f"; faces: {t['faces_found']} found, {t['faces_anonymized']} anonymized, {t['faces_failed']} failed"
          + (f", {t['faces_ignored']} IGNORED (left as they are, listed under ignored_faces in the report)"
             if t["faces_ignored"] else "")
          + (". INTERRUPTED: run the same command again to resume" if report.get("interrupted") else "")
          + f". Report: {path}")
