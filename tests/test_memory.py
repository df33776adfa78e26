"""Memory given back on ComfyUI's POST /free (``unload_models``): after the unload no tensor of a pipe stays
reachable (weak references to every parameter and buffer die), FaRL's included, and the C heap is trimmed
so the process gives the RAM back (it held 3.3 GB after /free in a real ComfyUI, where ComfyUI's own
models dropped to 1.45 GB). Uses the ComfyUI stand-in of tests/fake_comfy.py."""
from __future__ import annotations

import gc
import weakref

import torch

import nullface.models.sd15 as sd15
from nullface.faces.identity import ArcFace, FaceModels
from nullface.models.insightface import find_buffalo
from tests.fake_comfy import fake_comfy  # noqa: F401  (fixture)
from tests.test_nodes import TemplateDetector
from tests.test_runtime import node


def tensors_of(*modules) -> list[weakref.ref]:
    return [weakref.ref(t) for m in modules if m is not None for t in [*m.parameters(), *m.buffers()]]


def pipe_tensors(pipe) -> list[weakref.ref]:
    p = pipe.modules
    return tensors_of(p.unet, p.vae, p.text_encoder, getattr(p, "text_encoder_2", None),
                      pipe.features if isinstance(getattr(pipe, "features", None), torch.nn.Module) else None)


def test_unload_all_models_leaves_no_tensor_of_the_pipe_and_trims_the_heap(pack, fake_comfy, tiny, monkeypatch):
    trims = []
    real = sd15.give_back_host_memory
    monkeypatch.setattr(sd15, "give_back_host_memory", lambda: trims.append(real()) or trims[-1])
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    arcface = ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx")
    models = FaceModels(detector=TemplateDetector(), arcface=arcface)
    images = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    (out,) = node(pack, "NullFaceAnonymize")(pipe, models, images, 10, 6, 10.0, 1.0, 1.0, 0.5, 0)
    (inv,) = node(pack, "NullFaceInversion")(pipe, images, 10, 6, 0)          # outputs ComfyUI keeps cached
    refs = pipe_tensors(pipe)
    assert len(refs) > 100
    fake_comfy.unload_all_models()                             # POST /free {"unload_models": true}
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive == 0, f"{alive} of {len(refs)} tensors of the pipe are still reachable"
    assert trims, "the heap was not trimmed after the unload"
    assert inv.batch == 2 and out.shape[0] == 2                # the cached outputs themselves are fine


def test_inpaint_pipe_unload_drops_farl_too_and_reads_it_again(tmp_path_factory, monkeypatch):
    from nullface.methods.inpaint.pipeline import anonymize_inpaint, load_inpaint_pipe
    from nullface.methods.inpaint.settings import InpaintSettings
    from tests.inpaint_models import build_inpaint_models
    files = build_inpaint_models(tmp_path_factory.mktemp("inpaint_memory"))
    pipe = load_inpaint_pipe(files["folder"], files["farl"], device="cpu", dtype="fp32")
    refs = pipe_tensors(pipe)
    farl = weakref.ref(pipe.features)
    pipe.unload()
    gc.collect()
    assert farl() is None and sum(r() is not None for r in refs) == 0
    face = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 64, 64)
    out = anonymize_inpaint(pipe, face, mask, face, InpaintSettings(steps=2))   # FaRL read again for the guidance
    assert pipe.loaded and pipe.features is not None and out.shape == (1, 64, 64, 3)
