"""``python -m nullface anonymize INPUT... -o OUTDIR``: anonymize every face in files, folders and globs.

Videos (``.mp4 .mov .m4v .mkv .webm .avi``) are anonymized frame by frame with tracking (``commands/video.py``).

Outputs mirror the inputs' folder structure under OUTDIR, as PNG by default (lossless: pixels outside the
faces stay identical), and carry pixels only (no EXIF, no text chunks). ``OUTDIR/report.json`` records every
file seen; a run resumes where the last one stopped (files recorded as done whose output exists are skipped).
Options, model paths, the output folder and the report are checked before any model loads. Exit status:
0 all good, 1 a face failed or a file could not be processed (or had no face with ``--on-no-face error``),
2 bad arguments, output folder, report or model files (nothing processed), 3 faces were ignored
(``--min-face-size``, ``--max-faces``) and ``--allow-ignored-faces`` was not given, 130 interrupted.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


from .methods import METHODS, add_method_flags, build_anonymizer, method_settings, settings_classes
from .options import detector_from_args
from .outputs import VIDEO_EXTS, collect_inputs, output_name, write_json
from .process import process_files, shareable
from .video import process_video
from .report import DONE, REPORT, error_entry, load_report, output_problem, prepare_outdir, print_summary, with_totals

log = logging.getLogger("nullface")

OUTPUT_FORMATS = ("png", "jpg", "webp", "same")
# options that change the output; a resumed run with other values warns (use --overwrite to redo)
# (and every method's settings flags: ``flags.settings_dests``)
OUTPUT_OPTIONS = ("keep", "grow", "feather", "crop_size", "zoom", "checkpoint", "faceid", "detector", "on_failure",
                  "min_face_size", "max_faces", "method", "target", "features",
                  "quality")   # another --format writes other files: those are made, not skipped


def add_parser(sub) -> None:
    keeps = "; ".join(f"{k} {','.join(m.keep) or 'none'}" for k, m in METHODS.items())
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
    p.add_argument("--absolute-paths", action="store_true",
                   help="report.json records absolute paths (default: inputs relative to their input root, "
                        "outputs relative to OUTDIR, model files by name, so the report can be shared)")
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
    m.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet: faster per face once compiled, but each batch size compiles "
                        "first (a minute or more); for large runs on a GPU (docs/scale.md)")
    add_method_flags(p)
    f = p.add_argument_group("faces")
    f.add_argument("--keep", default=None, help=f"regions to keep visible (eyes, brows, nose, mouth, skin, face), "
                                                 f"or none to anonymize the whole face (default: each method's "
                                                 f"own, from its paper: {keeps})")
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
    from ..privacy.photo import PhotoOptions
    batch = PhotoOptions().batch
    f.add_argument("--batch", type=int, default=batch,
                   help=f"faces per UNet call, of one or several files (default {batch}); larger is "
                        "faster on a GPU while it fits in memory, and gives the same result (docs/scale.md)")
    f.add_argument("--on-no-face", choices=("error", "pass"), default="error",
                   help="an image without faces: error (reported, not written) or pass (copied, reported)")
    f.add_argument("--audit", dest="audit", action="store_true", default=None,
                   help="the re-identification audit (the default when dlib is installed): dlib's recognizer checks "
                        "every written face; faces still recognized are retried, then fail. Given explicitly, a "
                        "missing dlib is an error; by default such faces are reported 'not audited'")
    f.add_argument("--no-audit", dest="audit", action="store_false",
                   help="turn the audit off: faces are written unchecked, with a warning, and report.json "
                        "records 'audit': 'off' and 'not audited' for every face")
    f.add_argument("--max-tries", type=int, default=3, help="tries per face in the audit (default 3)")
    f.add_argument("--audit-threshold", type=float, default=0.6,
                   help="dlib distance below which two faces are the same person (default 0.6; higher is stricter)")
    from .inpaint_method import add_arguments as add_inpaint_arguments
    from .video import add_arguments as add_video_arguments
    add_inpaint_arguments(p)
    r = p.add_argument_group("datasets on Ray Data (pip install 'comfyui-nullface[ray]'; docs/scale.md)")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: a pool of workers, each loading the models once (one GPU each where "
                        "there are GPUs); no ADDRESS starts a local Ray instance on this machine, an ADDRESS "
                        "(e.g. ray://head:10001 or auto) joins that cluster. Resume and the report as without it")
    r.add_argument("--ray-workers", type=int, default=0,
                   help="workers with --ray (default: one per GPU of the cluster, else 1)")
    add_video_arguments(p)
    p.set_defaults(run=run)


# ------------------------------------------------------------------------------------------------ inputs


# ------------------------------------------------------------------------------------------------ models


# ------------------------------------------------------------------------------------------------ checks
def check_arguments(args):
    """Every option checked before anything is read or loaded; the PhotoOptions. Raises InputError."""
    import math

    from ..models.devices import pick_device, pick_dtype
    from ..errors import InputError
    options = _options(args)
    method_settings(args)
    if hasattr(args, "max_gap"):
        from .video import video_options
        video_options(args)
    if args.max_tries < 1:
        raise InputError(f"--max-tries must be >= 1 (the first try counts), got {args.max_tries}")
    if not (math.isfinite(args.audit_threshold) and args.audit_threshold >= 0):
        raise InputError(f"--audit-threshold must be a number >= 0, got {args.audit_threshold}")
    if not 1 <= args.quality <= 100:
        raise InputError(f"--quality must be in 1..100, got {args.quality}")
    pick_dtype(pick_device(args.device), args.dtype)            # 'tpu9', 'cuda' without a GPU, 'fp8' ...
    return options


# ------------------------------------------------------------------------------------------------ running
def _options(args):
    from ..privacy.photo import PhotoOptions
    from ..faces.regions import parse_regions
    method = METHODS[getattr(args, "method", "nullface")]
    crop = args.crop_size or method.crop_size
    keep = method.keep if args.keep is None else parse_regions(args.keep)
    return PhotoOptions(crop_size=crop, zoom=args.zoom, keep=keep, grow=args.grow,
                        feather=args.feather, on_failure=args.on_failure, on_no_face=args.on_no_face,
                        min_face_size=args.min_face_size, max_faces=args.max_faces,
                        batch=getattr(args, "batch", PhotoOptions().batch)).validate()


PATH_OPTIONS = ("checkpoint", "faceid", "insightface_root", "features", "target")   # model and image files


def report_options(args, absolute: bool = False) -> dict:
    """The options recorded in report.json: every plain value; without ``absolute``, files by name only and
    no input or output folder (the report goes where the outputs are shared)."""
    current = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    if absolute:
        for k in PATH_OPTIONS:
            if current.get(k):
                current[k] = str(Path(current[k]).expanduser().resolve())
        current["inputs"] = [str(Path(i).expanduser().resolve()) for i in current.get("inputs", [])]
        current["outdir"] = str(Path(current["outdir"]).resolve())
        return current
    for k in PATH_OPTIONS:
        if current.get(k):
            current[k] = Path(current[k]).name
    current.pop("inputs", None)
    current.pop("outdir", None)
    return current


def _comparable(key: str, value):
    """An option's value for the resume check: files by name (the report may hold either form)."""
    return Path(value).name if key in PATH_OPTIONS and isinstance(value, str) and value else value


def _groups(plan: list, size: int) -> list:
    """Consecutive files in groups of up to ``size`` photos; each video alone."""
    groups, photos = [], []
    for item in plan:
        if item[0].suffix.lower() in VIDEO_EXTS:
            groups.append([item])
        else:
            photos.append(item)
            if len(photos) == size:
                groups.append(photos)
                photos = []
    return groups + ([photos] if photos else [])


def _engine(args, anonymizer=None, detector=None):
    """A zero-argument loader of (anonymizer, detector): the injected ones, or the method's models."""
    if anonymizer is None:
        return lambda: build_anonymizer(args)
    return lambda: (anonymizer, detector if detector is not None else detector_from_args(args))


def audit_status(args, anonymizer) -> str:
    """What report.json says of the audit, warned loudly when the faces go unchecked: "on", "off (--no-audit)"
    or "not audited: <why>"."""
    from ..privacy.audit import audit_unavailable
    if getattr(anonymizer, "audited", False):
        return "on"
    if anonymizer is None and getattr(args, "audit", None) is not False and not audit_unavailable():
        return "on"                              # --ray: each worker builds the audited anonymizer
    if getattr(args, "audit", None) is False:
        log.warning("--no-audit: the written faces are NOT checked by a face recognizer; the report says "
                    "'not audited' for each")
        return "off (--no-audit)"
    why = audit_unavailable() or "this anonymizer has no audit"
    log.warning("the written faces are NOT audited (%s); the report says 'not audited' for each", why)
    return f"not audited: {why}"



def input_number(inputs: list[str], src: Path) -> int:
    """Which input argument (1-based) named ``src``: the file itself, a folder above it or a glob matching it."""
    import glob
    target = Path(src).resolve()
    for i, item in enumerate(inputs, 1):
        path = Path(item)
        if path.is_dir():
            if path.resolve() in target.parents:
                return i
        elif path.is_file():
            if path.resolve() == target:
                return i
        elif any(Path(m).resolve() == target for m in glob.glob(item, recursive=True)):
            return i
    return 0


def run(args, anonymizer=None, detector=None, engine=None) -> int:
    """Run the command; ``anonymizer`` / ``detector`` may be injected (tests, other front ends), or an
    ``engine()`` returning both (what each ``--ray`` worker calls once: it must pickle).

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
    absolute = getattr(args, "absolute_paths", False)

    def shown(path: Path, rel: Path) -> str:     # an input whose relative path another input already has:
        if absolute:                               # its relative path and which input argument it came from
            return str(Path(path).resolve())
        return f"{rel} (input {input_number(args.inputs, path)})"
    files = collect_inputs(args.inputs, exclude=outdir, skipped=others, absolute=absolute)
    entries: dict = report.get("files", {})
    current = report_options(args, absolute)
    from .flags import settings_dests
    changed = sorted(k for k in OUTPUT_OPTIONS + settings_dests(settings_classes()) if k in report.get("options", {})
                     and _comparable(k, report["options"][k]) != _comparable(k, current.get(k)))
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
        if problem is None and str(out_rel) in outputs and outputs[str(out_rel)][0] != src:
            first, first_rel = outputs[str(out_rel)]
            problem = (f"its output {out_rel} is already written from {shown(first, first_rel)}: "
                       "rename one of them, run them separately or choose another --format")
        if problem:
            if not absolute:
                problem = problem.replace(str(outdir / out_rel), str(out_rel)).replace(str(src), str(rel))
            refused[shown(src, rel) if any(str(rel) == str(r) for _, r, _ in plan) else str(rel)] = \
                error_entry(src.resolve() if absolute else rel, problem)
        else:
            outputs[str(out_rel)] = (src, rel)
            plan.append((src, rel, out_rel))
    entries.update(refused)
    interrupted = False
    if getattr(args, "ray", None):             # Ray workers do not start in this folder: absolute model paths
        for k in PATH_OPTIONS:
            if getattr(args, k, None):
                setattr(args, k, str(Path(getattr(args, k)).expanduser().resolve()))
    if engine is None:
        engine = _engine(args, anonymizer, detector)
    try:
        if plan and not getattr(args, "ray", None):
            anonymizer, detector = engine()             # models loaded once, for every file
    except NullFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if plan:
        report["audit"] = audit_status(args, anonymizer)
    if plan and getattr(args, "ray", None):
        from .ray_run import run_on_ray
        interrupted = run_on_ray(args, plan, outdir, options, quality, report, entries, report_path, engine)
        plan = []
    # files go through the driver together when the anonymizer batches faces of several photos
    per_group = options.batch if getattr(anonymizer, "many_images", False) else 1
    bar = tqdm(total=len(plan), desc="anonymize", unit="file", file=sys.stderr, disable=None)
    try:
        for part in _groups(plan, per_group):
            src0, rel0, out0 = part[0]
            bar.set_postfix_str(str(rel0)[-40:])
            if src0.suffix.lower() in VIDEO_EXTS:            # a video alone, in chunks of frames
                done_part = [process_video(src0, str(rel0), outdir / out0, detector, anonymizer, options, args)]
            else:
                done_part = process_files([(s, str(r), outdir / o) for s, r, o in part], detector, anonymizer,
                                          options, quality)
            for (src, rel, out_rel), entry in zip(part, done_part):
                entries[str(rel)] = entry if absolute else shareable(entry, src, str(rel), out_rel)
            bar.update(len(part))
            report["files"] = entries
            write_json(report_path, with_totals(report))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: finished files are kept; run the same command again to resume")
    finally:
        bar.close()
    report["files"] = entries
    report["interrupted"] = interrupted
    write_json(report_path, with_totals(report))
    print_summary(report, report_path, skipped)
    if others:
        print(f"{len(others)} other file(s) are not images and were skipped: listed under 'skipped' in the report")
    if interrupted:
        return 130
    t = report["totals"]
    if t["faces_failed"] or t["files_error"] or t["files_failed"] or t["files_no_face"]:
        return 1
    return 3 if t["faces_ignored"] and not getattr(args, "allow_ignored_faces", False) else 0


