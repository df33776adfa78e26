"""Model files on disk: existence, truncation and corruption checks, and reading weights, for every family.

Each check raises a ``ModelFileError`` that names the file, the folder searched and where to get it (``hint``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..errors import MissingDependencyError, ModelFileError


def require_file(path: str | os.PathLike, what: str, hint: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{what} not found: expected '{path.name}' in '{path.parent}'. {hint}")
    return path


def missing_file(path: str | os.PathLike | None, what: str, hint: str) -> str | None:
    """The sentence naming ``path`` when it does not exist (None when it does or was not asked for)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.exists():
        return None
    return f"{what} not found: expected '{path.name}' in '{path.parent}'. {hint}".rstrip()


def raise_missing(missing: list[str]) -> None:
    """One ``ModelFileError``, on one line, for every sentence of ``missing`` (nothing when it is empty)."""
    missing = [m for m in missing if m]
    if len(missing) == 1:
        raise ModelFileError(missing[0])
    if missing:
        raise ModelFileError(f"{len(missing)} model files are missing: "
                             + " ".join(f"({i}) {m}" for i, m in enumerate(missing, 1)))


def check_files(files) -> None:
    """Every missing file of ``files`` ((path, what, hint) each; a None path is skipped) in one error."""
    raise_missing([missing_file(path, what, hint) for path, what, hint in files])


def brief(exc: BaseException, limit: int = 200) -> str:
    """An exception in one line: its type and the first line of its message (torch's multi-line advice,
    such as re-running with ``weights_only=False``, is left out)."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    if "Weights only load failed" in text:
        first = "not a plain tensor file: it holds pickled code or objects, which are never run"
    if len(first) > limit:
        first = first[:limit].rstrip() + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def read_state_dict(path: Path) -> dict:
    """Tensors of a .safetensors/.bin/.ckpt/.pt file; a corrupt file gives a ModelFileError."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"'{path}' could not be read ({brief(exc)}); "
                             "the file is incomplete, corrupt or not a weights file: download it again.") from exc


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def check_weight_file(path: Path, hint: str = "", shown: str | None = None) -> None:
    """Raise a ModelFileError naming ``path`` when the file is truncated or corrupt.

    Cheap: a .safetensors header is checked against the file size (a truncated download fails it)
    without reading tensors; a torch file is opened memory-mapped (its zip directory sits at the end)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        else:
            with open(path, "rb") as fh:
                zipped = fh.read(4) == b"PK\x03\x04"
            if zipped:                   # torch >= 1.6 files; an older pickle file is left to the loader
                import zipfile
                if not zipfile.is_zipfile(path):
                    raise ValueError("its zip directory is missing (the end of the file is cut off)")
                torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        size = path.stat().st_size if path.exists() else 0
        raise ModelFileError(f"'{shown or path}' is incomplete or corrupt ({size:,} bytes; {brief(exc)}): the "
                             f"download probably stopped early; download that file again. {hint}".rstrip()) from None


def check_diffusers_folder(path: Path, hint: str = "") -> None:
    """Check every weight file of a diffusers folder's components (unet, vae, text_encoder ...) for truncation."""
    for f in sorted(path.glob("*/*")):
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            check_weight_file(f, hint, shown=f"{f.parent.name}/{f.name}' in '{path}")


def check_model_folder(path: Path, hint: str) -> None:
    """A diffusers model folder (model_index.json and unet/) whose weight files are complete, before any load."""
    if not (path / "model_index.json").is_file() or not (path / "unet").is_dir():
        raise ModelFileError(f"'{path}' is not a diffusers model folder (no model_index.json/unet). {hint}")
    check_diffusers_folder(path, hint)


def check_checkpoint_file(path: Path, hint: str) -> None:
    if path.suffix not in (".safetensors", ".ckpt", ".pt", ".pth"):
        raise ModelFileError(f"'{path.name}' is not a checkpoint file (.safetensors or .ckpt). {hint}")


def load_or_explain(load, failure: str, hint: str):
    """Run a diffusers loader; whatever it raises, other than this package's own errors, becomes one
    ``ModelFileError``: ``failure`` (what could not be loaded as what), the exception in brief, ``hint``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # torch_dtype vs dtype across diffusers versions
            return load()
    except (ModelFileError, MissingDependencyError):
        raise
    except Exception as exc:
        raise ModelFileError(f"{failure} ({brief(exc, 300)}). {hint}") from exc


def checkpoint_keys(path: Path, hint: str = "") -> dict[str, tuple]:
    """Key -> shape of a single-file checkpoint, without loading tensors when possible."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelFileError(f"checkpoint '{path}' could not be read ({brief(exc)}); "
                             f"the file is incomplete or corrupt: download it again. {hint}".rstrip()) from exc
    sd = sd.get("state_dict", sd)
    return {k: tuple(v.shape) for k, v in sd.items() if hasattr(v, "shape")}

