"""The engine's progress callback, ``callback(info)``: after every UNet call (``info`` holds ``steps`` and
``batch``, the image-steps done), and, with ``steps`` 0, at every other point where a caller may stop the
run (ComfyUI's Cancel raises from it): before each VAE encode or decode, between the parts of a model load.
"""
from __future__ import annotations

from typing import Callable, Optional

Callback = Optional[Callable[[dict], None]]


def tick(callback: Callback, phase: str) -> None:
    """A point where the caller may stop the run; no work is counted (``steps`` 0)."""
    if callback is not None:
        callback({"phase": phase, "steps": 0, "batch": 0})
