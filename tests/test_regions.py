"""Region masks from real dlib landmarks (t1's six faces, the astronaut, Tom Hanks) and the 5-point fallback."""
from __future__ import annotations

import numpy as np
import pytest

from nullface.faces.crop import crop_face
from nullface.errors import InputError
from nullface.faces.regions import (REGIONS, anonymize_mask, combine_external, crop_anonymize_mask, external_to_crop,
                              image_region_mask, parse_regions, region_mask)
from tests import faces_data as fd

GROUPS = {"eyes": range(36, 48), "brows": range(17, 27), "nose": range(27, 36), "mouth": range(48, 68)}


def all_faces():
    return list(fd.faces("t1")) + list(fd.faces("astronaut"))[:1] + list(fd.faces("hanks"))[:1]


def value_at(mask, pt):
    x, y = int(pt[0]), int(pt[1])
    return mask[y, x] if 0 <= x < mask.shape[1] and 0 <= y < mask.shape[0] else None


def test_each_region_covers_its_own_landmarks_and_none_of_the_others():
    faces = all_faces()
    assert len(faces) == 8
    for f in faces:
        lm = f.landmarks68
        shape = (int(lm[:, 1].max()) + 40, int(lm[:, 0].max()) + 40)
        for name, own in GROUPS.items():
            m = region_mask(lm, shape, name)
            assert all(value_at(m, lm[i]) == 1 for i in own), name
            for other, idx in GROUPS.items():
                if other != name:
                    assert not any(value_at(m, lm[i]) for i in idx), (name, other)
        face = region_mask(lm, shape, "face")
        assert all(value_at(face, p) in (1, None) for p in lm)
        assert value_at(face, lm[27] - (lm[8] - lm[27]) * 0.35) == 1          # the forehead is face
        skin = region_mask(lm, shape, "skin")
        assert all(value_at(skin, lm[i]) == 1 for i in GROUPS["nose"])          # the nose is skin
        assert not any(value_at(skin, lm[i]) for g in ("eyes", "brows", "mouth") for i in GROUPS[g])
        assert 0 < skin.sum() < face.sum()


def test_neighbours_asked_for_together_merge():
    f = fd.faces("astronaut")[0]
    lm = f.landmarks68
    both = region_mask(lm, (512, 512), "eyes,brows")
    union = np.maximum(region_mask(lm, (512, 512), "eyes"), region_mask(lm, (512, 512), "brows"))
    assert both.sum() >= union.sum()                  # nothing lost between eyes and brows
    assert not any(both[int(y), int(x)] for x, y in lm[27:36])


def test_five_point_fallback():
    for f in all_faces():
        k = f.kps
        shape = (int(f.landmarks68[:, 1].max()) + 40, int(f.landmarks68[:, 0].max()) + 40)
        own = {"eyes": [0, 1], "nose": [2], "mouth": [3, 4]}
        for name, idx in own.items():
            m = region_mask(k, shape, name)
            assert all(value_at(m, k[i]) == 1 for i in idx), name
            assert not any(value_at(m, k[i]) for i in range(5) if i not in idx), name
        brows = region_mask(k, shape, "brows")
        assert not any(value_at(brows, p) for p in k)
        face5, face68 = region_mask(k, shape, "face"), region_mask(f.landmarks68, shape, "face")
        iou = np.minimum(face5, face68).sum() / np.maximum(face5, face68).sum()
        assert iou > 0.65, iou                        # an ellipse close to the landmark outline
        assert all(value_at(face5, p) == 1 for p in k)


def test_grow_and_feather():
    lm = fd.faces("t1")[0].landmarks68
    shape = (900, 1300)
    base = region_mask(lm, shape, "mouth")
    bigger, smaller = region_mask(lm, shape, "mouth", grow=4), region_mask(lm, shape, "mouth", grow=-2)
    assert bigger.sum() > base.sum() > smaller.sum() > 0
    assert np.all(bigger >= base) and np.all(smaller <= base)
    assert set(np.unique(base)) == {0.0, 1.0}                                 # hard by default
    soft = region_mask(lm, shape, "mouth", feather=6)
    edge = (soft > 0) & (soft < 1)
    assert edge.any() and soft.dtype == np.float32
    assert abs(soft.sum() - base.sum()) < 0.15 * base.sum()                  # centred on the edge
    ys, xs = np.nonzero(base)
    assert np.all(soft[ys, xs].mean() > 0.7)


def test_anonymize_mask_keeps_the_named_regions():
    lm = fd.faces("astronaut")[0].landmarks68
    m = anonymize_mask(lm, (512, 512), "eyes,mouth")
    assert m.dtype == np.float32 and m.shape == (512, 512)
    assert m[int(lm[62, 1]), int(lm[62, 0])] == 0 and m[int(lm[40, 1]), int(lm[40, 0])] == 0
    assert m[int(lm[33, 1]), int(lm[33, 0])] == 1 and m[5, 5] == 1
    assert anonymize_mask(lm, (512, 512), "") is None
    ext = np.zeros((512, 512), np.float32)
    ext[:100] = 1
    m2 = anonymize_mask(lm, (512, 512), "", keep_mask=ext)
    assert m2[50, 50] == 0 and m2[300, 300] == 1


def test_external_masks_in_crop_coordinates():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    crop = crop_face(img, face, 256)
    ext = np.zeros(img.shape[:2], np.float32)
    ext[: int(face.kps[2, 1])] = 1                                          # keep everything above the nose
    in_crop = external_to_crop(ext, crop)
    assert in_crop.shape == (256, 256)
    kc = crop.kps
    assert in_crop[int(kc[0, 1]), int(kc[0, 0])] == 1 and in_crop[int(kc[3, 1]), int(kc[3, 0])] == 0
    keep = crop_anonymize_mask(crop, (), external=ext, external_means="keep")
    only = crop_anonymize_mask(crop, (), external=ext, external_means="anonymize")
    assert keep[int(kc[0, 1]), int(kc[0, 0])] == 0 and keep[int(kc[3, 1]), int(kc[3, 0])] == 1
    assert only[int(kc[0, 1]), int(kc[0, 0])] == 1 and only[int(kc[3, 1]), int(kc[3, 0])] == 0
    mouth = crop_anonymize_mask(crop, "mouth", external=ext)
    assert mouth[int(kc[3, 1]), int(kc[3, 0])] == 0 and mouth[int(kc[0, 1]), int(kc[0, 0])] == 0
    assert crop_anonymize_mask(crop, ()) is None
    with pytest.raises(InputError, match="external mask"):
        external_to_crop(np.zeros((10, 10), np.float32), crop)
    with pytest.raises(InputError, match="keep"):
        combine_external(None, ext, "ignore")
    assert np.array_equal(combine_external(None, ext, "keep"), 1 - ext)


def test_image_masks_hold_every_face():
    img = fd.image("t1")
    m = image_region_mask(img.shape[:2], fd.faces("t1"), "mouth")
    assert m.shape == img.shape[:2]
    for f in fd.faces("t1"):
        assert m[int(f.landmarks68[62, 1]), int(f.landmarks68[62, 0])] == 1
    assert m.mean() < 0.05


def test_region_names():
    assert set(REGIONS) == {"eyes", "brows", "nose", "mouth", "skin", "face"}
    assert parse_regions("Eyes, lips,, eyebrows") == ("eyes", "mouth", "brows")
    assert parse_regions(["eyes", "eyes"]) == ("eyes",) and parse_regions(None) == () and parse_regions("") == ()
    with pytest.raises(InputError, match="ears"):
        parse_regions("ears")
    with pytest.raises(InputError, match="68 or 5"):
        region_mask(np.zeros((3, 2)), (10, 10), "eyes")
    assert not region_mask(fd.faces("t1")[0].kps, (10, 10), "eyes").any()   # a face outside the canvas
