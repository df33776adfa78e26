"""The Re-ID Audit node, run without ComfyUI."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from nullface.privacy.audit import ImageAudit, default_detector, faces_per_image
from nullface.errors import InputError
from tests.conftest import pack_module

node_audit = pack_module("nodes.audit")
numpy_to_images = pack_module("nodes._common").numpy_to_images

ASTRO_FACE = (175, 76, 265, 166)


def _blur_face(image, box=ASTRO_FACE, radius=14, grow=18):
    x1, y1, x2, y2 = box
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    out = image.copy()
    out[y1 - grow:y2 + grow, x1 - grow:x2 + grow] = blurred[y1 - grow:y2 + grow, x1 - grow:x2 + grow]
    return out


@pytest.fixture(scope="module")
def node():
    return node_audit.NullFaceReIDAudit()


@pytest.fixture(scope="module")
def astro_faces(astronaut):
    return list(default_detector().detect(astronaut))


@pytest.fixture(scope="module")
def real_face(astro_faces):
    return next(f for f in astro_faces if abs(f.bbox[0] - ASTRO_FACE[0]) < 10 and abs(f.bbox[1] - ASTRO_FACE[1]) < 10)


def test_node_declaration():
    cls = node_audit.NullFaceReIDAudit
    spec = cls.INPUT_TYPES()
    for group in spec.values():
        for name, (kind, opts) in group.items():
            assert opts.get("tooltip"), name
    assert cls.CATEGORY == "NullFace/audit"
    assert cls.RETURN_TYPES == ("NULLFACE_AUDIT", "STRING", "BOOLEAN", "INT")
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert node_audit.NODE_CLASS_MAPPINGS["NullFaceReIDAudit"] is cls
    assert node_audit.NODE_DISPLAY_NAME_MAPPINGS["NullFaceReIDAudit"] == "NullFace Re-ID Audit"


def test_unchanged_image_fails_detecting_faces_itself(node, astronaut):
    img = numpy_to_images([astronaut])
    audits, report, passed, count = node.audit(img, img.clone())
    assert passed is False and count == 0
    assert len(audits) == 1 and isinstance(audits[0], ImageAudit) and len(audits[0].faces) >= 1
    assert "FAIL" in report and "AUDIT FAILED" in report


def test_blurred_face_passes_with_given_faces_and_batch(node, astronaut, real_face):
    blurred = _blur_face(astronaut)
    anon = numpy_to_images([blurred, astronaut])              # one original for two anonymized images
    audits, report, passed, count = node.audit(numpy_to_images([astronaut]), anon, faces=[real_face])
    assert [a.passed for a in audits] == [True, False]
    assert passed is False and count == 1
    assert "image 0: 1/1 faces pass" in report and "image 1: 0/1" in report
    audits, _, passed, count = node.audit(numpy_to_images([astronaut]), anon[:1], faces=[[real_face]])
    assert passed is True and count == 1


def test_threshold_and_arcface_from_face_models(node, astronaut, real_face):
    class FakeArcFace:
        def embed(self, image, kps):
            v = np.zeros(512, np.float32)
            v[int(image.mean()) % 512] = 1.0               # different pixels -> orthogonal vectors (mostly)
            return v

    @dataclasses.dataclass
    class FaceModels:
        detector: object
        arcface: object

    blurred = numpy_to_images([_blur_face(astronaut)])
    audits, report, passed, _ = node.audit(numpy_to_images([astronaut]), blurred, dlib_threshold=0.6,
                                           faces=[real_face], face_models=FaceModels(None, FakeArcFace()))
    names = [r.recognizer for r in audits[0].faces[0].results]
    assert names == ["dlib", "arcface"] and "arcface" in report
    # an absurdly strict dlib threshold makes the blurred face fail too
    audits, _, passed, _ = node.audit(numpy_to_images([astronaut]), blurred, dlib_threshold=1.5, faces=[real_face])
    assert not passed and audits[0].faces[0].result("dlib").threshold == 1.5
    assert node._dlib.threshold == 0.6                      # the cached recognizer is not modified


def test_faces_per_image_shapes(real_face):
    @dataclasses.dataclass
    class PhotoFaces:
        faces: list

    assert faces_per_image(None, 2) is None
    assert faces_per_image([real_face], 1) == [[real_face]]
    assert faces_per_image([[real_face], []], 2) == [[real_face], []]
    assert faces_per_image(PhotoFaces([[real_face], []]), 2) == [[real_face], []]
    assert faces_per_image([], 3) == [[]]
    with pytest.raises(InputError, match="describes 2 images"):
        faces_per_image([[real_face], []], 3)


def test_mismatched_batches_are_input_errors(node, astronaut, real_face):
    img = numpy_to_images([astronaut, astronaut])
    with pytest.raises(InputError, match="original images"):
        node.audit(img, numpy_to_images([astronaut] * 3), faces=[real_face])
    with pytest.raises(InputError, match="image 0"):
        node.audit(numpy_to_images([astronaut]), torch.zeros(1, 256, 256, 3), faces=[real_face])
