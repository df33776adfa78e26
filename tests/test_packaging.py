"""Packaging facts users rely on: registry metadata, ComfyUI-Manager requirements, the onnxruntime policy."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def deps(lines):
    return sorted(re.split(r"[<>=!~; \[]", d.strip())[0].lower() for d in lines if d.strip() and not d.startswith("#"))


def test_pyproject_and_requirements_agree_and_leave_torch_and_onnxruntime_to_the_user():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    core = deps(project["dependencies"])
    reqs = deps((ROOT / "requirements.txt").read_text().splitlines())
    assert core == reqs
    assert "torch" not in core and not any(n.startswith("onnxruntime") for n in core)
    extras = project["optional-dependencies"]
    assert deps(extras["cpu"]) == ["onnxruntime"] and deps(extras["gpu"]) == ["onnxruntime-gpu"]
    assert "pytest" in deps(extras["test"])
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]


def test_package_data_ships_the_offline_sd15_configs():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["nullface"]
    cfg = ROOT / "nullface" / "configs" / "sd15"
    files = [p.relative_to(ROOT / "nullface").as_posix() for p in cfg.rglob("*") if p.is_file()]
    assert {"configs/sd15/tokenizer/vocab.json", "configs/sd15/tokenizer/merges.txt",
            "configs/sd15/unet/config.json", "configs/sd15/model_index.json"} <= set(files)
    import fnmatch
    for f in files:
        assert any(fnmatch.fnmatch(f, p.replace("**/", "*")) for p in patterns), f
