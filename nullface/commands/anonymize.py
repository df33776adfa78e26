"""``python -m nullface anonymize INPUT... -o OUTDIR``: anonymize every face in files, folders and globs."""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("nullface")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
REPORT = "report.json"


def add_parser(sub) -> None:
    from ..settings import NullFaceSettings
    d = NullFaceSettings()
    p = sub.add_parser("anonymize", help="anonymize every face in images, folders or globs",
                       description="Anonymize every face with NullFace and write the results under OUTDIR, "
                                   "keeping the folder structure. Resumes: files already done are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    p.add_argument("-o", "--outdir", required=True, help="output folder (report.json is written there)")
    m = p.add_argument_group("models")
    m.add_argument("--checkpoint", required=True, help="SD1.5 .safetensors/.ckpt file or diffusers folder")
    m.add_argument("--faceid", required=True, help="ip-adapter-faceid_sd15.bin")
    m.add_argument("--insightface-root", default=os.path.expanduser("~/.insightface"),
                   help="folder holding models/buffalo_l (default ~/.insightface)")
    m.add_argument("--detector", choices=("auto", "insightface", "dlib"), default="auto",
                   help="face detector (auto: insightface SCRFD if buffalo_l has it, else dlib)")
    m.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    m.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    g = p.add_argument_group("method (paper defaults)")
    g.add_argument("--steps", type=int, default=d.steps, help=f"T (default {d.steps})")
    g.add_argument("--t-skip", type=int, default=d.t_skip, help=f"T_skip (default {d.t_skip})")
    g.add_argument("--lambda-cfg", type=float, default=d.lambda_cfg, help=f"identity guidance (default {d.lambda_cfg})")
    g.add_argument("--lambda-id", type=float, default=d.lambda_id, help=f"identity negation scale (default {d.lambda_id})")
    g.add_argument("--ip-scale", type=float, default=d.ip_adapter_scale, help="IP-Adapter scale (default 1.0)")
    g.add_argument("--mask-delay", type=int, default=d.mask_delay, help=f"steps before the mask (default {d.mask_delay})")
    g.add_argument("--seed", type=int, default=d.seed, help="seed (default 0)")
    g.add_argument("--prompt", default="", help="optional attribute prompt, e.g. 'an elderly man'")
    f = p.add_argument_group("faces")
    f.add_argument("--keep", default="", help="regions to keep visible, e.g. eyes,mouth (eyes, brows, nose, "
                                              "mouth, skin, face)")
    f.add_argument("--grow", type=int, default=0, help="grow (+) / shrink (-) the kept regions, crop pixels")
    f.add_argument("--feather", type=float, default=0.0, help="feather the kept regions, crop pixels")
    f.add_argument("--crop-size", type=int, default=512, help="face crop size the model works at (default 512)")
    f.add_argument("--min-face-size", type=int, default=0, help="ignore faces smaller than this (pixels)")
    f.add_argument("--score-threshold", type=float, default=0.5, help="detector confidence (insightface)")
    f.add_argument("--on-failure", choices=("error", "blur", "pixelate", "keep"), default="error",
                   help="a face that cannot be anonymized: error (the file fails, nothing written), blur, "
                        "pixelate, or keep (loud warning)")
    f.add_argument("--on-no-face", choices=("error", "pass"), default="error",
                   help="an image without faces: error (reported, not written) or pass (copied, reported)")
    f.add_argument("--audit", action="store_true", help="re-identification audit with dlib's recognizer; "
                                                         "faces still recognized are retried, then fail")
    f.add_argument("--max-tries", type=int, default=3, help="tries per face with --audit (default 3)")
    f.add_argument("--audit-threshold", type=float, default=0.6,
                   help="dlib distance below which two faces are the same person (default 0.6; higher is stricter)")
    p.set_defaults(run=run)


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image named by files, folders and globs."""
    found: dict[Path, Path] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                    found.setdefault(f.resolve(), f.relative_to(path))
        elif path.is_file():
            found.setdefault(path.resolve(), Path(path.name))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                found.setdefault(path.resolve(), Path(path.name))     # reported as missing later
            parts = path.parts
            first = next((i for i, p in enumerate(parts) if any(ch in p for ch in "*?[")), len(parts) - 1)
            base = Path(*parts[:first]) if first else Path(".")
            for mth in matches:
                mp = Path(mth)
                if mp.is_file() and mp.suffix.lower() in IMAGE_EXTS:
                    try:
                        rel = mp.relative_to(base)
                    except ValueError:
                        rel = Path(mp.name)
                    found.setdefault(mp.resolve(), rel)
    return sorted(((f, r) for f, r in found.items()), key=lambda x: str(x[1]))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _save_image(image: np.ndarray, target: Path) -> None:
    """Write without metadata, atomically: a temp file in the same folder, then rename."""
    from PIL import Image
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
           ".tif": "TIFF", ".tiff": "TIFF"}[target.suffix.lower()]
    img = Image.fromarray(image)
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    tmp = target.with_name(f".{target.name}.part")
    opts = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with open(tmp, "wb") as fh:
        img.save(fh, format=fmt, **opts)          # a fresh image from pixels: no EXIF, no text chunks
    os.replace(tmp, target)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)          # phone pictures: apply the orientation, drop the EXIF
        if im.mode not in ("RGB", "RGBA", "L"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        return np.asarray(im).copy()


def build_anonymizer(args):
    """Load the models once and return (anonymizer, detector, audits) for the photo pipeline."""
    from ..identity import load_face_models
    from ..models import load_pipe
    from ..pipeline import crop_anonymizer, crop_audit
    from ..settings import NullFaceSettings
    settings = NullFaceSettings(steps=args.steps, t_skip=args.t_skip, lambda_cfg=args.lambda_cfg,
                                lambda_id=args.lambda_id, ip_adapter_scale=args.ip_scale,
                                mask_delay=args.mask_delay, seed=args.seed, prompt=args.prompt).validate()
    faces = load_face_models(args.insightface_root, detector=args.detector, score_threshold=args.score_threshold,
                             min_size=args.min_face_size)
    pipe = load_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype)
    audit = None
    if args.audit:
        from ..audit import DlibRecognizer
        audit = crop_audit([DlibRecognizer(threshold=args.audit_threshold)])
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries), faces.detector


def run(args, anonymizer=None, detector=None) -> int:
    from tqdm import tqdm

    from ..errors import NullFaceError
    from ..photo import PhotoOptions, anonymize_photo
    from ..regions import parse_regions
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    options = PhotoOptions(crop_size=args.crop_size, keep=parse_regions(args.keep), grow=args.grow,
                           feather=args.feather, on_failure=args.on_failure, on_no_face=args.on_no_face).validate()
    files = collect_inputs(args.inputs)
    report_path = outdir / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    entries: dict = report.get("files", {})
    report.update({"tool": "nullface anonymize", "options": {k: v for k, v in vars(args).items()
                                                               if isinstance(v, (str, int, float, bool, list))}})
    if anonymizer is None:
        anonymizer, detector = build_anonymizer(args)
    interrupted = False
    bar = tqdm(files, desc="anonymize", unit="file", file=sys.stderr, disable=None)
    try:
        for src, rel in bar:
            key = str(rel)
            target = outdir / rel
            old = entries.get(key)
            if old and old.get("status") in ("done", "passed") and target.is_file():
                bar.set_postfix_str(f"skip {key}")
                continue
            entry = {"input": str(src), "output": None, "faces_found": 0, "anonymized": 0, "failed": 0}
            t0 = time.perf_counter()
            try:
                if not src.is_file():
                    raise FileNotFoundError(f"no such file: {src}")
                try:
                    image = _read_image(src)
                except Exception as exc:
                    raise ValueError(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from None
                res = anonymize_photo(image, detector, anonymizer, options, name=key)
                entry.update(faces_found=res.found, anonymized=res.anonymized, failed=res.failed,
                             faces=[f.to_dict() for f in res.faces])
                if getattr(anonymizer, "audits", None) is not None:      # --audit: every try of every face
                    entry["audit"] = [a.to_dict() for a in anonymizer.audits]
                    anonymizer.audits.clear()
                if res.found == 0:
                    entry["status"] = "passed"                  # no face, passed through (policy 'pass')
                else:
                    entry["status"] = "done" if res.failed == 0 else "done_with_policy"
                _save_image(res.image, target)
                entry["output"] = str(target)
            except KeyboardInterrupt:
                raise
            except (NullFaceError, ValueError, OSError) as exc:
                kind = type(exc).__name__
                entry["status"] = {"NoFaceError": "no_face", "FaceFailedError": "failed"}.get(kind, "error")
                entry["error"] = str(exc)
                entry["faces_found"] = getattr(exc, "faces_found", 0)
                entry["failed"] = getattr(exc, "faces_failed", 0)
                log.error("%s: %s", key, exc)
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            entries[key] = entry
            report["files"] = entries
            _write_json(report_path, _with_totals(report))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: finished files are kept; run the same command again to resume")
    finally:
        bar.close()
    report["files"] = entries
    _write_json(report_path, _with_totals(report))
    _print_summary(report, report_path)
    if interrupted:
        return 130
    t = report["totals"]
    return 1 if (t["faces_failed"] or t["files_error"] or t["files_failed"] or t["files_no_face"]) else 0


def _with_totals(report: dict) -> dict:
    files = report.get("files", {}).values()
    report["totals"] = {
        "files": len(report.get("files", {})),
        "files_done": sum(e.get("status") in ("done", "done_with_policy") for e in files),
        "files_passed_without_face": sum(e.get("status") == "passed" for e in files),
        "files_no_face": sum(e.get("status") == "no_face" for e in files),
        "files_failed": sum(e.get("status") == "failed" for e in files),
        "files_error": sum(e.get("status") == "error" for e in files),
        "faces_found": sum(e.get("faces_found", 0) for e in files),
        "faces_anonymized": sum(e.get("anonymized", 0) for e in files),
        "faces_failed": sum(e.get("failed", 0) for e in files),
    }
    return report


def _print_summary(report: dict, path: Path) -> None:
    rows = [("file", "status", "found", "anonymized", "failed")]
    for key, e in report.get("files", {}).items():
        rows.append((key, e.get("status", "?"), str(e.get("faces_found", 0)), str(e.get("anonymized", 0)),
                     str(e.get("failed", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    t = report["totals"]
    print(f"\n{t['files']} file(s): {t['files_done']} anonymized, {t['files_passed_without_face']} without face "
          f"(passed), {t['files_no_face']} without face (error), {t['files_failed']} failed, {t['files_error']} "
          f"unreadable; faces: {t['faces_found']} found, {t['faces_anonymized']} anonymized, "
          f"{t['faces_failed']} failed. Report: {path}")
