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


class _Checked:
    """diffusers' ``logging.tqdm`` during a load: no bar, and ``check()`` before each pipeline component and
    weight shard it counts (where a Cancel can stop a load that takes seconds to minutes)."""

    def __init__(self, check):
        self.check = check

    def __call__(self, iterable=None, *args, **kwargs):
        return _CheckedBar(iterable, self.check)

    def set_lock(self, *args, **kwargs):
        pass

    def get_lock(self):
        return None


class _CheckedBar:
    def __init__(self, iterable, check):
        self.iterable, self.check = iterable, check

    def __iter__(self):
        for item in self.iterable:
            self.check()
            yield item

    def update(self, *args, **kwargs):
        self.check()

    def __getattr__(self, _):
        return lambda *args, **kwargs: None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@contextmanager
def expected_messages_silenced(check=None):
    """Drop the EXPECTED messages and the loading progress bars inside the ``with`` block; ``check()``
    (optional, e.g. a Cancel check that raises) runs before each component and weight shard diffusers loads."""
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
    patched = None
    if check is not None:
        try:
            patched = importlib.import_module("diffusers.utils.logging")
            real_tqdm, patched.tqdm = patched.tqdm, _Checked(check)
        except Exception:  # diffusers without this hook: the checks between load stages remain
            patched = None
    try:
        yield
    finally:
        if patched is not None:
            patched.tqdm = real_tqdm
        for logger, f in added:
            logger.removeFilter(f)
        for lib in hidden:
            lib.enable_progress_bar()
