"""``anonymize --method inpaint``: SD1.5 inpainting with attribute guidance (papers/000) for the CLI.

Its flags derive from ``nullface.methods.inpaint.sampler.InpaintSettings`` (defaults, help); ``--seed`` and ``--prompt``
are shared with NullFace, ``--checkpoint`` names the SD1.5 *inpainting* file.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

SHARED = {"seed": "seed", "prompt": "prompt"}          # settings field -> existing shared flag's dest
SKIPPED = ("keep_unmasked",)                            # photos always paste the original back
RENAMED = {"steps": "inpaint_steps", "guidance_scale": "inpaint_guidance_scale"}   # --steps, --guidance-scale: other methods'


def _dest(name: str) -> str:
    return SHARED.get(name) or RENAMED.get(name, name)


def add_arguments(p) -> None:
    from ..methods.inpaint.sampler import InpaintSettings
    g = p.add_argument_group("inpainting method (--method inpaint; papers/000, the authors' defaults)")
    g.add_argument("--target", metavar="IMAGE", help="the synthesized target face whose attributes the repainted "
                                                     "faces take (required with guidance on)")
    g.add_argument("--features", metavar="FILE", help="FaRL ViT-B/16 .pth (FaRL-Base-Patch16-LAIONFace20M-ep64.pth), "
                                                      "the guidance's feature extractor (required with guidance on)")
    for f in fields(InpaintSettings):
        if f.name in SHARED or f.name in SKIPPED:
            continue
        dest = _dest(f.name)
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default {f.default})")


def settings_from(args):
    from ..methods.inpaint.sampler import InpaintSettings
    values = {f.name: getattr(args, _dest(f.name)) for f in fields(InpaintSettings) if f.name not in SKIPPED}
    return InpaintSettings(**values).validate()


def build_anonymizer(args):
    """(anonymizer, detector) for ``nullface.privacy.photo.anonymize_photo``, models loaded once."""
    from ..errors import InputError
    from ..methods.inpaint.pipeline import inpaint_crop_anonymizer, load_inpaint_pipe
    from ..privacy.photo import as_rgb
    from ..faces.imageio import read_image
    from .options import detector_from_args
    settings = settings_from(args)
    if not args.checkpoint:
        raise InputError("--checkpoint required: the SD1.5 inpainting checkpoint (sd-v1-5-inpainting.ckpt)")
    target = None
    if settings.guided:
        missing = [flag for flag, v in (("--target", args.target), ("--features", args.features)) if not v]
        if missing:
            raise InputError(f"{' and '.join(missing)} required by the attribute guidance (or --inpaint-guidance-scale 0)")
        try:
            target = as_rgb(read_image(Path(args.target)))[0]
        except Exception as exc:
            raise InputError(f"the target image '{args.target}' cannot be read ({exc})") from None
    detector = detector_from_args(args)
    pipe = load_inpaint_pipe(args.checkpoint, args.features if settings.guided else None, device=args.device,
                             dtype=args.dtype)
    from ..methods.nullface.pipeline import crop_audit
    from .options import audit_recognizers
    recognizers = audit_recognizers(args)
    audit = None if recognizers is None else crop_audit(recognizers)
    return inpaint_crop_anonymizer(pipe, target, settings, audit=audit, max_tries=args.max_tries), detector
