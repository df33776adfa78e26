"""Where optional packages keep their model files, found without importing them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import MissingDependencyError, ModelFileError

DLIB_MODELS = {
    "shape_68": "shape_predictor_68_face_landmarks.dat",
    "shape_5": "shape_predictor_5_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}


def package_dir(name: str) -> Path:
    """The folder of an installed package, located without running its ``__init__``.

    ``face_recognition_models`` imports ``pkg_resources`` at import time, which modern
    setuptools no longer ships, so it is located through its import spec instead.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"The package '{name}' is not installed. Install it with: pip install {name.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0])


def dlib_model_path(kind: str) -> Path:
    """Path of one of dlib's model files shipped by ``face-recognition-models``."""
    try:
        filename = DLIB_MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown dlib model '{kind}', expected one of {sorted(DLIB_MODELS)}") from None
    folder = package_dir("face_recognition_models") / "models"
    path = folder / filename
    if not path.is_file():
        raise ModelFileError(
            f"dlib model file '{filename}' is missing from {folder}. "
            "Reinstall it with: pip install --force-reinstall face-recognition-models")
    return path
