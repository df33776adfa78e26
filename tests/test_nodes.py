"""ComfyUI node contracts and end-to-end runs on the tiny models, without ComfyUI."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from nullface.faces.align import ARCFACE_TEMPLATE
from nullface.faces.detect import DetectedFace
from nullface.faces.identity import ArcFace, FaceModels, find_buffalo
from tests.fake_comfy import fake_comfy  # noqa: F401  (fixture)

SOCKET_ONLY = {"IMAGE", "MASK", "LATENT"}


def test_every_node_honours_the_contract(pack):
    assert pack.NODE_CLASS_MAPPINGS and set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}, name
        params = inspect.signature(getattr(cls(), cls.FUNCTION)).parameters
        for section in ("required", "optional"):
            for inp, value in spec.get(section, {}).items():
                assert isinstance(value, tuple) and 1 <= len(value) <= 2, (name, inp)
                kind = value[0]
                assert isinstance(kind, (str, list)), (name, inp)
                opts = value[1] if len(value) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
                if isinstance(kind, list):
                    assert kind, (name, inp)
                    if "default" in opts:
                        assert opts["default"] in kind, (name, inp)
                elif kind in ("INT", "FLOAT"):
                    assert opts["min"] <= opts["default"] <= opts["max"], (name, inp)
                assert inp in params or any(p.kind == p.VAR_KEYWORD for p in params.values()), (name, inp)
        for p in params.values():
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                assert p.name in spec["required"], f"{name}: argument {p.name} is not a required input"
        assert isinstance(cls.RETURN_TYPES, tuple)
        names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
        assert len(names) == len(cls.RETURN_TYPES), name
        assert cls.CATEGORY == "NullFace" or cls.CATEGORY.startswith("NullFace/"), name


class TemplateDetector:
    """A stand-in detector that reports one face where the ArcFace template puts it (aligned crops)."""

    name = "template"

    def detect(self, image):
        s = image.shape[0] / 112.0
        kps = (ARCFACE_TEMPLATE * s).astype(np.float32)
        box = np.array([kps[:, 0].min() - 10, kps[:, 1].min() - 15, kps[:, 0].max() + 10, kps[:, 1].max() + 10],
                       np.float32)
        return [DetectedFace(bbox=box, score=1.0, kps=kps, landmarks=None, backend="template")]


@pytest.fixture(scope="module")
def face_models(tiny):
    return FaceModels(detector=TemplateDetector(), arcface=ArcFace(find_buffalo(tiny["insightface_root"]) /
                                                                   "w600k_r50.onnx"))


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 64, 64, 3, generator=g)


def node(pack, name):
    cls = pack.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)


def test_method_nodes_end_to_end_batch_of_two_with_mask(pack, tiny, face_models, images):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    (emb,) = node(pack, "NullFaceEmbedding")(face_models, images, "largest", 0)
    assert len(emb) == 2 and not np.allclose(emb[0].vector, emb[1].vector)
    (ident,) = node(pack, "NullFaceNegateIdentity")(emb, 1.0, 0.0, 0)
    assert np.allclose(ident.vectors[0], -emb[0].vector)
    (inv,) = node(pack, "NullFaceInversion")(pipe, images, 20, 14, 0)
    keep = torch.zeros(2, 64, 64)
    keep[:, 20:34, 10:54] = 1                                        # "keep the eyes"
    (mask,) = node(pack, "NullFaceRegionMask")(keep, "keep", 0, 0.0, "none")
    assert torch.equal(mask, 1 - keep)
    out, latent = node(pack, "NullFaceSampler")(pipe, inv, ident, 10.0, 1.0, 1 / 3, "", False, mask)
    assert out.shape == (2, 64, 64, 3) and latent["samples"].shape == (2, 4, 8, 8)
    assert 0 <= out.min() and out.max() <= 1
    with pytest.raises(Exception, match="lambda_cfg must be > 0"):     # λ_cfg = 0 would anonymize nothing
        node(pack, "NullFaceSampler")(pipe, inv, ident, 0.0, 1.0, 1 / 3, "", False, mask)
    (one,) = node(pack, "NullFaceAnonymize")(pipe, face_models, images, 20, 14, 10.0, 1.0, 1.0, 1 / 3, 0, mask)
    assert torch.allclose(one, out, atol=1e-5)                      # the one-node path is the same method
    (pipe2,) = node(pack, "NullFaceUnload")(pipe)
    assert pipe2 is pipe


def test_keep_loaded_off_offloads_after_each_run(pack, tiny, face_models, images):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", False)
    node(pack, "NullFaceInversion")(pipe, images[:1], 10, 8, 0)
    assert pipe.keep_loaded is False


def test_region_mask_operations(pack):
    prep = node(pack, "NullFaceRegionMask")
    m = torch.zeros(1, 32, 32)
    m[:, 10:20, 10:20] = 1
    (grown,) = prep(m, "anonymize", 2, 0.0, "none")
    assert grown.sum() == 14 * 14
    (shrunk,) = prep(m, "anonymize", -2, 0.0, "none")
    assert shrunk.sum() == 6 * 6
    (soft,) = prep(m, "anonymize", 0, 4.0, "none")
    assert 0 < soft[0, 15, 9] < 1 and soft[0, 0, 0] == 0
    b = torch.zeros(1, 32, 32)
    b[:, 15:25, 15:25] = 1
    (u,) = prep(m, "anonymize", 0, 0.0, "union", b)
    (i,) = prep(m, "anonymize", 0, 0.0, "intersection", b)
    assert u.sum() == 100 + 100 - 25 and i.sum() == 25


def test_progress_ticks_once_per_step(pack, tiny, face_models, images, fake_comfy):
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    node(pack, "NullFaceAnonymize")(pipe, face_models, images[:1], 20, 14, 10.0, 1.0, 1.0, 1 / 3, 0)
    shown = fake_comfy.utils.ProgressBar.shown
    assert [v for v, _ in shown] == list(range(1, 5 + 6 + 1)) and {t for _, t in shown} == {5 + 6}


def test_cancel_stops_within_one_step(monkeypatch, pack, tiny, face_models, images):
    import sys
    _common = sys.modules["ComfyUI_NullFace.nodes._common"]

    class Interrupted(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted()

    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    monkeypatch.setattr(_common, "check_interrupt", interrupt)       # (the loader polls it too)
    counted = []
    h = pipe.unet.register_forward_pre_hook(lambda m, a: counted.append(a[0].shape[0]))
    try:
        with pytest.raises(Interrupted):
            node(pack, "NullFaceAnonymize")(pipe, face_models, images[:1], 20, 14, 10.0, 1.0, 1.0, 1 / 3, 0)
    finally:
        h.remove()
    assert len(calls) == 3 and sum(counted) <= 5 + 2        # stopped right after the 3rd tick


def test_photo_nodes_end_to_end(pack, tiny, astronaut):
    from nullface.faces.detect import DlibDetector
    fm = FaceModels(detector=DlibDetector(), arcface=ArcFace(find_buffalo(tiny["insightface_root"]) /
                                                                "w600k_r50.onnx"))
    image = torch.from_numpy(np.stack([astronaut, astronaut[:, ::-1].copy()]).astype(np.float32) / 255)
    faces, count, ignored = node(pack, "NullFaceDetectFaces")(fm, image, "error")
    assert count >= 2 and len(faces.faces) == 2 and ignored == 0
    crops, info = node(pack, "NullFaceCropFaces")(image, faces, 64, 1.3)
    assert crops.shape == (count, 64, 64, 3) and len(info) == count
    regions = {r: r in ("eyes", "mouth") for r in ("eyes", "brows", "nose", "mouth", "skin", "face")}
    (mask,) = node(pack, "NullFaceFaceRegionMask")(info, 0, 0.0, **regions)
    assert mask.shape == (count, 64, 64) and 0 < mask.mean() < 0.5
    (pasted,) = node(pack, "NullFacePasteFaces")(image, info, 1 - crops)
    changed = (pasted - image).abs().amax(-1) > 1 / 255
    assert changed.any() and changed.float().mean() < 0.2
    (same,) = node(pack, "NullFacePasteFaces")(image, info, crops)
    assert torch.allclose(same, image, atol=1 / 255)
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    out, report, n, ign = node(pack, "NullFaceAnonymizePhoto")(pipe, fm, image, "eyes,mouth", "error", "error",
                                                               10, 7, 10.0, 1.0, 1.0, 1 / 3, 0, 64, audit_tries=0)
    assert out.shape == image.shape and n == count and ign == 0 and "image 1:" in report
    outside = (out - image).abs().amax(-1) > 1 / 255
    assert outside.any() and outside.float().mean() < 0.2
    blank = torch.full((1, 96, 96, 3), 128 / 255)            # an 8-bit value, as LoadImage gives
    with pytest.raises(Exception, match="no face"):
        node(pack, "NullFaceAnonymizePhoto")(pipe, fm, blank, "", "error", "error", 10, 7, 10.0, 1.0, 1.0, 1 / 3, 0, 64,
                                             audit_tries=0)
    out, report, n, ign = node(pack, "NullFaceAnonymizePhoto")(pipe, fm, blank, "", "error", "pass",
                                                               10, 7, 10.0, 1.0, 1.0, 1 / 3, 0, 64, audit_tries=0)
    assert n == 0 and ign == 0 and torch.equal(out, blank) and "no face" in report


def test_photo_nodes_list_and_count_faces_ignored_by_the_minimum_size(pack, tiny, astronaut):
    """The face models' min_face_size leaves small faces out: the nodes count them and the report lists
    each with its box and reason (before, they vanished from the detector's list unreported)."""
    from nullface.faces.detect import DlibDetector
    sizes = sorted(f.size for f in DlibDetector().detect(astronaut))
    assert len(sizes) == 2 and sizes[0] < sizes[1]
    fm = FaceModels(detector=DlibDetector(min_size=(sizes[0] + sizes[1]) / 2),
                    arcface=ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx"))
    image = torch.from_numpy(astronaut[None].astype(np.float32) / 255)
    faces, count, ignored = node(pack, "NullFaceDetectFaces")(fm, image, "error")
    assert count == 1 and ignored == 1 and faces.ignored[0][0].ignored.startswith("smaller than min_face_size")
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    out, report, n, ign = node(pack, "NullFaceAnonymizePhoto")(pipe, fm, image, "", "error", "error",
                                                               10, 7, 10.0, 1.0, 1.0, 1 / 3, 0, 64, audit_tries=0)
    assert n == 1 and ign == 1 and "1 IGNORED" in report
    assert any(ln.strip().startswith("ignored face [") and "smaller than min_face_size" in ln
               for ln in report.splitlines())


def test_anonymize_photo_node_reports_the_audit(pack, tiny, astronaut):
    from nullface.faces.detect import DlibDetector
    fm = FaceModels(detector=DlibDetector(), arcface=ArcFace(find_buffalo(tiny["insightface_root"]) /
                                                                "w600k_r50.onnx"))
    image = torch.from_numpy(astronaut[None].astype(np.float32) / 255)
    (pipe,) = node(pack, "NullFacePipeLoader")(str(tiny["sd15"]), str(tiny["faceid_bin"]), "cpu", "fp32", True)
    cls = pack.NODE_CLASS_MAPPINGS["NullFaceAnonymizePhoto"]
    inst = cls()
    out, report, n, _ = inst.anonymize(pipe, fm, image, "", "pixelate", "error", 10, 7, 10.0, 1.0, 1.0, 1 / 3, 0,
                                       64, audit_tries=2)
    lines = [ln for ln in report.splitlines() if ln.strip().startswith("audit")]
    assert lines and all(("pass after 1" in ln) or ("FAIL after 2" in ln) or ("pass after 2" in ln) for ln in lines)
    first = inst._dlib
    inst.anonymize(pipe, fm, image, "", "pixelate", "error", 10, 7, 10.0, 1.0, 1.0, 1 / 3, 0, 64, audit_tries=1)
    assert inst._dlib is first                                      # the recognizer is loaded once
