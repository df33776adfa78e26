"""Real photos and their dlib detections, cached once per test session (shared by the FACES tests)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=None)
def image(name: str) -> np.ndarray:
    """``t1`` (insightface's group photo, 6 faces), ``astronaut`` (scikit-image), ``hanks`` (112x112)."""
    if name == "astronaut":
        from skimage import data
        arr = np.ascontiguousarray(data.astronaut())
    else:
        from nullface.models.resources import package_dir
        file = {"t1": "t1.jpg", "hanks": "Tom_Hanks_54745.png"}[name]
        arr = np.asarray(Image.open(package_dir("insightface") / "data" / "images" / file).convert("RGB"))
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=None)
def detector():
    from nullface.faces.detect import DlibDetector
    return DlibDetector()


@lru_cache(maxsize=None)
def faces(name: str) -> tuple:
    """dlib's faces in ``image(name)`` at its default settings (largest first)."""
    return tuple(detector().detect(image(name)))


def invert(image, crops):
    """An anonymizer that changes every pixel of each crop."""
    return [255 - c.image for c in crops]


def identity(image, crops):
    """An anonymizer that changes nothing."""
    return [c.image.copy() for c in crops]


def failing(image, crops):
    return [RuntimeError("the model ran out of memory") for _ in crops]


class FixedDetector:
    """A detector that returns the given faces (for geometry tests on real landmarks)."""

    name = "fixed"

    def __init__(self, faces):
        self.faces = list(faces)

    def detect(self, image):
        return list(self.faces)
