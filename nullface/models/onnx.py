"""onnxruntime sessions: providers chosen from those installed, clear errors for bad files."""
from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Sequence

from ..errors import MissingDependencyError, ModelFileError

log = logging.getLogger("nullface")

# Preference order when the caller does not choose.
PREFERRED = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "onnxruntime is not installed. Install exactly one of: "
            "'pip install onnxruntime-gpu' (NVIDIA GPUs) or 'pip install onnxruntime' (CPU, Apple). "
            "See README.md, 'onnxruntime policy'.") from None
    return onnxruntime


def conflicting_onnxruntime() -> list[str]:
    """Names of every installed onnxruntime distribution; more than one is a broken install."""
    names = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon",
                 "onnxruntime-openvino"):
        try:
            metadata.version(dist)
            names.append(dist)
        except metadata.PackageNotFoundError:
            pass
    return names


def choose_providers(requested: Sequence[str] | str | None = None) -> list[str]:
    """Providers to run with: ``requested`` if given (``auto`` or None picks), else the best available.

    ``requested`` may be a short name (``cuda``, ``coreml``, ``cpu``) or a full provider name.
    Asking for one that is not installed is an error, never a silent fallback.
    """
    ort = _ort()
    available = list(ort.get_available_providers())
    if requested is None or requested == "auto":
        chosen = [p for p in PREFERRED if p in available] or available
    else:
        items = [requested] if isinstance(requested, str) else list(requested)
        chosen = []
        for item in items:
            name = item if item.endswith("ExecutionProvider") else {
                "cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider",
                "cpu": "CPUExecutionProvider", "directml": "DmlExecutionProvider",
                "rocm": "ROCMExecutionProvider"}.get(item.lower(), item)
            if name not in available:
                raise MissingDependencyError(
                    f"onnxruntime provider '{name}' is not available here; installed providers: {available}. "
                    "For CUDA install 'onnxruntime-gpu' instead of 'onnxruntime'.")
            chosen.append(name)
        if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
    dists = conflicting_onnxruntime()
    if len(dists) > 1:
        log.warning("several onnxruntime packages are installed (%s); they overwrite each other. "
                    "Keep one: pip uninstall %s, then reinstall the one you want.",
                    ", ".join(dists), " ".join(dists))
    return chosen


def open_session(path: str | Path, providers: Sequence[str] | str | None = None, *, what: str = "ONNX model",
                 hint: str = ""):
    """An ``InferenceSession`` for ``path``; logs the provider that actually runs it."""
    ort = _ort()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} not found: expected the file '{path.name}' in '{path.parent}'. {hint}".strip())
    chosen = choose_providers(providers)
    try:
        session = ort.InferenceSession(str(path), providers=chosen)
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelFileError(f"{what} '{path}' could not be loaded ({type(exc).__name__}: {exc}). "
                             f"The file may be incomplete or corrupt: download it again. {hint}".strip()) from exc
    log.info("%s %s runs on %s", what, path.name, session.get_providers()[0])
    return session
