"""Behaviour at run time: progress after every UNet call, Cancel, and memory that is really given back.

ComfyUI's side is the stand-in of tests/fake_comfy.py; the models are the tiny real-architecture ones.
"""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from nullface.errors import ModelFileError
from nullface.faces.identity import ArcFace, FaceModels, find_buffalo
from nullface.diffusion.inversion import invert
from nullface.models.sd15 import load_pipe
from nullface.methods.nullface.pipeline import anonymize_face, invert_latents
from nullface.diffusion.schedule import sd15_schedule
from nullface.methods.nullface.settings import NullFaceSettings
from tests import faces_data as fd
from tests.fake_comfy import fake_comfy  # noqa: F401  (fixture)
from tests.test_nodes import TemplateDetector


class CountingNet:
    """ε(x_t, ∅) stand-in that counts UNet calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return torch.tanh(x + t.float().view(-1, 1, 1, 1) / 1000)


class UNetCalls:
    """Counts the real UNet's forward calls and lets a test act after each one."""

    def __init__(self, unet, after=None):
        self.unet, self.after, self.calls, self.rows = unet, after, 0, 0

    def __enter__(self):
        def hook(module, args, output):
            self.calls += 1
            self.rows += int(args[0].shape[0])            # UNet evaluations in this call
            if self.after is not None:
                self.after(self.calls)
        self.handle = self.unet.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def node(pack, name):
    cls = pack.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)


@pytest.fixture(scope="module")
def arcface(tiny):
    return ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx")


@pytest.fixture()
def fresh_pipe(tiny):
    return load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="fp32")


# ------------------------------------------------------------------------------------------- progress


@pytest.mark.parametrize("batch,images", [(1, 1), (3, 1), (8, 1), (8, 2), (1, 3)])
def test_inversion_calls_back_once_after_every_unet_call(batch, images):
    net, seen = CountingNet(), []
    x0 = torch.randn(images, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    invert(net, x0, sd15_schedule(100), 70, batch=batch,
           callback=lambda info: seen.append((net.calls, info["done"], info["steps"], info["batch"])))
    assert [c for c, *_ in seen] == list(range(1, net.calls + 1))       # one report right after each call
    assert seen[-1][1] == 29 and sum(s for _, _, s, _ in seen) == 29     # every inverted step reported once
    assert all(b == images for *_, b in seen)


def test_inversion_batch_is_one_on_the_cpu_and_changes_nothing(pipe):
    from nullface.models.devices import pick_inversion_batch
    assert pick_inversion_batch(torch.device("cpu")) == 1
    assert pick_inversion_batch(torch.device("cuda")) == 8 and pick_inversion_batch(torch.device("cpu"), 4) == 4
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    s = NullFaceSettings(steps=20, t_skip=10)
    with UNetCalls(pipe.unet) as calls:
        auto = invert_latents(pipe, x0, s)
    assert calls.calls == s.inversion_steps                              # one step per call on the CPU
    eight = invert_latents(pipe, x0, NullFaceSettings(steps=20, t_skip=10, inversion_batch=8))
    assert torch.allclose(auto.zs, eight.zs, atol=1e-5)


def test_anonymize_node_moves_the_bar_after_every_unet_call(pack, fake_comfy, pipe, arcface):
    models = FaceModels(detector=TemplateDetector(), arcface=arcface)
    images = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    shown = fake_comfy.utils.ProgressBar.shown
    marks = []
    with UNetCalls(pipe.unet, after=lambda n: marks.append(len(shown))):
        node(pack, "NullFaceAnonymize")(pipe, models, images, 10, 6, 10.0, 1.0, 1.0, 0.5, 0)
    total = (3 + 4) * 2                                   # (inverted + denoising steps) x images
    assert shown[-1] == (total, total)
    assert all(t == total for _, t in shown)
    # between two UNet calls the bar moved; it reached the end only after the last call
    assert len(shown) == len(marks) and marks == list(range(len(marks)))
    assert all(v < total for v, _ in shown[:-1])


def test_photo_node_total_covers_every_face_and_batch(pack, fake_comfy, pipe, arcface):
    photo = fd.image("t1")
    models = FaceModels(detector=fd.detector(), arcface=arcface)
    faces = len(fd.faces("t1"))
    assert faces == 6                                      # two batches of the photo's default 4 faces
    shown = fake_comfy.utils.ProgressBar.shown
    calls = []
    image = torch.from_numpy(photo.astype(np.float32) / 255)[None]
    with UNetCalls(pipe.unet, after=lambda n: calls.append(len(shown))):
        out, report, done, _ignored = node(pack, "NullFaceAnonymizePhoto")(
            pipe, models, image, "", "error", "error", 4, 2, 10.0, 1.0, 1.0, 0, 0, 64, audit_tries=0)
    assert done == faces
    total = (1 + 2) * faces
    assert shown[0][1] == total and shown[-1] == (total, total)
    values = [v for v, _ in shown]
    assert values == sorted(values)
    last_call_report = shown[calls[-1]]                    # the report right after the last UNet call
    assert all(v < total for v, _ in shown[:calls[-1]]) and last_call_report[0] == total


def test_photo_node_adds_audit_retries_to_the_total(pack, fake_comfy, pipe, arcface, monkeypatch):
    photo = fd.image("astronaut")
    models = FaceModels(detector=fd.detector(), arcface=arcface)
    faces = len(fd.faces("astronaut"))

    class NeverPasses:
        def __init__(self, *a, **k):
            self.name = "never"

    import nullface.privacy.audit as audit_mod
    from nullface.privacy.audit import FaceAudit

    def audit_face(original, result, face, recognizers):
        return FaceAudit(face, ())          # no recognizer passed it: fails, every try
    monkeypatch.setattr(audit_mod, "DlibRecognizer", NeverPasses)
    monkeypatch.setattr(audit_mod, "audit_face", audit_face)
    shown = fake_comfy.utils.ProgressBar.shown
    image = torch.from_numpy(photo.astype(np.float32) / 255)[None]
    node(pack, "NullFaceAnonymizePhoto")(pipe, models, image, "", "blur", "error", 4, 2, 10.0, 1.0, 1.0, 0, 0, 64,
                                         None, 3)
    per_face = 1 + 2
    assert shown[0][1] == per_face * faces
    assert shown[-1] == (per_face * faces * 3, per_face * faces * 3)  # two retries per face were added


# ------------------------------------------------------------------------------------------- Cancel


def test_cancel_stops_the_inversion_within_one_unet_call(pack, fake_comfy, pipe, arcface):
    models = FaceModels(detector=TemplateDetector(), arcface=arcface)
    images = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    fake_comfy.interrupt_current_processing(True)           # Cancel pressed as the run starts
    with UNetCalls(pipe.unet) as calls, pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFaceAnonymize")(pipe, models, images, 100, 70, 10.0, 1.0, 1.0, 1 / 3, 0)
    assert calls.calls == 0                                 # stopped before the VAE encode, so before any UNet call


def test_cancel_in_anonymize_photo_is_an_interrupt_not_a_failed_face(pack, fake_comfy, pipe, arcface):
    """With on_failure = blur, a Cancel must not blur the faces and hand the picture downstream."""
    photo = fd.image("astronaut")
    models = FaceModels(detector=fd.detector(), arcface=arcface)
    image = torch.from_numpy(photo.astype(np.float32) / 255)[None]
    fake_comfy.interrupt_current_processing(True)
    with pytest.raises(fake_comfy.InterruptProcessingException):
        node(pack, "NullFaceAnonymizePhoto")(pipe, models, image, "", "blur", "pass", 4, 2, 10.0, 1.0, 1.0, 0, 0, 64,
                                             audit_tries=0)


# ------------------------------------------------------------------------------------------- memory


def _weights_alive(pipe):
    return weakref.ref(pipe.unet), weakref.ref(pipe.vae), weakref.ref(pipe.modules.text_encoder)


@torch.no_grad()
def test_unload_frees_the_weights_and_ready_reads_them_again(fresh_pipe, arcface):
    pipe = fresh_pipe
    face = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    s = NullFaceSettings(steps=10, t_skip=6)
    vec = [np.ones(512, np.float32) / np.sqrt(512)]
    before = anonymize_face(pipe, face, s, embeddings=vec)
    assert pipe.weight_bytes() > 0
    refs = _weights_alive(pipe)
    pipe.unload()
    gc.collect()
    assert not pipe.loaded and pipe.weight_bytes() == 0
    assert all(r() is None for r in refs)                   # nothing else holds the networks: memory is free
    after = anonymize_face(pipe, face, s, embeddings=vec)   # read from disk again
    assert pipe.loaded and torch.allclose(before, after, atol=1e-6)


def test_release_on_the_cpu_unloads(fresh_pipe):
    fresh_pipe.offload()                                    # nothing to offload to on a CPU-only run
    assert fresh_pipe.loaded and not fresh_pipe.offloaded
    refs = _weights_alive(fresh_pipe)
    fresh_pipe.release()
    gc.collect()
    assert not fresh_pipe.loaded and all(r() is None for r in refs)


def test_keep_loaded_off_frees_the_memory_after_each_run(pack, tiny):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", False)
    images = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    refs = _weights_alive(pipe)
    (inv,) = node(pack, "NullFaceInversion")(pipe, images, 10, 8, 0)
    gc.collect()
    assert pipe.keep_loaded is False and not pipe.loaded and all(r() is None for r in refs)


def test_comfyui_unload_all_models_frees_the_pipe_and_it_comes_back(pack, fake_comfy, tiny, arcface):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    assert pipe.manager is not None
    models = FaceModels(detector=TemplateDetector(), arcface=arcface)
    images = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    run = node(pack, "NullFaceAnonymize")
    (first,) = run(pipe, models, images, 10, 6, 10.0, 1.0, 1.0, 0.5, 0)
    assert ("load", "NullFaceSD15") in fake_comfy.log
    assert len(fake_comfy.current_loaded_models) == 1 and pipe.loaded
    assert fake_comfy.current_loaded_models[0].model.model_size() == pipe.weight_bytes() > 0
    refs = _weights_alive(pipe)
    fake_comfy.unload_all_models()                           # POST /free {"unload_models": true}
    gc.collect()
    assert fake_comfy.current_loaded_models == [] and not pipe.loaded and all(r() is None for r in refs)
    (again,) = run(pipe, models, images, 10, 6, 10.0, 1.0, 1.0, 0.5, 0)
    assert torch.allclose(first, again, atol=1e-6) and len(fake_comfy.current_loaded_models) == 1
    (same,) = run(pipe, models, images, 10, 6, 10.0, 1.0, 1.0, 0.5, 0)  # re-registering keeps the weights
    assert pipe.loaded and len(fake_comfy.current_loaded_models) == 1
    node(pack, "NullFaceUnload")(pipe)                       # the pack's own Unload leaves ComfyUI's list too
    assert fake_comfy.current_loaded_models == [] and not pipe.loaded


def test_comfyui_dropping_the_loader_output_lets_everything_go(pack, fake_comfy, tiny, arcface):
    """POST /free {"free_memory": true} drops ComfyUI's caches: nothing of ours may keep the weights."""
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    node(pack, "NullFaceInversion")(pipe, torch.rand(1, 64, 64, 3), 10, 8, 0)
    refs = _weights_alive(pipe) + (weakref.ref(pipe),)
    del pipe
    gc.collect()
    assert all(r() is None for r in refs)
    assert all(m.model is None for m in fake_comfy.current_loaded_models)


# ------------------------------------------------------------------------------------------- errors


def test_every_missing_model_file_is_listed_in_one_message(tmp_path):
    with pytest.raises(ModelFileError) as err:
        load_pipe(tmp_path / "checkpoints" / "v1-5-pruned-emaonly.safetensors",
                  tmp_path / "ipadapter" / "ip-adapter-faceid_sd15.bin", device="cpu")
    msg = str(err.value)
    assert msg.startswith("2 model files are missing")
    assert "v1-5-pruned-emaonly.safetensors" in msg and "ip-adapter-faceid_sd15.bin" in msg
    assert "h94/IP-Adapter-FaceID" in msg and "stable-diffusion-v1-5" in msg
    from nullface.models.sd15 import check_model_files
    with pytest.raises(ModelFileError) as err:
        check_model_files(tmp_path / "a.safetensors", tmp_path / "b.bin", insightface_root=tmp_path)
    assert str(err.value).startswith("3 model files are missing") and "buffalo_l" in str(err.value)


# ------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", ["diffusers folder", "single file"])
def test_loading_prints_no_expected_third_party_noise_and_mutes_nothing_else(tiny, tmp_path, capfd, kind):
    import logging

    from nullface.models.quiet import EXPECTED
    from tests.ldm_checkpoint import save_ldm_checkpoint
    ckpt = tiny["sd15"] if kind == "diffusers folder" else save_ldm_checkpoint(tiny["sd15"], tmp_path / "m.safetensors")
    capfd.readouterr()
    load_pipe(ckpt, tiny["faceid_bin"], device="cpu", dtype="fp32", config_dir=tiny["sd15"])
    err = capfd.readouterr().err
    for noise in ("image_encoder is not loaded", "should be kept in float32", "No LoRA keys associated",
                  "Loading pipeline components", "Loading weights"):
        assert noise not in err, err[-2000:]
    # afterwards the same loggers say everything again: nothing stays muted for the rest of ComfyUI
    from nullface.models.quiet import _Drop
    for name, text, _ in EXPECTED:
        assert not any(isinstance(f, _Drop) for f in logging.getLogger(name).filters)
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    logger = logging.getLogger("diffusers.loaders.ip_adapter")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("image_encoder is not loaded since (test)")
    finally:
        logger.removeHandler(handler)
    assert seen == ["image_encoder is not loaded since (test)"]
    import diffusers.utils.logging as dlog
    assert dlog.is_progress_bar_enabled()
