"""Generate the settings tables of README.md (and any docs/*.md) from the settings schema.

Each table sits between ``<!-- BEGIN settings:<method> -->`` and ``<!-- END settings:<method> -->``
(``nullface``, ``revpers``, ``inpaint``); everything between a pair is rewritten from the method's settings
class (``nullface.schema``): default, range, CLI flag, source and meaning of every field, and the method's
default kept regions. Text outside the markers is left as it is.

Usage: ``python tools/make_docs.py [FILE ...] [--check]`` (default README.md and docs/*.md; ``--check``
exits 1 when a marked table differs from the code, naming the file and the table).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.commands.flags import flag_of  # noqa: E402
from nullface.methods.inpaint.settings import InpaintSettings  # noqa: E402
from nullface.methods.nullface.settings import NullFaceSettings  # noqa: E402
from nullface.methods.revpers.settings import ReversePersonalizationSettings  # noqa: E402
from nullface.schema import number  # noqa: E402

CLASSES = {c.METHOD: c for c in (NullFaceSettings, ReversePersonalizationSettings, InpaintSettings)}
BLOCK = re.compile(r"(<!-- BEGIN settings:(\w+) -->\n)(.*?)(<!-- END settings:\2 -->)", re.S)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(v) -> str:
    if isinstance(v, str):
        return f'`"{v}"`'
    if isinstance(v, bool):
        return f"`{v}`"
    return f"`{number(v)}`"


def table(method: str) -> str:
    """The Markdown table of one method's settings (and its default kept regions)."""
    cls = CLASSES[method]
    rows = ["| setting | default | range | CLI flag | source | meaning |", "|---|---|---|---|---|---|"]
    for name, s in cls.specs().items():
        flag = flag_of(s)
        rows.append(f"| `{name}` | {_default(s.default)} | {_cell(s.range_text) or '—'} | "
                    f"{f'`{flag}`' if flag else '—'} | {_cell(s.source) or '—'} | {_cell(s.help)} |")
    keep = ",".join(cls.KEEP) or "none"
    rows.append("")
    rows.append(f"Kept regions in whole photos (`keep`, `--keep`), by default: `{keep}` ({cls.KEEP_SOURCE}). "
                f"Generated from `{cls.__module__}.{cls.__name__}` by `tools/make_docs.py`.")
    return "\n".join(rows) + "\n"


def update(text: str) -> str:
    """``text`` with every marked settings table regenerated; an unknown method or a BEGIN without END fails."""
    begins = re.findall(r"<!-- BEGIN settings:(\w+) -->", text)
    blocks = BLOCK.findall(text)
    if len(begins) != len(blocks):
        raise ValueError(f"{len(begins)} BEGIN settings markers but {len(blocks)} complete marker pairs")
    for _, method, _, _ in blocks:
        if method not in CLASSES:
            raise ValueError(f"unknown method '{method}' in a settings marker (known: {', '.join(CLASSES)})")
    return BLOCK.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def default_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files with markers (default README.md, docs/*.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file's tables are stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files or default_files():
        text = path.read_text(encoding="utf-8")
        new = update(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "stale" if args.check else "updated"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
