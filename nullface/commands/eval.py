"""``python -m nullface eval ORIGINALS ANONYMIZED [-o OUTDIR]``: the paper's Table 1 for two folders."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from PIL import Image

log = logging.getLogger("nullface")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="re-identification, attribute and background metrics of anonymized images",
        description="Pair the images of ORIGINALS and ANONYMIZED by relative path (extension ignored, then by "
                    "unique file name), detect faces on each original with dlib and report Re-ID %% per recognizer, "
                    "expression / eye-openness / mouth / head-pose distances and background PSNR / SSIM. "
                    "Writes eval.csv and eval.json into OUTDIR; a contact sheet (which shows the ORIGINAL "
                    "faces) only with --contact-sheet FILE.")
    p.add_argument("originals", type=Path, help="folder of original images")
    p.add_argument("anonymized", type=Path, help="folder of anonymized images (same relative names)")
    p.add_argument("-o", "--outdir", type=Path, default=None,
                   help="where to write eval.csv and eval.json (default: ANONYMIZED/../eval)")
    p.add_argument("--insightface-root", type=Path, default=None,
                   help="insightface root holding models/buffalo_l: adds ArcFace (w600k_r50) as a second recognizer")
    p.add_argument("--largest-only", action="store_true", help="evaluate only the largest face of each image")
    p.add_argument("--margin", type=float, default=0.25,
                   help="grow each face box by this fraction per side before measuring the background (default 0.25)")
    p.add_argument("--contact-sheet", type=Path, default=None, metavar="FILE",
                   help="also write a PNG of original | anonymized | amplified difference per pair to FILE. It "
                        "shows the ORIGINAL faces: keep it with the originals (it is refused inside ANONYMIZED "
                        "or OUTDIR, the folders meant to be shared)")
    p.add_argument("--max-rows", type=int, default=24, help="pairs shown in the contact sheet (default 24)")
    p.add_argument("--thumb", type=int, default=160, help="thumbnail cell size in pixels (default 160)")
    p.add_argument("--amplify", type=float, default=8.0, help="difference amplification in the sheet (default 8)")
    p.set_defaults(run=run)
    return p


def _recognizers(args, landmarker) -> list:
    from ..privacy.audit import make_recognizers
    arcface = None
    if args.insightface_root is not None:
        from ..errors import ModelFileError
        from ..faces.identity import ArcFace, find_buffalo
        try:
            arcface = ArcFace(find_buffalo(args.insightface_root) / "w600k_r50.onnx")
        except ModelFileError as exc:
            print(f"warning: ArcFace is skipped: {exc}")
    return make_recognizers(arcface, landmarker=landmarker)


def run(args: argparse.Namespace) -> int:
    from ..privacy.audit import DlibLandmarker, default_detector
    from ..errors import NullFaceError
    from ..privacy.evaluate import contact_sheet, evaluate_folders, format_table, write_csv
    from ..privacy.saving import write_atomic

    if not 32 <= args.thumb <= 512 or args.max_rows < 0 or not 0 <= args.margin <= 2 or args.amplify <= 0:
        print("error: --thumb must be 32..512, --max-rows >= 0, --margin 0..2 and --amplify > 0")
        return 2
    outdir = args.outdir or (args.anonymized.resolve().parent / "eval")
    sheet = args.contact_sheet
    if sheet is not None:
        where = sheet.resolve()
        for shared in (args.anonymized.resolve(), outdir.resolve()):
            if where == shared or shared in where.parents:
                print(f"error: --contact-sheet {sheet} would put the ORIGINAL faces inside {shared}, beside the "
                      "anonymized results or the shared report: write it elsewhere (e.g. next to the originals)")
                return 2
    try:
        landmarker = DlibLandmarker(68)
        recognizers = _recognizers(args, landmarker)
        report = evaluate_folders(args.originals, args.anonymized, default_detector(), recognizers,
                                  landmarker, margin=args.margin, largest_only=args.largest_only,
                                  thumb=args.thumb, max_rows=args.max_rows if sheet is not None else 0,
                                  amplify=args.amplify)
    except NullFaceError as exc:
        print(f"error: {exc}")
        return 2
    pairing = report.pairing
    if not pairing.pairs:
        print(f"error: no image of '{args.originals}' has a counterpart in '{args.anonymized}' "
              "(pairs are matched by relative path or file name, extension ignored)")
        return 2
    for key in pairing.missing:
        print(f"warning: no anonymized copy of {key}")
    for key in pairing.extra:
        print(f"warning: {key} in the anonymized folder has no original")

    outdir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(outdir / "eval.csv", report.results, report.summary)
    write_atomic(outdir / "eval.json", json.dumps(
        {"summary": report.summary.to_dict(), "pairs": [r.to_dict() for r in report.results]},
        indent=1, allow_nan=False).encode("utf-8"))
    print(format_table(report.summary))
    print(f"wrote {csv_path} and {outdir / 'eval.json'}")
    if sheet is not None:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(contact_sheet(report.sheet_rows)).save(sheet)
        print(f"wrote {sheet}: it shows the ORIGINAL faces; do not share it with the anonymized images")
    return 0 if report.summary.errors == 0 else 1
