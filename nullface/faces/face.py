"""The one face type: a face found in an image, carried from detection to the report.

Detection creates a ``Face``; the crop (``nullface.faces.crop.FaceCrop.face``), the audit
(``nullface.privacy.audit.FaceAudit.face``), the photo result (``nullface.privacy.photo.FaceOutcome.face``,
``PhotoResult.ignored``) and the report (``Face.to_dict``) carry it. Objects derived from a face reference
it instead of repeating its box, score or landmarks. A face moved into another frame (a crop, landmarks
re-fitted on the anonymized image) is a new ``Face`` made with ``dataclasses.replace``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One face in an image (pixel coordinates of that image)."""

    bbox: np.ndarray                        # (4,) float32 x1, y1, x2, y2
    score: float                            # the detector's own scale (SCRFD 0..1, dlib's SVM margin)
    kps: np.ndarray                         # (5,2) float32: left eye, right eye, nose, left/right mouth corner
    landmarks: np.ndarray | None = None     # (68,2) float32 iBUG-68 order (dlib), (5,2) dlib's 5-point model, or None
    backend: str = "dlib"                   # the detector that found it
    ignored: str | None = None              # why this face is left as it is (``select_faces``); None = anonymize

    @property
    def landmarks68(self) -> np.ndarray | None:
        """The 68 iBUG landmarks when known, else None."""
        lm = self.landmarks
        return lm if lm is not None and len(lm) == 68 else None

    @property
    def size(self) -> float:
        """The shorter side of the box."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    def box_list(self) -> list[float]:
        """The box rounded for reports (0.1 px)."""
        return [round(float(v), 1) for v in self.bbox]

    def to_dict(self) -> dict:
        """The report's record of the face: box, score, detector, and the reason when it is ignored."""
        d = {"bbox": self.box_list(), "score": round(float(self.score), 4), "backend": self.backend}
        return {**d, "reason": self.ignored} if self.ignored else d


DetectedFace = Face     # the name detection used before; the same type
