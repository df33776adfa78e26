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
    cfg = ROOT / "nullface" / "models" / "configs" / "sd15"
    files = [p.relative_to(ROOT / "nullface").as_posix() for p in cfg.rglob("*") if p.is_file()]
    assert {"models/configs/sd15/tokenizer/vocab.json", "models/configs/sd15/tokenizer/merges.txt",
            "models/configs/sd15/unet/config.json", "models/configs/sd15/model_index.json"} <= set(files)
    import fnmatch
    for f in files:
        assert any(fnmatch.fnmatch(f, p.replace("**/", "*")) for p in patterns), f


# ComfyUI 0.8's nodes.load_custom_node, reduced to what touches the pack: the folder's full path (dots
# replaced) is the module name, the folder is never put on sys.path and nothing is pip-installed.
_COMFY_LOAD = r'''
import ast, importlib.util, json, os, sys
sys.modules["nullface"] = None            # a top-level engine must not be needed (nor picked up)
root = sys.argv[1]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != root]
name = root.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"))
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
print(json.dumps({"nodes": sorted(module.NODE_CLASS_MAPPINGS),
                  "display": sorted(module.NODE_DISPLAY_NAME_MAPPINGS),
                  "engine": sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "nullface"),
                  "comfy": sorted(m for m in sys.modules if m.split(".")[0] in ("comfy", "folder_paths"))}))
'''


def _declared_nodes() -> set[str]:
    """Node names declared in nodes/*.py (keys of each module's NODE_CLASS_MAPPINGS literal)."""
    import ast
    names = set()
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "NODE_CLASS_MAPPINGS"
                                                    for t in node.targets) and isinstance(node.value, ast.Dict):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return names


def test_pack_loads_as_comfyui_loads_it_without_a_top_level_engine(tmp_path):
    """ComfyUI imports the folder by path: the nodes reach the engine by relative imports only."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", _COMFY_LOAD, str(ROOT)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    declared = _declared_nodes()
    assert len(declared) >= 16
    assert set(info["nodes"]) == declared
    assert set(info["display"]) == declared
    assert info["engine"] == []           # the engine came from the pack folder, not a top-level import
    assert info["comfy"] == []            # importing the pack imports nothing of ComfyUI (all lazy)


def test_no_invented_repository_address():
    """The pack has no public repository yet: neither the README nor the metadata may send users to one."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "urls" not in meta["project"]
    readme = (ROOT / "README.md").read_text()
    assert "github.com/nullface" not in readme and "git clone https://" not in readme


def test_readme_standalone_commands_install_what_the_tests_need():
    """Copying the README's standalone block top to bottom must give a working `python -m pytest`."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Standalone"):readme.index("### onnxruntime policy")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines() if ln.strip()]
    torch_lines = [ln for ln in lines if ln.startswith("pip install torch")]
    assert any("whl/cpu" in ln for ln in torch_lines), "a CPU-only torch line (no 2.6 GB of CUDA wheels)"
    assert any("whl/cu" in ln for ln in torch_lines), "a CUDA torch line"
    install = [ln for ln in lines if ln.startswith("pip install -e")]
    assert len(install) == 1 and "test" in install[0]
    extras = re.search(r'\[(.*?)\]', install[0]).group(1).split(",")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(extras) <= set(meta["project"]["optional-dependencies"])
    assert lines.index(install[0]) < lines.index("python -m pytest -q tests")


def test_root_init_imports_as_a_plain_module(tmp_path):
    """pytest imports the checkout's __init__.py as a plain module when the folder's name is not a Python name
    (a clone called "ComfyUI-NullFace"): that must not fail, or no test runs."""
    import subprocess
    import sys
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('__init__', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(len(m.NODE_CLASS_MAPPINGS))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "__init__.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
