"""The NullFace pipe inside ComfyUI's model management (comfy.model_management), imported lazily.

Registered through a ``ModelPatcher`` subclass, the pipe is one of ComfyUI's loaded models:
- before each use ``load_models_gpu`` places it, first unloading other models if its device lacks room;
- ComfyUI's own unloading (``unload_all_models``, ``POST /free`` with ``unload_models``, the Manager's
  "Unload models", and room made for other models) takes it off its device like ComfyUI's own models: to
  the CPU from an accelerator, and, on a CPU-only run where there is nowhere else to go, out of memory
  (the weights are read from disk again on next use).
The patcher holds no weights itself (only a weak reference to the pipe), so ``POST /free`` with
``free_memory``, which drops ComfyUI's caches, also lets the pipe go.
"""
from __future__ import annotations

import logging
import weakref

log = logging.getLogger("nullface")


class NullFaceSD15:
    """What the patcher wraps: a weak handle on the pipe (its class name is what ComfyUI logs)."""

    def __init__(self, pipe):
        self.pipe = weakref.ref(pipe)


def _patcher_class():
    import comfy.model_patcher

    class NullFacePatcher(comfy.model_patcher.ModelPatcher):
        """ComfyUI's view of a NullFacePipe: always loaded whole (diffusers modules cannot run half on
        the GPU), unloaded whole."""

        def _pipe(self):
            return self.model.pipe()

        def model_size(self):
            pipe = self._pipe()
            if pipe is not None and pipe.loaded:
                self.size = pipe.weight_bytes()
            return self.size

        def loaded_size(self):
            pipe = self._pipe()
            return self.model_size() if pipe is not None and pipe.loaded and not pipe.offloaded else 0

        def current_loaded_device(self):
            pipe = self._pipe()
            return pipe.device if pipe is not None and pipe.loaded and not pipe.offloaded else self.offload_device

        def model_dtype(self):
            pipe = self._pipe()
            return None if pipe is None else pipe.dtype

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            pipe = self._pipe()
            if pipe is None:
                return 0
            before = self.loaded_size()
            pipe.move(True)
            self.model.model_loaded_weight_memory = self.loaded_size()
            return self.loaded_size() - before

        def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
            return 0                     # all or nothing: ComfyUI then detaches it whole

        def detach(self, unpatch_all=True):
            # load_models_gpu re-registers a loaded model with detach(unpatch_all=False): keep the weights.
            pipe = self._pipe()
            if unpatch_all and pipe is not None:
                if self.load_device == self.offload_device:
                    # CPU-only: nowhere to move them, free the RAM. ComfyUI removes its entry itself, so the
                    # pipe must not touch ComfyUI's list meanwhile (and this patcher stays alive: ComfyUI
                    # pops the entry by index after this returns).
                    manager = pipe.manager
                    if isinstance(manager, ComfyMemory):
                        manager.detaching = True
                    try:
                        pipe.unload()
                    finally:
                        if isinstance(manager, ComfyMemory):
                            manager.detaching = False
                else:
                    pipe.move(False)     # accelerator memory back; the weights wait on the CPU
                self.model.model_loaded_weight_memory = 0
            return self.model

    return NullFacePatcher


class ComfyMemory:
    """``NullFacePipe.manager`` inside ComfyUI: places the pipe with ``load_models_gpu``."""

    def __init__(self, mm):
        self.mm = mm
        self.patcher = None          # created on first use, kept for the pipe's life (it holds no weights)
        self.detaching = False

    def load(self, pipe) -> None:
        if self.patcher is None:
            offload = self.mm.unet_offload_device() if pipe.device.type != "cpu" else pipe.device
            self.patcher = _patcher_class()(NullFaceSD15(pipe), load_device=pipe.device, offload_device=offload)
        self.mm.load_models_gpu([self.patcher])

    def forget(self, pipe) -> None:
        """The pipe unloaded itself (Unload node, keep_loaded off): leave ComfyUI's list of loaded models."""
        if self.patcher is None or self.detaching:
            return
        loaded = getattr(self.mm, "current_loaded_models", [])
        for i in range(len(loaded) - 1, -1, -1):
            if loaded[i].model is self.patcher:
                entry = loaded.pop(i)
                if getattr(entry, "model_finalizer", None) is not None:
                    entry.model_finalizer.detach()


def available() -> bool:
    """True inside ComfyUI (its model management imports)."""
    try:
        import comfy.model_management  # noqa: F401
        import comfy.model_patcher  # noqa: F401
    except Exception:
        return False
    return True


def register(pipe) -> bool:
    """Put ``pipe`` under ComfyUI's model management; False (nothing done) outside ComfyUI."""
    try:
        import comfy.model_management as mm
        import comfy.model_patcher  # noqa: F401
    except Exception:
        return False
    pipe.manager = ComfyMemory(mm)
    return True
