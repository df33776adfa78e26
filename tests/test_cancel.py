"""Cancel acts within one UNet call on the diffusers path: between UNet calls, before each VAE encode and
decode, and between the parts of a model load (which took 34 s to honour a Cancel in a real ComfyUI).

The ComfyUI stand-in (tests/fake_comfy.py) provides the interrupt flag the nodes poll.
"""
from __future__ import annotations

import pytest
import torch

from nullface.faces.identity import ArcFace, FaceModels
from nullface.models.insightface import find_buffalo
from tests.fake_comfy import fake_comfy  # noqa: F401  (fixture)
from tests.test_nodes import TemplateDetector
from tests.test_runtime import UNetCalls, node


class Calls:
    """Counts a module's forward calls and presses Cancel at call ``at``."""

    def __init__(self, module, mm, at=None):
        self.module, self.mm, self.at, self.calls = module, mm, at, 0

    def __enter__(self):
        def hook(module, args, output):
            self.calls += 1
            if self.calls == self.at:
                self.mm.interrupt_current_processing(True)
        self.handle = self.module.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture()
def comfy_pipe(pack, fake_comfy, tiny):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    return pipe


def images(n: int) -> torch.Tensor:
    return torch.rand(n, 64, 64, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("after", [1, 3])
def test_cancel_after_n_unet_calls_stops_at_that_call(pack, fake_comfy, comfy_pipe, after):
    def press(calls):
        if calls == after:
            fake_comfy.interrupt_current_processing(True)
    with UNetCalls(comfy_pipe.unet, press) as calls, pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFaceInversion")(comfy_pipe, images(1), 20, 10, 0)
    assert calls.calls == after                              # no UNet call after the Cancel


def test_cancel_during_vae_encode_stops_before_the_next_image(pack, fake_comfy, comfy_pipe):
    with Calls(comfy_pipe.vae.encoder, fake_comfy, at=1) as enc, UNetCalls(comfy_pipe.unet) as unet, \
            pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFaceInversion")(comfy_pipe, images(3), 20, 10, 0)
    assert enc.calls == 1 and unet.calls == 0


def test_cancel_during_vae_decode_stops_before_the_next_image(pack, fake_comfy, comfy_pipe, tiny):
    arcface = ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx")
    models = FaceModels(detector=TemplateDetector(), arcface=arcface)
    with Calls(comfy_pipe.vae.decoder, fake_comfy, at=1) as dec, \
            pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFaceAnonymize")(comfy_pipe, models, images(3), 10, 6, 10.0, 1.0, 1.0, 0.5, 0)
    assert dec.calls == 1                                    # before: all three decoded and an image returned


def test_cancel_during_a_reload_stops_before_the_next_component(pack, fake_comfy, comfy_pipe, monkeypatch):
    """After ComfyUI unloaded the pipe (CPU-only), the next node reads it from disk again: a Cancel pressed
    while one component loads stops the load before the next component."""
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    comfy_pipe.unload()                                      # as ComfyUI's unload does on a CPU-only run
    assert not comfy_pipe.loaded
    loaded = []

    def loading(mp, cls):
        real = cls.from_pretrained

        def load(*a, **k):
            loaded.append(cls.__name__)
            fake_comfy.interrupt_current_processing(True)   # Cancel pressed while this component loads
            return real(*a, **k)
        mp.setattr(cls, "from_pretrained", load)

    with monkeypatch.context() as mp:
        for cls in (transformers.CLIPTextModel, UNet2DConditionModel, AutoencoderKL):
            loading(mp, cls)
        with pytest.raises(fake_comfy.InterruptProcessingException):
            node(pack, "NullFaceInversion")(comfy_pipe, images(1), 20, 10, 0)
    assert len(loaded) == 1 and not comfy_pipe.loaded        # the other networks were never read
    (inv,) = node(pack, "NullFaceInversion")(comfy_pipe, images(1), 20, 10, 0)   # the next run loads it
    assert comfy_pipe.loaded and inv.batch == 1


def test_cancel_in_the_loader_node(pack, fake_comfy, tiny, monkeypatch):
    import nullface.models.sd15 as sd15
    real = sd15.load_sd15

    def load_then_cancel(*a, **k):
        out = real(*a, **k)
        fake_comfy.interrupt_current_processing(True)
        return out

    monkeypatch.setattr(sd15, "load_sd15", load_then_cancel)
    attached = []
    monkeypatch.setattr(sd15, "attach_faceid", lambda *a, **k: attached.append(1))
    with pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    assert attached == []
