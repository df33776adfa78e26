"""Third-party messages that are expected while NullFace loads its models, silenced there and only there.

Each entry names the logger that emits it, the start of the message, and why it is expected. Nothing is
muted globally: the filters are added for the duration of a load and removed afterwards, and any other
message (from the same loggers too) still comes through.
"""
from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager

EXPECTED = (
    ("diffusers.loaders.ip_adapter", "image_encoder is not loaded since",
     "FaceID has no CLIP image encoder: the identity comes from ArcFace embeddings"),
    ("diffusers.models.modeling_utils", "that should be kept in float32: []",
     "the cast to the chosen precision; the list of modules to keep in float32 is empty"),
    ("diffusers.loaders.lora_base", "No LoRA keys associated to CLIPTextModel",
     "FaceID's LoRA is for the UNet only"),
    ("diffusers.loaders.lora_pipeline", "No LoRA keys associated to CLIPTextModel",
     "FaceID's LoRA is for the UNet only"),
    ("diffusers.loaders.peft", "No LoRA keys associated to CLIPTextModel",
     "FaceID's LoRA is for the UNet only"),
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back to",
     "diffusers' pipelines import CLIP/SigLIP image processors that no method uses (FaceID takes ArcFace "
     "embeddings; FaRL gets tensors)"),
)
# Libraries whose loading progress bars ("Loading pipeline components...", "Loading weights") are hidden.
PROGRESS_BARS = ("diffusers.utils.logging", "transformers.utils.logging")


class _Drop(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextmanager
def expected_messages_silenced():
    """Drop the EXPECTED messages and the loading progress bars inside the ``with`` block."""
    added = []
    for name, text, _why in EXPECTED:
        logger, f = logging.getLogger(name), _Drop(text)
        logger.addFilter(f)
        added.append((logger, f))
    hidden = []
    for module in PROGRESS_BARS:
        try:
            lib = importlib.import_module(module)
            if lib.is_progress_bar_enabled():
                lib.disable_progress_bar()
                hidden.append(lib)
        except Exception:  # library missing or without this switch: nothing to hide
            continue
    try:
        yield
    finally:
        for logger, f in added:
            logger.removeFilter(f)
        for lib in hidden:
            lib.enable_progress_bar()
