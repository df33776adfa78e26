"""Shared fixtures: real photos that ship inside installed packages (never copied into the repo)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The tests never reach the network: make the hub clients fail fast if anything tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


PACK = "ComfyUI_NullFace"


class _EngineAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """In this test process the pack's ``<pack>.nullface[.x]`` *is* the top-level ``nullface[.x]``.

    The node tests then share the engine's types (errors, dataclasses) with the engine tests. The pack's
    real shape (engine reached only through relative imports, no top-level ``nullface``) is tested in a
    subprocess by tests/test_packaging.py.
    """

    prefix = PACK + ".nullface"

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.prefix or fullname.startswith(self.prefix + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return importlib.import_module("nullface" + spec.name[len(self.prefix):])

    def exec_module(self, module):
        pass


def load_pack():
    """The pack as ComfyUI imports it: the repository's ``__init__.py`` as a package (loaded once)."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    if not any(isinstance(f, _EngineAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, _EngineAlias())
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = mod
    spec.loader.exec_module(mod)
    return mod


def pack_module(name: str):
    """A module of the pack, e.g. ``pack_module("nodes.save")``."""
    load_pack()
    return importlib.import_module(f"{PACK}.{name}")


@pytest.fixture(scope="session")
def pack():
    return load_pack()


def _insightface_image(name: str) -> Path:
    from nullface.models.resources import package_dir
    return package_dir("insightface") / "data" / "images" / name


@pytest.fixture(scope="session")
def t1_path() -> Path:
    """insightface's group photo with six faces."""
    path = _insightface_image("t1.jpg")
    if not path.is_file():
        pytest.fail(f"insightface's sample photo is missing: {path}")
    return path


@pytest.fixture(scope="session")
def t1_image(t1_path) -> np.ndarray:
    return np.asarray(Image.open(t1_path).convert("RGB"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's portrait of Eileen Collins (512x512 RGB)."""
    from skimage import data
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """Paths of the tiny random-weight models (see tests/tiny_models.py)."""
    from tests.tiny_models import build_all
    return build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def pipe(tiny):
    """The real loader on the tiny diffusers folder + FaceID .bin, on the CPU in float32."""
    from nullface.models.sd15 import load_pipe
    return load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="fp32")
