"""ComfyUI-NullFace: training-free, localized face anonymization for ComfyUI.

ComfyUI imports this file; it exports the node mappings and the example workflows folder.
"""
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Imported as a plain module: pytest does this with the folder's __init__.py when the checkout's name is
    # not a Python name (e.g. "ComfyUI-NullFace"). ComfyUI always imports the folder as a package.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
