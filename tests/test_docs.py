"""The README stays short, and every link of the README and of docs/ leads to a file (and a heading) that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"(?m)^#+ (.+)$", text)}


def links(page: Path) -> list:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+://", t)]


def test_slug_is_githubs():
    assert slug("Evaluation: `python -m nullface eval ORIGINALS ANONYMIZED [-o OUTDIR]`") == \
        "evaluation-python--m-nullface-eval-originals-anonymized--o-outdir"
    assert slug("Native path (ComfyUI's own models)") == "native-path-comfyuis-own-models"


def test_readme_is_under_25_kb():
    assert README.stat().st_size < 25_000, f"README.md is {README.stat().st_size} bytes: move details to docs/"


def test_readme_links_into_docs():
    targets = {t.split("#")[0] for t in links(README)}
    assert {"docs/api.md", "docs/development.md", "docs/benchmarks.md"} <= targets
    assert "python -m pytest -q tests" in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages no README link leads to: {missing}"
