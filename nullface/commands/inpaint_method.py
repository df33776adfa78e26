"""``anonymize --method inpaint``: SD1.5 inpainting with attribute guidance (papers/000) for the CLI.

Its settings flags come from ``nullface.methods.inpaint.settings.InpaintSettings`` (``nullface.commands.flags``);
``--seed`` and ``--prompt`` are shared with the other methods, ``--checkpoint`` names the SD1.5 *inpainting* file.
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    g = p.add_argument_group("inpainting inputs (--method inpaint)")
    g.add_argument("--target", metavar="IMAGE", help="the synthesized target face whose attributes the repainted "
                                                     "faces take (required with guidance on)")
    g.add_argument("--features", metavar="FILE", help="FaRL ViT-B/16 .pth (FaRL-Base-Patch16-LAIONFace20M-ep64.pth), "
                                                      "the guidance's feature extractor (required with guidance on)")


def build_anonymizer(args):
    """(anonymizer, detector) for ``nullface.privacy.photo.anonymize_photo``, models loaded once."""
    from ..errors import InputError, ModelFileError
    from ..methods.inpaint.pipeline import check_inpaint_files, inpaint_crop_anonymizer, load_inpaint_pipe
    from ..privacy.photo import as_rgb
    from ..faces.imageio import read_image
    from .options import detector_from_args
    from ..methods.inpaint.settings import InpaintSettings
    from .flags import read_settings
    settings = read_settings(args, InpaintSettings)
    flags = [] if args.checkpoint else ["--checkpoint (the SD1.5 inpainting checkpoint, sd-v1-5-inpainting.ckpt)"]
    if settings.guided:
        flags += [f"{flag} (required by the attribute guidance, or --inpaint-guidance-scale 0)"
                  for flag, v in (("--target", args.target), ("--features", args.features)) if not v]
    try:                              # every missing file (checkpoint, FaRL, target) in one message
        check_inpaint_files(args.checkpoint or None, (args.features or None) if settings.guided else None,
                            (args.target or None) if settings.guided else None)
    except ModelFileError as exc:
        if not flags:
            raise
        flags.append(str(exc))
    if flags:
        raise InputError("required: " + "; ".join(flags))
    target = None
    if settings.guided:
        try:
            target = as_rgb(read_image(Path(args.target)))[0]
        except Exception as exc:
            raise InputError(f"the target image '{args.target}' cannot be read ({exc})") from None
    detector = detector_from_args(args)
    pipe = load_inpaint_pipe(args.checkpoint, args.features if settings.guided else None, device=args.device,
                             dtype=args.dtype)
    pipe.compile = bool(getattr(args, "compile", False))
    from ..methods.anonymizer import crop_audit
    from .options import audit_recognizers
    recognizers = audit_recognizers(args)
    audit = None if recognizers is None else crop_audit(recognizers)
    return inpaint_crop_anonymizer(pipe, target, settings, audit=audit, max_tries=args.max_tries), detector
