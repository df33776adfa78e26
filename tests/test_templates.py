"""The example workflows as ComfyUI 0.8 offers them under Templates: listed, served, with a thumbnail.

ComfyUI (app/custom_node_manager.py) lists ``custom_nodes/*/workflows/*.json`` at GET /workflow_templates
and serves the pack's ``workflows/`` folder at ``/api/workflow_templates/<pack folder>/``; the frontend
fetches ``<name>.json`` and, for a custom node's template, the thumbnail ``<name>.jpg`` from there.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "tools" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_workflows"] = module
    spec.loader.exec_module(module)
    return module


def listed() -> list[str]:
    """What ComfyUI 0.8's GET /workflow_templates lists for this pack (its glob over the custom_nodes folder)."""
    files = glob.glob(os.path.join(str(ROOT.parent), f"{glob.escape(ROOT.name)}/workflows/*.json"))
    return sorted(Path(f).stem for f in files)


def test_listed_templates_are_the_ui_workflows_not_their_api_twins():
    names = listed()
    assert len(names) >= 5 and names == sorted(p.stem for p in (WORKFLOWS / "api").glob("*.json"))
    for name in names:
        data = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert "nodes" in data and "links" in data, f"{name}.json is not a UI workflow"


def test_every_template_has_its_thumbnail_drawn_from_the_graph(tool):
    for name in listed():
        thumb = WORKFLOWS / f"{name}.jpg"
        assert thumb.is_file(), f"workflows/{name}.jpg is missing: run python tools/make_workflows.py"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.size == tool.THUMB_SIZE
            assert not im.getexif() and "icc_profile" not in im.info and "comment" not in im.info
        ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert tool.thumbnail_matches(thumb, ui), f"workflows/{name}.jpg is stale: run python tools/make_workflows.py"


def test_thumbnails_differ_per_workflow(tool):
    import numpy as np
    pictures = {name: np.asarray(Image.open(WORKFLOWS / f"{name}.jpg").convert("L"), np.float32) for name in listed()}
    names = list(pictures)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(pictures[a] - pictures[b]).max() > 100, (a, b)     # at least their captions
