"""Reverse Personalization nodes on the tiny SDXL models, without ComfyUI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nullface.faces.identity import ArcFace, FaceModels, find_buffalo
from tests.test_nodes import TemplateDetector


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    from nullface.models.sdxl import load_revpers_pipe
    from tests.tiny_sdxl import build_sdxl
    paths = build_sdxl(tmp_path_factory.mktemp("xl"))
    return load_revpers_pipe(paths["sdxl"], paths["faceid_sdxl"], device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def face_models(tiny):
    return FaceModels(detector=TemplateDetector(), arcface=ArcFace(find_buffalo(tiny["insightface_root"]) /
                                                                   "w600k_r50.onnx"))


def node(pack, name):
    cls = pack.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)


def test_widgets_carry_the_settings_defaults(pack):
    from nullface.methods.revpers.settings import ReversePersonalizationSettings as RS
    spec = pack.NODE_CLASS_MAPPINGS["RevPersInversion"].INPUT_TYPES()["required"]
    assert spec["guidance_scale"][1]["default"] == RS().guidance_scale == -10.0
    assert spec["skip"][1]["max"] == RS.spec("skip")["max"]
    assert spec["steps"][1]["tooltip"] == RS.spec("steps")["help"]


def test_inversion_then_sampler_nodes(pack, xl, face_models):
    images = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    (emb,) = node(pack, "NullFaceEmbedding")(face_models, images, "largest", 0)
    (inv,) = node(pack, "RevPersInversion")(xl, images, 4, 0.7, -10.0, 1.0, 0)
    assert inv.batch == 2 and inv.unet_evals == 2 * 4 * 2
    out, latent = node(pack, "RevPersSampler")(xl, inv, emb, -10.0, 1.0, "")
    assert out.shape == (2, 64, 64, 3) and latent["samples"].shape == (2, 4, 8, 8)
    again, _ = node(pack, "RevPersSampler")(xl, inv, emb, -10.0, 1.0, "")
    assert torch.equal(out, again)                       # one inversion, sampled as often as you like
    (one,) = node(pack, "RevPersAnonymize")(xl, face_models, images, steps=4, skip=0.7, guidance_scale=-10.0,
                                           id_scale=1.0, ip_adapter_scale=1.0, seed=0, prompt="")
    assert torch.allclose(one, out, atol=1e-5)            # the one-node version is the same method


def test_photo_node_anonymizes_and_reports(pack, xl, tiny, astronaut):
    from nullface.faces.identity import load_face_models
    fm = load_face_models(tiny["insightface_root"], detector="dlib")
    image = torch.from_numpy(astronaut.astype(np.float32) / 255.0)[None]
    out, report, count, ignored = node(pack, "RevPersAnonymizePhoto")(
        xl, fm, image, "", "error", "error", steps=3, skip=0.7, guidance_scale=-10.0, id_scale=1.0,
        ip_adapter_scale=1.0, seed=0, prompt="", crop_size=64, audit_tries=0)
    assert count >= 1 and ignored == 0 and "anonymized" in report and out.shape == image.shape
    assert not torch.equal(out, image)
