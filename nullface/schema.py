"""One settings schema for every method: each field carries its default, range, help and source.

A method's settings are a frozen dataclass deriving from ``Settings`` whose fields are made by ``setting``.
``validate`` checks every field (type, finite number, range, exclusive bounds), then the class's own
cross-field ``rules``. The ComfyUI widgets (``nodes/widgets.py``), the CLI flags
(``nullface/commands/flags.py``) and the README's settings tables (``tools/make_docs.py``) are all built
from ``specs(cls)``: nothing about a setting is written twice.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import InputError

KINDS = (bool, int, float, str)     # bool first: a bool is an int to Python


@dataclass(frozen=True)
class Spec:
    """What is known about one setting; ``lo``/``hi`` are the bounds, ``*_open`` when the bound itself is refused."""

    name: str
    kind: type
    default: Any
    help: str
    source: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    step: float | None = None       # widget increment (and the nearest allowed value next to an open bound)
    flag: str | None = None         # CLI flag, e.g. "--ip-scale"; "" = no flag
    widget: dict = field(default_factory=dict)   # extra ComfyUI options (multiline, round)

    @property
    def range_text(self) -> str:
        """The range in words: "0..1", "> 0 and <= 30", ">= 0" ('' when unbounded)."""
        if self.lo is not None and self.hi is not None and not (self.lo_open or self.hi_open):
            return f"{number(self.lo)}..{number(self.hi)}"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {number(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {number(self.hi)}")
        return " and ".join(parts)

    def as_dict(self) -> dict:
        return {"default": self.default, "min": self.lo, "max": self.hi, "min_open": self.lo_open,
                "max_open": self.hi_open, "step": self.step, "help": self.help, "source": self.source,
                "flag": self.flag, "kind": self.kind}


def number(v) -> str:
    """A bound or default as people write it: 4294967295, 0.7, 0.3333, -10."""
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def setting(default, help: str, *, source: str = "", min: float | None = None, max: float | None = None,
            gt: float | None = None, lt: float | None = None, step: float | None = None, flag: str | None = None,
            **widget):
    """A settings field: ``min``/``max`` are inclusive bounds, ``gt``/``lt`` exclusive ones (the bound itself
    anonymizes nothing, e.g. a guidance scale of 0); ``source`` names where the default comes from (paper
    section, table or reference code); ``flag`` the CLI flag when it is not ``--field-name`` ("" = none);
    ``widget`` extra ComfyUI options."""
    if min is not None and gt is not None or max is not None and lt is not None:
        raise ValueError("give min or gt, max or lt, not both")
    meta = {"help": help, "source": source, "lo": gt if gt is not None else min, "hi": lt if lt is not None else max,
            "lo_open": gt is not None, "hi_open": lt is not None, "step": step, "flag": flag, "widget": widget}
    return field(default=default, metadata={"nullface": meta})


def _kind(f: dataclasses.Field) -> type:
    return next(k for k in KINDS if isinstance(f.default, k))


def specs(cls) -> dict[str, Spec]:
    """Every setting of a settings class (or instance), in field order."""
    return {f.name: Spec(name=f.name, kind=_kind(f), default=f.default, **f.metadata["nullface"])
            for f in dataclasses.fields(cls) if "nullface" in f.metadata}


def spec(cls, name: str) -> dict:
    """``{"default", "min", "max", "min_open", "max_open", "step", "help", "source", "flag", "kind"}`` of a field."""
    try:
        return specs(cls)[name].as_dict()
    except KeyError:
        raise InputError(f"{getattr(cls, '__name__', type(cls).__name__)} has no setting '{name}'") from None


def check_value(s: Spec, value) -> None:
    """One setting's type, finiteness and range; raises a one-line InputError naming it."""
    kind = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}[s.kind]
    ok = (isinstance(value, bool) if s.kind is bool else
          isinstance(value, str) if s.kind is str else
          isinstance(value, int) and not isinstance(value, bool) if s.kind is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok:
        raise InputError(f"{s.name} must be {kind}, got {value!r}")
    if s.kind in (int, float):
        below = s.lo is not None and (value <= s.lo if s.lo_open else value < s.lo)
        above = s.hi is not None and (value >= s.hi if s.hi_open else value > s.hi)
        if below or above:
            raise InputError(f"{s.name} must be {s.range_text}, got {value!r}: {s.help}")


def validate(settings):
    """Every field (type, finite, range), then the class's cross-field ``rules()``; returns ``settings``."""
    for name, s in specs(settings).items():
        check_value(s, getattr(settings, name))
    settings.rules()
    return settings


class Settings:
    """Base of every method's settings dataclass: ``validate``, ``spec``, ``specs``, ``to_dict``.

    ``KEEP`` is the method's default of the regions each face keeps visible in whole photos (``()`` = the
    whole face is anonymized); nodes, the CLI and the photo API read it from here. ``METHOD`` names the
    method (the README's ``settings:<METHOD>`` table).
    """

    KEEP: ClassVar[tuple[str, ...]] = ()
    KEEP_SOURCE: ClassVar[str] = ""
    METHOD: ClassVar[str] = ""

    def rules(self) -> None:
        """Cross-field rules of the class (after every field passed); raise InputError."""

    def validate(self):
        return validate(self)

    @classmethod
    def spec(cls, name: str) -> dict:
        return spec(cls, name)

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        return specs(cls)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
