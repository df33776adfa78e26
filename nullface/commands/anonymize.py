"""``python -m nullface anonymize INPUT... -o OUTDIR``: anonymize every face in files, folders and globs.

Outputs mirror the inputs' folder structure under OUTDIR and carry pixels only (no EXIF, no text
chunks). ``OUTDIR/report.json`` records every file; a run resumes where the last one stopped (files
recorded as done whose output exists are skipped). Exit status: 0 all good, 1 a face failed or a file
could not be processed (or had no face with ``--on-no-face error``), 2 bad arguments, 3 faces were
ignored (``--min-face-size``, ``--max-faces``) and ``--allow-ignored-faces`` was not given, 130 interrupted.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("nullface")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
REPORT = "report.json"
DONE = ("done", "passed")                       # statuses that resume skips
# options that change the output; a resumed run with other values warns (use --overwrite to redo)
OUTPUT_OPTIONS = ("keep", "grow", "feather", "crop_size", "zoom", "steps", "t_skip", "lambda_cfg", "lambda_id",
                  "ip_scale", "mask_delay", "seed", "prompt", "checkpoint", "faceid", "detector", "on_failure",
                  "min_face_size", "max_faces", "method", "skip", "guidance_scale", "id_scale", "target", "features",
                  "inpaint_steps", "start_t", "inpaint_guidance_scale", "sim_weight", "dissim_weight")


def add_parser(sub) -> None:
    from ..settings import NullFaceSettings
    p = sub.add_parser("anonymize", help="anonymize every face in images, folders or globs",
                       description="Anonymize every face with NullFace and write the results under OUTDIR, "
                                   "keeping the folder structure. Resumes: files already done are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns "
                                                              "(quote them: 'photos/**/*.jpg')")
    p.add_argument("-o", "--outdir", required=True, help="output folder (report.json is written there)")
    p.add_argument("--overwrite", action="store_true", help="process every file again, even those already done")
    p.add_argument("--method", choices=tuple(METHODS), default="nullface",
                   help="; ".join(f"{k}: {v.title}" for k, v in METHODS.items()))
    m = p.add_argument_group("models")
    m.add_argument("--checkpoint", help="the method's checkpoint file or diffusers folder (required): "
                   + "; ".join(f"{k}: {v.checkpoint}" for k, v in METHODS.items()))
    m.add_argument("--faceid", help="the method's IP-Adapter FaceID file (required): "
                   + "; ".join(f"{k}: {v.faceid}" for k, v in METHODS.items() if v.faceid))
    m.add_argument("--insightface-root", default=os.path.expanduser("~/.insightface"),
                   help="folder holding models/buffalo_l (default ~/.insightface)")
    m.add_argument("--detector", choices=("auto", "insightface", "dlib"), default="auto",
                   help="face detector (auto: insightface SCRFD if buffalo_l has det_10g.onnx, else dlib)")
    m.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    m.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    g = p.add_argument_group("method (paper defaults)")
    for flag, name in (("--steps", "steps"), ("--t-skip", "t_skip"), ("--lambda-cfg", "lambda_cfg"),
                       ("--lambda-id", "lambda_id"), ("--ip-scale", "ip_adapter_scale"),
                       ("--mask-delay", "mask_delay"), ("--seed", "seed")):
        spec = NullFaceSettings.spec(name)          # default, range and help live on the settings dataclass
        g.add_argument(flag, type=type(spec["default"]), default=spec["default"],
                       help=f"{spec['help']} Default {spec['default']:.4g}.".replace("%", "%%"))
    g.add_argument("--prompt", default="", help="optional attribute prompt, e.g. 'an elderly man'")
    _add_revpers_flags(p)
    f = p.add_argument_group("faces")
    f.add_argument("--keep", default="", help="regions to keep visible, e.g. eyes,mouth (eyes, brows, nose, "
                                              "mouth, skin, face); default: anonymize the whole face")
    f.add_argument("--grow", type=int, default=0, help="grow (+) / shrink (-) the kept regions, crop pixels")
    f.add_argument("--feather", type=float, default=0.0, help="soft edge of the kept regions, crop pixels")
    f.add_argument("--crop-size", type=int, default=None, help="face crop size the model works at (default: "
                   + ", ".join(f"{v.crop_size} for {k}" for k, v in METHODS.items()) + ")")
    f.add_argument("--zoom", type=float, default=1.0, help="crop framing: 1.0 = FFHQ alignment, larger = wider")
    f.add_argument("--min-face-size", type=int, default=0,
                   help="ignore faces smaller than this (pixels, shorter box side): they are left as they are, "
                        "listed in the report, and the exit code is 3 unless --allow-ignored-faces")
    f.add_argument("--max-faces", type=int, default=0,
                   help="anonymize at most this many faces per image, largest first; the others are ignored "
                        "like --min-face-size ones (0 = all)")
    f.add_argument("--allow-ignored-faces", action="store_true",
                   help="faces ignored by --min-face-size / --max-faces do not make the exit code non-zero "
                        "(they are still left unanonymized and listed in the report)")
    f.add_argument("--score-threshold", type=float, default=0.5, help="insightface detection confidence "
                                                                      "(default 0.5; dlib uses its own, 0)")
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
    from .inpaint_method import add_arguments as add_inpaint_arguments
    add_inpaint_arguments(p)
    p.set_defaults(run=run)


# ------------------------------------------------------------------------------------------------ inputs
def collect_inputs(inputs: list[str], exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image named by files, folders and globs.

    Files under ``exclude`` (the output folder) are skipped so that outputs are never taken as inputs.
    A name that matches nothing is kept, to be reported as missing.
    """
    found: dict[Path, Path] = {}
    skip = exclude.resolve() if exclude is not None else None

    def add(f: Path, rel: Path) -> None:
        r = f.resolve()
        if skip is not None and (r == skip or skip in r.parents):
            return
        found.setdefault(r, rel)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                    add(f, f.relative_to(path))
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
                if mp.is_file() and mp.suffix.lower() in IMAGE_EXTS:
                    try:
                        rel = mp.relative_to(base)
                    except ValueError:
                        rel = Path(mp.name)
                    add(mp, rel)
    return sorted(((f, r) for f, r in found.items()), key=lambda x: str(x[1]))


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file, upright (EXIF orientation applied): uint8 gray, RGB or RGBA."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)          # phone pictures: apply the orientation, drop the EXIF
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, np.float64)
            top = 65535.0 if arr.max() > 255 else 255.0
            return np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8)
        if im.mode == "F":
            arr = np.asarray(im, np.float64)
            return np.clip(np.round(arr * (255 if arr.max() <= 1 else 1)), 0, 255).astype(np.uint8)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode not in ("RGB", "RGBA", "L"):
            im = im.convert("RGBA" if "A" in im.getbands() else "L" if im.mode == "1" else "RGB")
        return np.array(im)


def save_image(image: np.ndarray, target: Path) -> None:
    """Pixels only (no EXIF, ICC or text), atomically: a hidden temp file in the same folder, then rename.
    Nothing half-written is left behind, whatever interrupts it."""
    from ..saving import strip_to_pixels
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
           ".tif": "TIFF", ".tiff": "TIFF"}[target.suffix.lower()]
    img = strip_to_pixels(image)
    if fmt in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    opts = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            img.save(fh, format=fmt, **opts)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------------------ models
def _nullface_settings(args):
    from ..settings import NullFaceSettings
    return NullFaceSettings(steps=args.steps, t_skip=args.t_skip, lambda_cfg=args.lambda_cfg,
                            lambda_id=args.lambda_id, ip_adapter_scale=args.ip_scale,
                            mask_delay=args.mask_delay, seed=args.seed, prompt=args.prompt).validate()


def _nullface_engine(args, faces, audit, settings):
    from ..models import load_pipe
    from ..pipeline import crop_anonymizer
    pipe = load_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype)
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _revpers_settings(args):
    from ..revpers import ReversePersonalizationSettings
    given = {n: getattr(args, n) for n in REVPERS_FLAGS if getattr(args, n, None) is not None}
    return ReversePersonalizationSettings(steps=args.steps, ip_adapter_scale=args.ip_scale, seed=args.seed,
                                          prompt=args.prompt, **given).validate()


def _revpers_engine(args, faces, audit, settings):
    from ..revpers import crop_anonymizer
    from ..sdxl import load_revpers_pipe
    pipe = load_revpers_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype)
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _inpaint_settings(args):
    from .inpaint_method import settings_from
    return settings_from(args)


def _inpaint_build(args):
    from .inpaint_method import build_anonymizer as build
    return build(args)


class Method:
    """One anonymization method of the CLI: its title, model files, crop size, settings and engine.

    ``settings(args)`` builds the method's validated settings (called before any model loads);
    ``engine(args, face_models, audit, settings)`` loads the models and returns the crop anonymizer.
    A method that loads its own face models gives ``build(args) -> (anonymizer, detector)`` instead.
    """

    def __init__(self, title: str, checkpoint: str, faceid: str | None, crop_size: int, settings, engine=None,
                 build=None):
        self.title, self.checkpoint, self.faceid, self.crop_size = title, checkpoint, faceid, crop_size
        self.settings, self.engine, self.build = settings, engine, build


METHODS = {
    "nullface": Method("NullFace (SD1.5, DDPM inversion, dual-path identity guidance)",
                       "v1-5-pruned-emaonly.safetensors", "ip-adapter-faceid_sd15.bin", 512,
                       _nullface_settings, _nullface_engine),
    "revpers": Method("Reverse Personalization (SDXL, DPM-Solver++ inversion, negative identity guidance)",
                      "sd_xl_base_1.0.safetensors", "ip-adapter-faceid_sdxl.bin", 1024,
                      _revpers_settings, _revpers_engine),
    "inpaint": Method("SD1.5 inpainting with attribute guidance towards --target (papers/000)",
                      "sd-v1-5-inpainting.ckpt", None, 512, _inpaint_settings, build=_inpaint_build),
}
REVPERS_FLAGS = ("skip", "guidance_scale", "id_scale")   # flags of --method revpers only (its dataclass's help)


def _add_revpers_flags(p) -> None:
    from ..revpers import ReversePersonalizationSettings as RS
    g = p.add_argument_group("Reverse Personalization (--method revpers; --steps --seed --prompt --ip-scale too)")
    for name in REVPERS_FLAGS:
        spec = RS.spec(name)
        g.add_argument("--" + name.replace("_", "-"), type=type(spec["default"]), default=None,
                       help=f"{spec['help']} Default {spec['default']}.")


def build_anonymizer(args):
    """Load the models once; (anonymizer, detector) for ``nullface.photo.anonymize_photo``.

    The one place where the CLI meets the diffusion engines (``METHODS``).
    """
    from ..errors import InputError
    from ..identity import load_face_models
    from ..pipeline import crop_audit
    method = METHODS[getattr(args, "method", "nullface")]
    if method.build is not None:
        return method.build(args)
    missing = [flag for flag, v in (("--checkpoint", args.checkpoint), ("--faceid", args.faceid)) if not v]
    if missing:
        raise InputError(f"{' and '.join(missing)} required: {method.checkpoint} and {method.faceid}")
    if method is METHODS["nullface"]:      # every missing file in one message, before anything loads
        from ..models import check_model_files
        check_model_files(args.checkpoint, args.faceid, insightface_root=args.insightface_root)
    faces = load_face_models(args.insightface_root, detector=args.detector, score_threshold=args.score_threshold)
    audit = None
    if args.audit:
        from ..audit import ArcFaceRecognizer, DlibRecognizer
        recognizers = [DlibRecognizer(threshold=args.audit_threshold)]
        if faces.arcface is not None:                    # buffalo_l present: ArcFace as a second opinion
            recognizers.append(ArcFaceRecognizer(faces.arcface))
        audit = crop_audit(recognizers)
    return method.engine(args, faces, audit, method.settings(args)), faces.detector


def _settings(args):
    """The method's settings from the flags, validated (settings that would anonymize nothing are refused)."""
    return METHODS[getattr(args, "method", "nullface")].settings(args)


def _detector(args):
    from ..detect import make_detector
    return make_detector(args.detector, model_dir=args.insightface_root, score_threshold=args.score_threshold)


# ------------------------------------------------------------------------------------------------ running
def _options(args):
    from ..photo import PhotoOptions
    from ..regions import parse_regions
    crop = args.crop_size or METHODS[getattr(args, "method", "nullface")].crop_size
    return PhotoOptions(crop_size=crop, zoom=args.zoom, keep=parse_regions(args.keep), grow=args.grow,
                        feather=args.feather, on_failure=args.on_failure, on_no_face=args.on_no_face,
                        min_face_size=args.min_face_size, max_faces=args.max_faces).validate()


def _process(src: Path, key: str, target: Path, detector, anonymizer, options) -> dict:
    """Anonymize one file into ``target``; the report entry (never raises, except KeyboardInterrupt)."""
    from ..errors import NullFaceError
    from ..photo import anonymize_photo
    entry = {"input": str(src), "output": None, "faces_found": 0, "anonymized": 0, "failed": 0, "ignored": 0}
    t0 = time.perf_counter()
    try:
        if not src.is_file():
            raise FileNotFoundError(f"no such file: {src}")
        try:
            image = read_image(src)
        except Exception as exc:
            raise ValueError(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from None
        res = anonymize_photo(image, detector, anonymizer, options, name=key)
        entry.update(res.to_dict())
        _take_audits(entry, anonymizer)
        entry["status"] = ("passed" if res.found == 0 and not res.ignored else
                           "done" if res.failed == 0 else "done_with_policy")
        save_image(res.image, target)
        entry["output"] = str(target)
    except Exception as exc:                                     # reported per file; the run goes on
        kind = type(exc).__name__
        entry["status"] = {"NoFaceError": "no_face", "FaceFailedError": "failed"}.get(kind, "error")
        entry["error"] = str(exc) if isinstance(exc, (NullFaceError, ValueError, OSError)) else f"{kind}: {exc}"
        partial = getattr(exc, "result", None)                   # what was found before the file failed
        if partial is not None:
            entry.update(partial.to_dict())
        entry["faces_found"] = getattr(exc, "faces_found", entry.get("faces_found", 0))
        entry["failed"] = getattr(exc, "faces_failed", entry.get("failed", 0))
        entry["anonymized"] = 0                                  # nothing was written
        _take_audits(entry, anonymizer)
        log.error("%s: %s", key, entry["error"])
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    return entry


def _take_audits(entry: dict, anonymizer) -> None:
    """Move the audits of this file's faces (``--audit``: every try) into its report entry."""
    audits = getattr(anonymizer, "audits", None)
    if audits is not None:
        entry["audit"] = [a.to_dict() for a in audits]
        audits.clear()


def run(args, anonymizer=None, detector=None) -> int:
    """Run the command; ``anonymizer`` / ``detector`` may be injected (tests, other front ends)."""
    from tqdm import tqdm

    from ..errors import NullFaceError
    outdir = Path(args.outdir)
    try:
        options = _options(args)
        _settings(args)
    except NullFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outdir.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(args.inputs, exclude=outdir)
    report_path = outdir / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    entries: dict = report.get("files", {})
    current = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    changed = sorted(k for k in OUTPUT_OPTIONS if k in report.get("options", {})
                     and report["options"][k] != current.get(k))
    if changed and not getattr(args, "overwrite", False) and any(e.get("status") in DONE for e in entries.values()):
        log.warning("resuming with other options than the files already done (%s): those files are skipped; "
                    "use --overwrite to redo them", ", ".join(changed))
    report.update({"tool": "nullface anonymize", "options": current})
    todo = [(s, r) for s, r in files if getattr(args, "overwrite", False)
            or not (entries.get(str(r), {}).get("status") in DONE and (outdir / r).is_file())]
    skipped = len(files) - len(todo)
    if skipped:
        log.info("resuming: %d file(s) already done are skipped", skipped)
    interrupted = False
    try:
        if todo and anonymizer is None:
            anonymizer, detector = build_anonymizer(args)
        elif todo and detector is None:
            detector = _detector(args)
    except NullFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outputs: dict[str, Path] = {}
    bar = tqdm(todo, desc="anonymize", unit="file", file=sys.stderr, disable=None)
    try:
        for src, rel in bar:
            key = str(rel)
            bar.set_postfix_str(key[-40:])
            if key in outputs and outputs[key] != src:           # two inputs, one output name
                entry = {"input": str(src), "output": None, "status": "error", "faces_found": 0, "anonymized": 0,
                         "failed": 0, "error": f"its output {key} is already written from {outputs[key]}: "
                                               "rename one of them or run them separately"}
                log.error("%s: %s", src, entry["error"])
                key = str(src)
            else:
                outputs[key] = src
                entry = _process(src, key, outdir / rel, detector, anonymizer, options)
            entries[key] = entry
            report["files"] = entries
            _write_json(report_path, _with_totals(report))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: finished files are kept; run the same command again to resume")
    finally:
        bar.close()
    report["files"] = entries
    report["interrupted"] = interrupted
    _write_json(report_path, _with_totals(report))
    _print_summary(report, report_path, skipped)
    if interrupted:
        return 130
    t = report["totals"]
    if t["faces_failed"] or t["files_error"] or t["files_failed"] or t["files_no_face"]:
        return 1
    return 3 if t["faces_ignored"] and not getattr(args, "allow_ignored_faces", False) else 0


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
        "faces_anonymized": sum(e.get("anonymized", 0) for e in files if e.get("output")),   # written only
        "faces_failed": sum(e.get("failed", 0) for e in files),
        "faces_ignored": sum(e.get("ignored", 0) for e in files),
    }
    return report


def _print_summary(report: dict, path: Path, skipped: int = 0) -> None:
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
