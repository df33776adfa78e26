"""A stand-in for the parts of ComfyUI the pack touches at run time (progress, Cancel, model management).

It follows ComfyUI 0.8's code paths (comfy/model_management.py, comfy/model_patcher.py, comfy/utils.py)
closely enough to exercise the pack's side: ``LoadedModel`` holds its patcher weakly, ``load_models_gpu``
re-registers an already loaded model by detaching it without unpatching, ``unload_all_models`` goes through
``free_memory`` -> ``model_unload`` -> ``partially_unload`` / ``detach(True)``. Use the ``fake_comfy`` fixture.
"""
from __future__ import annotations

import sys
import types
import weakref

import pytest
import torch


def build() -> dict[str, types.ModuleType]:
    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mp = types.ModuleType("comfy.model_patcher")
    utils = types.ModuleType("comfy.utils")
    comfy.model_management, comfy.model_patcher, comfy.utils = mm, mp, utils

    # ---- comfy.utils.ProgressBar: records every (value, total) shown
    class ProgressBar:
        shown: list = []

        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            ProgressBar.shown.append((self.current, self.total))

        def update(self, value):
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar

    # ---- Cancel
    class InterruptProcessingException(Exception):
        pass

    mm.InterruptProcessingException = InterruptProcessingException
    mm.interrupt_processing = False

    def interrupt_current_processing(value=True):
        mm.interrupt_processing = value

    def throw_exception_if_processing_interrupted():
        if mm.interrupt_processing:
            mm.interrupt_processing = False
            raise InterruptProcessingException()

    mm.interrupt_current_processing = interrupt_current_processing
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

    # ---- model management (CPU-only machine, as `--cpu`)
    cpu = torch.device("cpu")
    mm.get_torch_device = lambda: cpu
    mm.unet_offload_device = lambda: cpu
    mm.soft_empty_cache = lambda force=False: None
    mm.current_loaded_models = []
    mm.log = []

    class LoadedModel:
        def __init__(self, model):
            self._model = weakref.ref(model)
            self.device = model.load_device
            self.real_model = None
            self.model_finalizer = None

        @property
        def model(self):
            return self._model()

        def model_load(self):
            self.model.model_patches_to(self.device)
            self.model.partially_load(self.device, 1e32)
            real = self.model.model
            self.real_model = weakref.ref(real)
            self.model_finalizer = weakref.finalize(real, cleanup_models)
            return real

        def model_unload(self, memory_to_free=None, unpatch_weights=True):
            if memory_to_free is not None and memory_to_free < self.model.loaded_size():
                if self.model.partially_unload(self.model.offload_device, memory_to_free) >= memory_to_free:
                    return False
            self.model.detach(unpatch_weights)
            self.model_finalizer.detach()
            self.model_finalizer = None
            self.real_model = None
            return True

        def __eq__(self, other):
            return self.model is other.model

    def cleanup_models():
        mm.current_loaded_models[:] = [m for m in mm.current_loaded_models
                                       if m.real_model is None or m.real_model() is not None]

    def load_models_gpu(models, **kwargs):
        for x in models:
            loaded = LoadedModel(x)
            mm.log.append(("load", type(x.model).__name__))
            for i in range(len(mm.current_loaded_models) - 1, -1, -1):
                if x.is_clone(mm.current_loaded_models[i].model):
                    old = mm.current_loaded_models.pop(i)
                    old.model.detach(unpatch_all=False)
                    old.model_finalizer.detach()
            loaded.model_load()
            mm.current_loaded_models.insert(0, loaded)

    def free_memory(memory_required, device, keep_loaded=()):
        unloaded = []
        for i in range(len(mm.current_loaded_models) - 1, -1, -1):
            m = mm.current_loaded_models[i]
            if m.device == device and m.model is not None:
                if m.model_unload(memory_required):
                    unloaded.append(i)
        return [mm.current_loaded_models.pop(i) for i in sorted(unloaded, reverse=True)]

    def unload_all_models():
        free_memory(1e30, mm.get_torch_device())

    mm.LoadedModel, mm.load_models_gpu, mm.free_memory = LoadedModel, load_models_gpu, free_memory
    mm.unload_all_models, mm.cleanup_models = unload_all_models, cleanup_models

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
            self.parent = None
            for attr, value in (("model_loaded_weight_memory", 0), ("lowvram_patch_counter", 0),
                                ("model_lowvram", False), ("device", offload_device)):
                if not hasattr(model, attr):
                    setattr(model, attr, value)

        def is_clone(self, other):
            return hasattr(other, "model") and self.model is other.model

        def model_patches_to(self, device):
            pass

        def model_patches_models(self):
            return []

        def model_size(self):
            return self.size

        def loaded_size(self):
            return self.model.model_loaded_weight_memory

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            raise NotImplementedError

        def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
            raise NotImplementedError

        def detach(self, unpatch_all=True):
            raise NotImplementedError

    mp.ModelPatcher = ModelPatcher
    return {"comfy": comfy, "comfy.model_management": mm, "comfy.model_patcher": mp, "comfy.utils": utils}


@pytest.fixture
def fake_comfy(monkeypatch):
    """Installs the stand-in as ``comfy`` for one test; returns ``comfy.model_management`` (``.utils`` on it)."""
    modules = build()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    modules["comfy.utils"].ProgressBar.shown = []
    mm = modules["comfy.model_management"]
    mm.utils = modules["comfy.utils"]
    return mm
