"""NullFace ComfyUI nodes: thin wrappers over the ``nullface`` engine."""
from __future__ import annotations

import importlib

# Each module defines NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS for its own nodes.
_MODULES = ("loaders", "method", "photo", "audit", "save", "native", "revpers", "inpaint", "video")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _name in _MODULES:
    _mod = importlib.import_module(f"{__name__}.{_name}")
    NODE_CLASS_MAPPINGS.update(_mod.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_mod.NODE_DISPLAY_NAME_MAPPINGS)
