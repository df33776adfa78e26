"""The CLI's methods: each one's title, model files, crop size, validated settings and engine (``METHODS``)."""
from __future__ import annotations

def _nullface_settings(args):
    from ..methods.nullface.settings import NullFaceSettings
    return NullFaceSettings(steps=args.steps, t_skip=args.t_skip, lambda_cfg=args.lambda_cfg,
                            lambda_id=args.lambda_id, ip_adapter_scale=args.ip_scale,
                            mask_delay=args.mask_delay, seed=args.seed, prompt=args.prompt).validate()


def _nullface_engine(args, faces, audit, settings):
    from ..models.sd15 import load_pipe
    from ..methods.nullface.pipeline import crop_anonymizer
    pipe = load_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype)
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _revpers_settings(args):
    from ..methods.revpers.pipeline import ReversePersonalizationSettings
    given = {n: getattr(args, n) for n in REVPERS_FLAGS if getattr(args, n, None) is not None}
    return ReversePersonalizationSettings(steps=args.steps, ip_adapter_scale=args.ip_scale, seed=args.seed,
                                          prompt=args.prompt, **given).validate()


def _revpers_engine(args, faces, audit, settings):
    from ..methods.revpers.pipeline import crop_anonymizer
    from ..models.sdxl import load_revpers_pipe
    pipe = load_revpers_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype)
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _revpers_files() -> tuple:
    from ..models.sdxl import FACEID_SDXL_HINT, SDXL_HINT
    return (("SDXL checkpoint", SDXL_HINT), ("IP-Adapter FaceID SDXL model", FACEID_SDXL_HINT))


def _nullface_files() -> tuple:
    from ..models.sd15 import SD15_FILES
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


def add_revpers_flags(p) -> None:
    from ..methods.revpers.pipeline import ReversePersonalizationSettings as RS
    g = p.add_argument_group("Reverse Personalization (--method revpers; --steps --seed --prompt --ip-scale too)")
    for name in REVPERS_FLAGS:
        spec = RS.spec(name)
        g.add_argument("--" + name.replace("_", "-"), type=type(spec["default"]), default=None,
                       help=f"{spec['help']} Default {spec['default']}.")


def build_anonymizer(args):
    """Load the models once; (anonymizer, detector) for ``nullface.privacy.photo.anonymize_photo``.

    The one place where the CLI meets the diffusion engines (``METHODS``).
    """
    from ..errors import InputError
    from ..faces.identity import load_face_models
    from ..methods.nullface.pipeline import crop_audit
    method = METHODS[getattr(args, "method", "nullface")]
    if method.build is not None:
        return method.build(args)
    missing = [flag for flag, v in (("--checkpoint", args.checkpoint), ("--faceid", args.faceid)) if not v]
    if missing:
        raise InputError(f"{' and '.join(missing)} required: {method.checkpoint} and {method.faceid}")
    from ..models.sd15 import check_model_files                 # every missing file in one message, before any load
    check_model_files(args.checkpoint, args.faceid, insightface_root=args.insightface_root, kinds=method.files())
    faces = load_face_models(args.insightface_root, detector=args.detector, score_threshold=args.score_threshold)
    from .options import audit_recognizers
    recognizers = audit_recognizers(args, faces.arcface)         # ArcFace too when buffalo_l is there
    audit = None if recognizers is None else crop_audit(recognizers)
    return method.engine(args, faces, audit, method.settings(args)), faces.detector


def method_settings(args):
    """The method's settings from the flags, validated (settings that would anonymize nothing are refused)."""
    return METHODS[getattr(args, "method", "nullface")].settings(args)
