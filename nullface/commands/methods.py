"""The CLI's methods: each one's title, model files, crop size, validated settings and engine (``METHODS``)."""
from __future__ import annotations


def _nullface_settings_cls():
    from ..methods.nullface.settings import NullFaceSettings
    return NullFaceSettings


def _revpers_settings_cls():
    from ..methods.revpers.settings import ReversePersonalizationSettings
    return ReversePersonalizationSettings


def _inpaint_settings_cls():
    from ..methods.inpaint.settings import InpaintSettings
    return InpaintSettings


def _nullface_engine(args, faces, audit, settings):
    from ..models.sd15 import load_pipe
    from ..methods.nullface.pipeline import crop_anonymizer
    pipe = load_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype,
                     compile=getattr(args, "compile", False))
    pipe.keep_prompts_only(["", settings.prompt])    # the run's only prompts: the text encoder's memory back
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _revpers_engine(args, faces, audit, settings):
    from ..methods.revpers.pipeline import crop_anonymizer
    from ..models.sdxl import load_revpers_pipe
    pipe = load_revpers_pipe(args.checkpoint, args.faceid, device=args.device, dtype=args.dtype,
                             compile=getattr(args, "compile", False))
    return crop_anonymizer(pipe, faces, settings, audit=audit, max_tries=args.max_tries)


def _revpers_files() -> tuple:
    from ..models.sdxl import REVPERS_FILES
    return REVPERS_FILES


def _nullface_files() -> tuple:
    from ..models.sd15 import SD15_FILES
    return SD15_FILES


def _inpaint_build(args):
    from .inpaint_method import build_anonymizer as build
    return build(args)


class Method:
    """One anonymization method of the CLI: its title, model files, settings class and engine.

    ``settings_cls()`` returns its settings class (flags, defaults, ``KEEP`` and validation come from it);
    ``engine(args, face_models, audit, settings)`` loads the models and returns the crop anonymizer;
    ``files()`` names its checkpoint and FaceID file with their hints (for the one missing-files message). A
    method that loads its own face models gives ``build(args) -> (anonymizer, detector)`` instead.
    """

    def __init__(self, title: str, checkpoint: str, faceid: str | None, settings_cls, engine=None, build=None,
                 files=None):
        self.title, self.checkpoint, self.faceid = title, checkpoint, faceid
        self.settings_cls, self.engine, self.build, self.files = settings_cls, engine, build, files

    @property
    def crop_size(self) -> int:
        """The face crop size: the settings' own ``crop_size`` where the method has one, else PhotoOptions'."""
        from ..privacy.photo import PhotoOptions
        return getattr(self.settings_cls()(), "crop_size", PhotoOptions().crop_size)

    @property
    def keep(self) -> tuple[str, ...]:
        """The regions each face keeps by default (the settings class's ``KEEP``)."""
        return self.settings_cls().KEEP

    def settings(self, args):
        """The method's validated settings from the flags (exit 2 before any model loads)."""
        from .flags import read_settings
        return read_settings(args, self.settings_cls())


METHODS = {
    "nullface": Method("NullFace (SD1.5, DDPM inversion, dual-path identity guidance)",
                       "v1-5-pruned-emaonly.safetensors", "ip-adapter-faceid_sd15.bin", _nullface_settings_cls,
                       _nullface_engine, files=_nullface_files),
    "revpers": Method("Reverse Personalization (SDXL, DPM-Solver++ inversion, negative identity guidance)",
                      "sd_xl_base_1.0.safetensors", "ip-adapter-faceid_sdxl.bin", _revpers_settings_cls,
                      _revpers_engine, files=_revpers_files),
    "inpaint": Method("SD1.5 inpainting with attribute guidance towards --target (papers/000)",
                      "sd-v1-5-inpainting.ckpt", None, _inpaint_settings_cls, build=_inpaint_build),
}


def settings_classes() -> dict:
    """``{method: settings class}`` of every CLI method."""
    return {k: m.settings_cls() for k, m in METHODS.items()}


def add_method_flags(p) -> None:
    """Every method's settings flags, one group per method (built from the settings schema)."""
    from .flags import add_settings_flags
    add_settings_flags(p, settings_classes(), {k: f"--method {k}: {m.title}"
                                               for k, m in METHODS.items()})


def build_anonymizer(args):
    """Load the models once; (anonymizer, detector) for ``nullface.privacy.photo.anonymize_photo``.

    The one place where the CLI meets the diffusion engines (``METHODS``).
    """
    from ..errors import InputError
    from ..faces.identity import load_face_models
    from ..methods.anonymizer import crop_audit
    method = METHODS[getattr(args, "method", "nullface")]
    if method.build is not None:
        return method.build(args)
    from ..errors import ModelFileError
    from ..models.sd15 import check_model_files
    missing = [flag for flag, v in (("--checkpoint", args.checkpoint), ("--faceid", args.faceid)) if not v]
    try:                                                        # every missing file in one message, before any load
        check_model_files(args.checkpoint or None, args.faceid or None, insightface_root=args.insightface_root,
                          kinds=method.files())
    except ModelFileError as exc:
        if not missing:
            raise
        missing.append(str(exc))
    if missing:
        flags = " and ".join(m for m in missing if m.startswith("--"))
        raise InputError("; ".join([f"{flags} required: {method.checkpoint} and {method.faceid}"]
                                   + [m for m in missing if not m.startswith("--")]))
    faces = load_face_models(args.insightface_root, detector=args.detector, score_threshold=args.score_threshold)
    from .options import audit_recognizers
    recognizers = audit_recognizers(args, faces.arcface)         # ArcFace too when buffalo_l is there
    audit = None if recognizers is None else crop_audit(recognizers)
    return method.engine(args, faces, audit, method.settings(args)), faces.detector


def method_settings(args):
    """The method's settings from the flags, validated (settings that would anonymize nothing are refused)."""
    return METHODS[getattr(args, "method", "nullface")].settings(args)
