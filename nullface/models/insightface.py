"""Where insightface's model pack lives: buffalo_l holds SCRFD (det_10g.onnx) and ArcFace (w600k_r50.onnx).

One finder for both files, so that the detector, ArcFace and the missing-files check look in the same places:
``root/models/<pack>``, ``root/<pack>``, ``root`` itself, and each of those with a doubly nested ``<pack>/<pack>``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError

SCRFD_FILE = "det_10g.onnx"
ARCFACE_FILE = "w600k_r50.onnx"
BUFFALO_HINT = ("buffalo_l comes from insightface's GitHub releases (buffalo_l.zip, "
                "https://github.com/deepinsight/insightface/releases; non-commercial research use only): unzip it "
                "so that the folder holds det_10g.onnx and w600k_r50.onnx. NullFace never downloads it.")


def pack_candidates(root: str | Path, name: str = "buffalo_l") -> list[Path]:
    """The folders searched for the pack ``name`` under ``root``, in order."""
    root = Path(root).expanduser()
    return [folder for base in (root / "models" / name, root / name, root) for folder in (base, base / name)]


def find_pack_folder(root: str | Path | None, name: str = "buffalo_l",
                     files: tuple[str, ...] = (SCRFD_FILE, ARCFACE_FILE)) -> Path | None:
    """The first candidate folder holding any of ``files``, or None."""
    if root is None:
        return None
    for folder in pack_candidates(root, name):
        if any((folder / f).is_file() for f in files):
            return folder
    return None


def find_buffalo(root: str | Path, name: str = "buffalo_l") -> Path:
    """The pack folder under ``root`` (det_10g.onnx or w600k_r50.onnx in it); a ModelFileError names where."""
    folder = find_pack_folder(root, name)
    if folder is None:
        root = Path(root).expanduser()
        raise ModelFileError(f"insightface model pack '{name}' not found under '{root}': expected "
                             f"'{root / 'models' / name}' holding {SCRFD_FILE} and {ARCFACE_FILE}. " + BUFFALO_HINT)
    return folder


def find_scrfd_folder(model_dir: str | Path | None) -> Path | None:
    """The folder holding det_10g.onnx: ``model_dir`` itself, or its ``buffalo_l`` / ``models/buffalo_l``."""
    return find_pack_folder(model_dir, files=(SCRFD_FILE,))
