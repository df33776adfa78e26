"""NullFace Re-ID Audit: can an independent face recognizer still link the anonymized face to the original?"""
from __future__ import annotations

from typing import Any

from ..nullface.privacy import audit as engine

from ._common import AUDIT, CATEGORY, FACE_MODELS, FACES, images_to_numpy


class NullFaceReIDAudit:
    """Compares each anonymized face with its original using dlib's recognizer (and ArcFace when loaded)."""

    CATEGORY = f"{CATEGORY}/audit"
    FUNCTION = "audit"
    RETURN_TYPES = (AUDIT, "STRING", "BOOLEAN", "INT")
    RETURN_NAMES = ("audit", "report", "passed", "passed_faces")
    OUTPUT_TOOLTIPS = (
        "per-image, per-face audit results (recognizer scores, thresholds, verdicts)",
        "human-readable report of every face",
        "True only when no face of any image is re-identified by any recognizer",
        "number of faces that no recognizer re-identified",
    )
    DESCRIPTION = ("Re-identification audit. A face passes when dlib's ResNet recognizer (independent of the "
                   "ArcFace model that guided the anonymization) puts it at distance >= 0.6 from the original, "
                   "and, when ArcFace is loaded, its cosine similarity is < 0.35. Faces that cannot be measured fail.")

    def __init__(self):
        self._dlib = None   # loaded once per node instance

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "original": ("IMAGE", {"tooltip": "the images before anonymization (one, or one per anonymized image)"}),
                "anonymized": ("IMAGE", {"tooltip": "the anonymized images, same size as the originals"}),
                "dlib_threshold": ("FLOAT", {
                    "default": engine.DLIB_SAME_PERSON_DISTANCE, "min": 0.1, "max": 1.5, "step": 0.01,
                    "tooltip": "dlib distance below which two faces are the same person (dlib's customary 0.6); "
                               "a higher value is a stricter audit"}),
            },
            "optional": {
                "faces": (FACES, {"tooltip": "faces detected on the originals (NullFace Detect Faces); "
                                             "if not connected, dlib detects them"}),
                "face_models": (FACE_MODELS, {"tooltip": "buffalo_l face models: when ArcFace is loaded it "
                                                         "becomes a second recognizer"}),
                "arcface_threshold": ("FLOAT", {
                    "default": engine.ARCFACE_SAME_PERSON_SIMILARITY, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "ArcFace cosine similarity at or above which two faces are the same person "
                               "(0.35: insightface's 'uncertain' band counts as a match); a lower value is stricter"}),
            },
        }

    def _recognizers(self, dlib_threshold: float, face_models: Any, arcface_threshold: float) -> list:
        if self._dlib is None:                          # loaded once, kept at dlib's own threshold
            self._dlib = engine.make_recognizers()[0]
        return engine.make_recognizers(getattr(face_models, "arcface", None), dlib_threshold, arcface_threshold,
                                       dlib=self._dlib)

    def audit(self, original, anonymized, dlib_threshold=engine.DLIB_SAME_PERSON_DISTANCE, faces=None,
              face_models=None, arcface_threshold=engine.ARCFACE_SAME_PERSON_SIMILARITY):
        originals = images_to_numpy(original)
        anons = images_to_numpy(anonymized)
        recognizers = self._recognizers(dlib_threshold, face_models, arcface_threshold)
        audits = engine.audit_images(originals, anons, engine.faces_per_image(faces, len(originals)), recognizers)
        passed_faces = sum(a.passed_count for a in audits)
        return (audits, engine.format_report(audits), all(a.passed for a in audits), passed_faces)


NODE_CLASS_MAPPINGS = {"NullFaceReIDAudit": NullFaceReIDAudit}
NODE_DISPLAY_NAME_MAPPINGS = {"NullFaceReIDAudit": "NullFace Re-ID Audit"}
