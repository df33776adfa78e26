"""ComfyUI widgets built from a method's settings schema (``nullface.schema``): no node writes the default,
range, step or tooltip of a settings field by hand.

A node that has settings widgets names its settings class in ``SETTINGS``; a test checks every such widget
against the schema.
"""
from __future__ import annotations

from ..nullface.schema import specs

TYPES = {bool: "BOOLEAN", int: "INT", float: "FLOAT", str: "STRING"}
UNBOUNDED = 0xFFFFFFFF


def widget(settings_cls, name: str, **override) -> tuple:
    """``(type, options)`` of the ComfyUI widget for one settings field. An exclusive bound (a value that
    anonymizes nothing, e.g. a scale of 0) becomes the nearest allowed step next to it, since ComfyUI's
    widgets only know inclusive ranges; ``override`` changes the tooltip or adds options."""
    s = specs(settings_cls)[name]
    opts = {"default": s.default, "tooltip": s.help}
    if s.kind in (int, float):
        step = s.step if s.step is not None else (1 if s.kind is int else 0.01)
        lo = -UNBOUNDED if s.lo is None else s.lo + step if s.lo_open else s.lo
        hi = UNBOUNDED if s.hi is None else s.hi - step if s.hi_open else s.hi
        opts.update(min=lo, max=hi)
        if s.kind is float or s.step is not None:
            opts["step"] = step
    elif s.kind is str:
        opts["multiline"] = False
    opts.update(s.widget)
    opts.update(override)
    return (TYPES[s.kind], opts)


def widgets(settings_cls, *names: str, **tooltips) -> dict:
    """``{name: widget}`` for the given fields (all of them when none are named), in that order;
    ``tooltips`` replaces the tooltip of a field by name."""
    names = names or tuple(specs(settings_cls))
    return {n: widget(settings_cls, n, **({"tooltip": tooltips[n]} if n in tooltips else {})) for n in names}


def keep_widget(settings_cls, note: str = "") -> tuple:
    """The whole-photo nodes' ``keep`` input: the method's own default (``settings_cls.KEEP``), stated once."""
    keep = ",".join(settings_cls.KEEP) or "none"
    return ("STRING", {"default": keep, "tooltip": "Regions each face keeps visible, comma separated: eyes, brows, "
                                                   "nose, mouth, skin, face; 'none' = anonymize the whole face. "
                                                   f"Default {keep}: {settings_cls.KEEP_SOURCE}." + note})
