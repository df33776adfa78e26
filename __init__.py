"""ComfyUI-NullFace: training-free, localized face anonymization for ComfyUI.

ComfyUI imports this file; it exports the node mappings and the example workflows folder.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
