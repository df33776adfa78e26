"""CLI flags built from the methods' settings schema (``nullface.schema``), and read back into settings.

Every settings field with a flag gets one (``--field-name``, or the field's ``flag``, e.g. ``--ip-scale``);
methods that share a flag (``--steps``, ``--seed``, ``--prompt``, ``--ip-scale``) share one option. Every
such flag defaults to None: a flag not given takes the chosen method's own default.
"""
from __future__ import annotations

import argparse

from ..errors import InputError
from ..schema import Spec, check_value, number, specs

TYPES = {int: int, float: float, str: str}


def flag_of(s: Spec) -> str | None:
    """The CLI flag of a setting (None when it has none)."""
    if s.flag == "":
        return None
    return s.flag or "--" + s.name.replace("_", "-")


def dest_of(flag: str) -> str:
    return flag[2:].replace("-", "_")


def settings_flags(classes: dict) -> dict[str, list[tuple[str, Spec]]]:
    """``{flag: [(method, spec), ...]}`` over the settings classes ``{method: cls}``, in declaration order."""
    out: dict[str, list[tuple[str, Spec]]] = {}
    for method, cls in classes.items():
        for s in specs(cls).values():
            flag = flag_of(s)
            if flag is not None:
                out.setdefault(flag, []).append((method, s))
    return out


def _default(s: Spec) -> str:
    return repr(s.default) if isinstance(s.default, str) else number(s.default)


def _help(uses: list[tuple[str, Spec]]) -> str:
    """The first method's help and range, and each method's default."""
    s = uses[0][1]
    rng = f" Range {s.range_text}." if s.range_text else ""
    if len(uses) == 1:
        return f"{s.help}{rng} Default {_default(s)}.".replace("%", "%%")
    defaults = "; ".join(f"{m} {_default(u)}" for m, u in uses)
    return f"{s.help}{rng} Default: {defaults}.".replace("%", "%%")


def add_settings_flags(parser: argparse.ArgumentParser, classes: dict, titles: dict) -> None:
    """One argument group per method (``titles[method]``), holding the flags it declares first."""
    flags = settings_flags(classes)
    groups = {m: parser.add_argument_group(titles[m]) for m in classes}
    for flag, uses in flags.items():
        method, s = uses[0]
        kw = {"action": argparse.BooleanOptionalAction} if s.kind is bool else {"type": TYPES[s.kind]}
        kw["help"] = _help(uses)
        groups[method].add_argument(flag, dest=dest_of(flag), default=None, **kw)


def read_settings(args, cls):
    """The validated settings of ``cls`` from parsed flags (a flag not given: the field's default). A bad
    value is named by its flag; the values used are written back on ``args`` (the report records them)."""
    values = {}
    for s in specs(cls).values():
        flag = flag_of(s)
        value = None if flag is None else getattr(args, dest_of(flag), None)
        if value is None:
            continue
        try:
            check_value(s, value)
        except InputError as exc:
            raise InputError(f"{flag}: {exc}") from None
        values[s.name] = value
    settings = cls(**values).validate()
    for s in specs(cls).values():
        flag = flag_of(s)
        if flag is not None:
            setattr(args, dest_of(flag), getattr(settings, s.name))
    return settings


def settings_dests(classes: dict) -> tuple[str, ...]:
    """The ``args`` names of every settings flag (options that change the output)."""
    return tuple(dest_of(f) for f in settings_flags(classes))
