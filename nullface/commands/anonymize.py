"""``python -m nullface anonymize INPUT... -o OUTDIR``: anonymize every face in files, folders and globs.

Outputs mirror the inputs' folder structure under OUTDIR, as PNG by default (lossless: pixels outside the
faces stay identical), and carry pixels only (no EXIF, no text chunks). ``OUTDIR/report.json`` records every
file seen; a run resumes where the last one stopped (files recorded as done whose output exists are skipped).
Options, model paths, the output folder and the report are checked before any model loads. Exit status:
0 all good, 1 a face failed or a file could not be processed (or had no face with ``--on-no-face error``),
2 bad arguments, output folder, report or model files (nothing processed), 3 faces were ignored
(``--min-face-size``, ``--max-faces``) and ``--allow-ignored-faces`` was not given, 130 interrupted.
"""
from __future__ import annotations

import errno
import glob
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("nullface")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
OUTPUT_FORMATS = ("png", "jpg", "webp", "same")
SAME_KEEPS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}   # "same": a GIF is written as PNG
LOSSY = {".jpg", ".jpeg", ".webp"}
REPORT = "report.json"
DONE = ("done", "passed")                       # statuses that resume skips
# options that change the output; a resumed run with other values warns (use --overwrite to redo)
OUTPUT_OPTIONS = ("keep", "grow", "feather", "crop_size", "zoom", "steps", "t_skip", "lambda_cfg", "lambda_id",
                  "ip_scale", "mask_delay", "seed", "prompt", "checkpoint", "faceid", "detector", "on_failure",
                  "min_face_size", "max_faces", "method", "skip", "guidance_scale", "id_scale", "target", "features",
                  "inpaint_steps", "start_t", "inpaint_guidance_scale", "sim_weight", "dissim_weight",
                  "quality")   # another --format writes other files: those are made, not skipped


def add_parser(sub) -> None:
    from ..photo import PhotoOptions
    from ..settings import NullFaceSettings
    keep = ",".join(PhotoOptions().keep) or "none"
    p = sub.add_parser("anonymize", help="anonymize every face in images, folders or globs",
                       description="Anonymize every face with NullFace and write the results under OUTDIR, "
                                   "keeping the folder structure. Resumes: files already done are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns "
                                                              "(quote them: 'photos/**/*.jpg')")
    p.add_argument("-o", "--outdir", required=True, help="output folder (report.json is written there)")
    p.add_argument("--overwrite", action="store_true", help="process every file again, even those already done")
    p.add_argument("--method", choices=tuple(METHODS), default="nullface",
                   help="; ".join(f"{k}: {v.title}" for k, v in METHODS.items()))
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="png",
                   help="output format (default png: lossless, every pixel outside the faces stays identical; "
                        "jpg/webp and 'same' for JPEG inputs re-encode the whole image, changing the background "
                        "slightly; 'same' keeps each input's format, GIF as PNG)")
    p.add_argument("--quality", type=int, default=95, help="jpg/webp quality 1..100 (default 95)")
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
    f.add_argument("--keep", default=keep, help=f"regions to keep visible (eyes, brows, nose, mouth, skin, face), "
                                                f"or none to anonymize the whole face (default {keep}, the paper's)")
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
def collect_inputs(inputs: list[str], exclude: Path | None = None,
                   skipped: dict[str, str] | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image named by files, folders and globs.

    Files under ``exclude`` (the output folder) are skipped so that outputs are never taken as inputs.
    A name that matches nothing is kept, to be reported as missing. Every other file seen in a folder or
    glob that is not an image (by extension) goes into ``skipped`` (path -> reason), so the report lists it.
    """
    found: dict[Path, Path] = {}
    skip = exclude.resolve() if exclude is not None else None

    def outside(f: Path) -> bool:
        r = f.resolve()
        return skip is None or not (r == skip or skip in r.parents)

    def add(f: Path, rel: Path) -> None:
        if outside(f):
            found.setdefault(f.resolve(), rel)

    def other(f: Path) -> None:
        if skipped is not None and outside(f):
            skipped.setdefault(str(f), f"not an image this command reads (extension '{f.suffix or 'none'}'; "
                                       f"reads {' '.join(sorted(IMAGE_EXTS))})")

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file():
                    if f.suffix.lower() in IMAGE_EXTS:
                        add(f, f.relative_to(path))
                    else:
                        other(f)
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
                elif mp.is_file():
                    other(mp)
    return sorted(((f, r) for f, r in found.items()), key=lambda x: str(x[1]))


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file, upright (EXIF orientation applied): uint8 gray, RGB or RGBA.

    Animated or multi-page files (GIF, APNG, WebP, TIFF) are refused: NullFace anonymizes still images and
    never drops frames silently."""
    from PIL import Image, ImageOps

    from ..errors import InputError
    from ..imageio import pil_to_array
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise InputError(f"animated or multi-page image ({frames} frames): only still images are anonymized "
                             "and no frame is dropped; split it into frames (e.g. ffmpeg -i in.gif frames/%04d.png), "
                             "anonymize that folder, then reassemble it")
        im.load()
        im = ImageOps.exif_transpose(im)          # phone pictures: apply the orientation, drop the EXIF
        return pil_to_array(im)


def output_name(rel: Path, fmt: str) -> Path:
    """Where the output of input ``rel`` goes under OUTDIR: same path, extension of the output format."""
    if fmt == "same":
        return rel if rel.suffix.lower() in SAME_KEEPS else rel.with_suffix(".png")
    return rel.with_suffix("." + fmt)


def save_image(image: np.ndarray, target: Path, quality: int = 95) -> None:
    """Pixels only (no EXIF, ICC or text), in the format of ``target``'s extension, atomically: a hidden
    temp file in the same folder, then rename. Nothing half-written is left behind, whatever interrupts it.
    JPEG and BMP have no alpha channel: an RGBA image loses its alpha there."""
    from ..saving import save_options, strip_to_pixels
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


def _revpers_files() -> tuple:
    from ..sdxl import FACEID_SDXL_HINT, SDXL_HINT
    return (("SDXL checkpoint", SDXL_HINT), ("IP-Adapter FaceID SDXL model", FACEID_SDXL_HINT))


def _nullface_files() -> tuple:
    from ..models import SD15_FILES
    return SD15_FILES


def _inpaint_settings(args):
    from .inpaint_method import settings_from
    return settings_from(args)


def _inpaint_build(args):
    from .inpaint_method import build_anonymizer as build
    return build(args)


class Method:
    """One anonymization method of the CLI: its title, model files, crop size, settings and engine.

    ``settings(args)`` builds the method's validated settings (called before any model loads);
    ``engine(args, face_models, audit, settings)`` loads the models and returns the crop anonymizer;
    ``files()`` names its checkpoint and FaceID file with their hints (for the one missing-files message). A method that loads its own face models gives ``build(args) -> (anonymizer, detector)`` instead.
    """

    def __init__(self, title: str, checkpoint: str, faceid: str | None, crop_size: int, settings, engine=None,
                 build=None, files=None):
        self.title, self.checkpoint, self.faceid, self.crop_size = title, checkpoint, faceid, crop_size
        self.settings, self.engine, self.build, self.files = settings, engine, build, files


METHODS = {
    "nullface": Method("NullFace (SD1.5, DDPM inversion, dual-path identity guidance)",
                       "v1-5-pruned-emaonly.safetensors", "ip-adapter-faceid_sd15.bin", 512,
                       _nullface_settings, _nullface_engine, files=_nullface_files),
    "revpers": Method("Reverse Personalization (SDXL, DPM-Solver++ inversion, negative identity guidance)",
                      "sd_xl_base_1.0.safetensors", "ip-adapter-faceid_sdxl.bin", 1024,
                      _revpers_settings, _revpers_engine, files=_revpers_files),
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
    from ..models import check_model_files                 # every missing file in one message, before any load
    check_model_files(args.checkpoint, args.faceid, insightface_root=args.insightface_root, kinds=method.files())
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


# ------------------------------------------------------------------------------------------------ checks
def check_arguments(args):
    """Every option checked before anything is read or loaded; the PhotoOptions. Raises InputError."""
    import math

    from ..devices import pick_device, pick_dtype
    from ..errors import InputError
    options = _options(args)
    _settings(args)
    if args.max_tries < 1:
        raise InputError(f"--max-tries must be >= 1 (the first try counts), got {args.max_tries}")
    if not (math.isfinite(args.audit_threshold) and args.audit_threshold >= 0):
        raise InputError(f"--audit-threshold must be a number >= 0, got {args.audit_threshold}")
    if not 1 <= args.quality <= 100:
        raise InputError(f"--quality must be in 1..100, got {args.quality}")
    pick_dtype(pick_device(args.device), args.dtype)            # 'tpu9', 'cuda' without a GPU, 'fp8' ...
    return options


def _why(exc: OSError) -> str:
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
        raise InputError(f"the output folder '{outdir}' cannot be created ({_why(exc)}): "
                         "choose a writable folder with -o") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".nullface-write-test-", dir=outdir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write in the output folder '{outdir}' ({_why(exc)}): "
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


# ------------------------------------------------------------------------------------------------ running
def _options(args):
    from ..photo import PhotoOptions
    from ..regions import parse_regions
    crop = args.crop_size or METHODS[getattr(args, "method", "nullface")].crop_size
    return PhotoOptions(crop_size=crop, zoom=args.zoom, keep=parse_regions(args.keep), grow=args.grow,
                        feather=args.feather, on_failure=args.on_failure, on_no_face=args.on_no_face,
                        min_face_size=args.min_face_size, max_faces=args.max_faces).validate()


def _process(src: Path, key: str, target: Path, detector, anonymizer, options, quality: int = 95) -> dict:
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
        except NullFaceError:
            raise
        except Exception as exc:
            raise ValueError(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from None
        res = anonymize_photo(image, detector, anonymizer, options, name=key, mode="RGBA")   # CMYK files are RGB
        entry.update(res.to_dict())
        _take_audits(entry, anonymizer)
        entry["status"] = ("passed" if res.found == 0 and not res.ignored else
                           "done" if res.failed == 0 else "done_with_policy")
        save_image(res.image, target, quality)
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


def _error_entry(src: Path, message: str) -> dict:
    log.error("%s: %s", src, message)
    return {"input": str(src), "output": None, "status": "error", "faces_found": 0, "anonymized": 0, "failed": 0,
            "error": message}


def run(args, anonymizer=None, detector=None) -> int:
    """Run the command; ``anonymizer`` / ``detector`` may be injected (tests, other front ends).

    Options, the output folder and the earlier report are checked before anything is processed or loaded:
    a bad one prints one ``error:`` line and returns 2."""
    from tqdm import tqdm

    from ..errors import NullFaceError
    outdir = Path(args.outdir)
    overwrite = getattr(args, "overwrite", False)
    fmt, quality = getattr(args, "format", "png"), getattr(args, "quality", 95)
    report_path = outdir / REPORT
    try:
        options = check_arguments(args)
        prepare_outdir(outdir)
        report = load_report(report_path, overwrite)
    except NullFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    others: dict[str, str] = {}
    files = collect_inputs(args.inputs, exclude=outdir, skipped=others)
    entries: dict = report.get("files", {})
    current = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    changed = sorted(k for k in OUTPUT_OPTIONS if k in report.get("options", {})
                     and report["options"][k] != current.get(k))
    if changed and not overwrite and any(e.get("status") in DONE for e in entries.values()):
        log.warning("resuming with other options than the files already done (%s): those files are skipped; "
                    "use --overwrite to redo them", ", ".join(changed))
    report.update({"tool": "nullface anonymize", "options": current})
    if others:
        log.warning("%d file(s) that are not images were skipped (listed in the report)", len(others))
    report["skipped"] = others

    def done(src: Path, rel: Path) -> bool:
        return entries.get(str(rel), {}).get("status") in DONE and (outdir / output_name(rel, fmt)).is_file()

    todo = [(s, r) for s, r in files if overwrite or not done(s, r)]
    skipped = len(files) - len(todo)
    if skipped:
        log.info("resuming: %d file(s) already done are skipped", skipped)
    # outputs that cannot be written (a file or folder in the way, two inputs with one output name) are
    # reported now, before any model loads, and their inputs are not processed
    plan, refused, outputs = [], {}, {}
    for src, rel in todo:
        out_rel = output_name(rel, fmt)
        problem = output_problem(outdir, out_rel)
        if problem is None and str(out_rel) in outputs and outputs[str(out_rel)] != src:
            problem = (f"its output {out_rel} is already written from {outputs[str(out_rel)]}: "
                       "rename one of them, run them separately or choose another --format")
        if problem:
            refused[str(src) if any(str(rel) == str(r) for _, r, _ in plan) else str(rel)] = _error_entry(src, problem)
        else:
            outputs[str(out_rel)] = src
            plan.append((src, rel, out_rel))
    entries.update(refused)
    interrupted = False
    try:
        if plan and anonymizer is None:
            anonymizer, detector = build_anonymizer(args)
        elif plan and detector is None:
            detector = _detector(args)
    except NullFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(plan, desc="anonymize", unit="file", file=sys.stderr, disable=None)
    try:
        for src, rel, out_rel in bar:
            key = str(rel)
            bar.set_postfix_str(key[-40:])
            entries[key] = _process(src, key, outdir / out_rel, detector, anonymizer, options, quality)
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
    if others:
        print(f"{len(others)} other file(s) are not images and were skipped: listed under 'skipped' in the report")
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
