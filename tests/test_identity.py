"""ArcFace loading and embedding, identity negation and the null identity."""
from __future__ import annotations

import numpy as np
import pytest

from nullface.faces.align import ARCFACE_TEMPLATE, arcface_crop, similarity_transform
from nullface.errors import InputError, ModelFileError
from nullface.faces.identity import (ArcFace, find_buffalo, negate_identities, negate_identity, null_identity,
                               rotate_within_angle)


def unit(seed):
    v = np.random.RandomState(seed).randn(512).astype(np.float32)
    return v / np.linalg.norm(v)


def test_negation_is_minus_lambda_e():
    e = unit(0)
    assert np.allclose(negate_identity(e, 1.0), -e)
    assert np.allclose(negate_identity(e, 0.5), -0.5 * e)
    assert np.allclose(negate_identity(e, 0.0), 0)


def test_rotation_stays_within_angle_keeps_norm_and_is_seeded():
    e = unit(1)
    for seed in range(20):
        r = rotate_within_angle(-e, 30.0, seed)
        cos = float(np.dot(r, -e) / np.linalg.norm(r))
        assert np.isclose(np.linalg.norm(r), 1.0, atol=1e-5)
        assert cos >= np.cos(np.radians(30.0)) - 1e-6
    assert np.array_equal(rotate_within_angle(e, 30, 3), rotate_within_angle(e, 30, 3))
    assert not np.array_equal(rotate_within_angle(e, 30, 3), rotate_within_angle(e, 30, 4))
    c = negate_identity(e, 2.0, max_angle=10.0, seed=0)
    assert np.isclose(np.linalg.norm(c), 2.0, atol=1e-5)


def test_batch_negation_and_null_identity():
    cond = negate_identities([unit(0), unit(1)], lambda_id=1.0)
    assert cond.vectors.shape == (2, 512) and len(cond) == 2
    assert not null_identity(3).any() and null_identity(3).shape == (3, 512)
    with pytest.raises(InputError):
        negate_identities([])
    with pytest.raises(InputError, match="512"):
        negate_identity(np.ones(128, np.float32))


def test_similarity_transform_recovers_a_known_transform():
    a = np.radians(20)
    m = np.array([[1.5 * np.cos(a), -1.5 * np.sin(a), 10], [1.5 * np.sin(a), 1.5 * np.cos(a), -4]])
    src = ARCFACE_TEMPLATE
    dst = src @ m[:, :2].T + m[:, 2]
    assert np.allclose(similarity_transform(src, dst), m, atol=1e-9)


def test_arcface_loads_and_embeds_unit_vectors(tiny, astronaut):
    arc = ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx", providers="auto")
    kps = ARCFACE_TEMPLATE * 2 + np.array([150, 60])
    e = arc.embed(astronaut, kps)
    assert e.shape == (512,) and np.isclose(np.linalg.norm(e), 1, atol=1e-5)
    assert np.allclose(arc.embed(astronaut, kps), e)                                   # deterministic
    other = arc.embed(astronaut, kps + 60)
    assert not np.allclose(other, e)
    crop = arcface_crop(astronaut, kps)
    assert crop.shape == (112, 112, 3)
    assert np.allclose(arc.embed_aligned(crop[None])[0], e, atol=1e-6)


def test_buffalo_folder_layouts_and_errors(tiny, tmp_path):
    root = tiny["insightface_root"]
    assert find_buffalo(root).name == "buffalo_l"
    nested = tmp_path / "models" / "buffalo_l" / "buffalo_l"
    nested.mkdir(parents=True)
    (nested / "w600k_r50.onnx").write_bytes((root / "models" / "buffalo_l" / "w600k_r50.onnx").read_bytes())
    assert find_buffalo(tmp_path) == nested                                           # doubly nested zip
    with pytest.raises(ModelFileError, match="buffalo_l.*models"):
        find_buffalo(tmp_path / "nowhere")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="corrupt"):
        ArcFace(bad)
    with pytest.raises(ModelFileError, match="w600k_r50.onnx"):
        ArcFace(tmp_path / "w600k_r50.onnx")


def test_wrong_onnx_kind_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "det",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 640, 480])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 640, 480])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "det_10g.onnx"))
    with pytest.raises(ModelFileError, match="not an ArcFace"):
        ArcFace(tmp_path / "det_10g.onnx")


def test_providers_are_chosen_from_those_installed_and_logged(tiny, caplog):
    import onnxruntime
    from nullface.errors import MissingDependencyError
    from nullface.models.onnx import choose_providers
    available = onnxruntime.get_available_providers()
    auto = choose_providers("auto")
    assert auto and set(auto) <= set(available) and auto[-1] == "CPUExecutionProvider"
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
            choose_providers("cuda")
    with caplog.at_level("INFO", logger="nullface"):
        ArcFace(find_buffalo(tiny["insightface_root"]) / "w600k_r50.onnx", providers="cpu")
    assert "runs on CPUExecutionProvider" in caplog.text


def test_device_and_dtype_choice():
    import torch
    from nullface.models.devices import pick_device, pick_dtype
    dev = pick_device("auto")
    assert dev.type in ("cuda", "mps", "cpu")
    assert pick_dtype(torch.device("cuda"), "auto") == torch.float16
    assert pick_dtype(torch.device("cpu"), "auto") == torch.float32
    assert pick_dtype(torch.device("mps"), "auto") == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(InputError):
        pick_dtype(torch.device("cpu"), "int8")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            pick_device("cuda")
