"""Model folders inside ComfyUI (``models/ipadapter``, ``models/insightface``...), resolved lazily."""
from __future__ import annotations

import os
from pathlib import Path


def _fp():
    try:
        import folder_paths
        return folder_paths
    except Exception:
        return None


def ensure_folder(kind: str, subdir: str | None = None) -> list[str]:
    """Register ``models/<kind>`` with ComfyUI if no other pack did, and return its folders."""
    fp = _fp()
    if fp is None:
        return []
    if kind not in fp.folder_names_and_paths:
        path = os.path.join(fp.models_dir, subdir or kind)
        fp.folder_names_and_paths[kind] = ([path], set(fp.supported_pt_extensions) | {".bin"})
    return list(fp.get_folder_paths(kind))


def list_files(kind: str) -> list[str]:
    fp = _fp()
    if fp is None:
        return []
    ensure_folder(kind)
    return sorted(fp.get_filename_list(kind))


def list_diffusers_folders() -> list[str]:
    names = []
    for base in ensure_folder("diffusers"):
        if os.path.isdir(base):
            for entry in sorted(os.listdir(base)):
                if os.path.isfile(os.path.join(base, entry, "model_index.json")):
                    names.append(entry)
    return names


def resolve(kind: str, name: str) -> str:
    """Full path of ``name`` in a ComfyUI model folder; an existing path is returned as given."""
    if os.path.exists(name):
        return name
    fp = _fp()
    if fp is not None:
        ensure_folder(kind)
        full = fp.get_full_path(kind, name)
        if full:
            return full
        for base in fp.get_folder_paths(kind):
            candidate = os.path.join(base, name)
            if os.path.exists(candidate):
                return candidate
        folders = ", ".join(fp.get_folder_paths(kind)) or f"models/{kind}"
        return os.path.join(folders.split(", ")[0], name)
    return name


def insightface_root() -> str:
    """ComfyUI's ``models/insightface`` (the folder IPAdapter_plus, InstantID and ReActor use)."""
    fp = _fp()
    if fp is None:
        return str(Path.home() / ".insightface")
    return os.path.join(fp.models_dir, "insightface")


def insightface_packs() -> list[str]:
    root = Path(insightface_root()) / "models"
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return found or ["buffalo_l"]
