"""The photo nodes (nodes/photo.py) without ComfyUI: detect, crop, region masks, paste."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nullface.faces.identity import FaceModels
from tests import faces_data as fd

PHOTO_NODES = ("NullFaceDetectFaces", "NullFaceCropFaces", "NullFaceFaceRegionMask", "NullFacePasteFaces")


@pytest.fixture(scope="module")
def photo(pack):
    import sys
    return sys.modules[f"{pack.__name__}.nodes.photo"]


@pytest.fixture(scope="module")
def models():
    return FaceModels(detector=fd.detector(), arcface=None)


def node(photo, name):
    cls = photo.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)


def as_tensor(*images):
    return torch.from_numpy(np.stack(images).astype(np.float32) / 255)


def test_mappings_tooltips_and_categories(photo):
    assert set(PHOTO_NODES) <= set(photo.NODE_CLASS_MAPPINGS)
    assert set(photo.NODE_CLASS_MAPPINGS) == set(photo.NODE_DISPLAY_NAME_MAPPINGS)
    for name in PHOTO_NODES:
        cls = photo.NODE_CLASS_MAPPINGS[name]
        assert cls.CATEGORY == "NullFace/photo" and photo.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("NullFace ")
    for name, cls in photo.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for inp, value in spec.get(section, {}).items():
                assert len(value) > 1 and value[1].get("tooltip"), f"{name}.{inp} has no tooltip"


def test_detect_crop_mask_paste(photo, models):
    img = fd.image("astronaut")
    image = as_tensor(img, np.ascontiguousarray(img[:, ::-1]))
    faces, count, _ = node(photo, "NullFaceDetectFaces")(models, image, "error")
    assert len(faces.faces) == 2 and count == faces.count() >= 2
    crops, info = node(photo, "NullFaceCropFaces")(image, faces, 128, 1.0)
    assert crops.shape == (count, 128, 128, 3) and len(info) == count
    regions = {r: r in ("eyes", "mouth") for r in ("eyes", "brows", "nose", "mouth", "skin", "face")}
    (mask,) = node(photo, "NullFaceFaceRegionMask")(info, 0, 0.0, **regions)
    assert mask.shape == (count, 128, 128) and 0 < mask.mean() < 0.3
    k = info[0].kps
    assert mask[0, int(k[3, 1]), int(k[3, 0])] == 1 and mask[0, int(k[2, 1]), int(k[2, 0])] == 0
    (full,) = node(photo, "NullFaceFaceRegionMask")(info, 0, 0.0, space="image", image=image, **regions)
    assert full.shape == (2, 512, 512)
    lm = fd.faces("astronaut")[0].landmarks68
    assert full[0, int(lm[62, 1]), int(lm[62, 0])] == 1 and full[0, 5, 5] == 0
    (again,) = node(photo, "NullFaceFaceRegionMask")(info, 0, 0.0, space="image", **regions)
    assert torch.equal(again, full)                                  # sizes recorded by Crop Faces
    (same,) = node(photo, "NullFacePasteFaces")(image, info, crops)
    assert torch.equal(same, image)                                  # unchanged crops: exact
    (pasted,) = node(photo, "NullFacePasteFaces")(image, info, 1 - crops)
    changed = (pasted - image).abs().amax(-1) > 0
    assert changed.any() and changed.float().mean() < 0.25
    allowed = torch.zeros_like(changed)
    from nullface.faces.crop import region_in_image
    for c in info:
        i = c.image_index
        allowed[i] |= torch.from_numpy(region_in_image((512, 512), c))
    assert not (changed & ~allowed).any()


def test_node_errors(photo, models):
    img = fd.image("astronaut")
    image = as_tensor(img)
    faces, _, _ = node(photo, "NullFaceDetectFaces")(models, image, "error")
    crops, info = node(photo, "NullFaceCropFaces")(image, faces, 64, 1.0)
    none = {r: False for r in ("eyes", "brows", "nose", "mouth", "skin", "face")}
    with pytest.raises(ValueError, match="tick at least one"):
        node(photo, "NullFaceFaceRegionMask")(info, 0, 0.0, **none)
    with pytest.raises(ValueError, match="anonymized crops"):
        node(photo, "NullFacePasteFaces")(image, info, crops[:1] if len(info) > 1 else torch.cat([crops, crops]))
    blank = torch.full((1, 64, 64, 3), 0.5)
    with pytest.raises(Exception, match="no face"):
        node(photo, "NullFaceDetectFaces")(models, blank, "error")
    empty, n, _ = node(photo, "NullFaceDetectFaces")(models, blank, "pass")
    assert n == 0
    with pytest.raises(ValueError, match="no faces"):
        node(photo, "NullFaceCropFaces")(blank, empty, 64, 1.0)
