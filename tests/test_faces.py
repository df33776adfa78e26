"""Real photos with the real dlib detector: detection, crop/paste, region masks, failure policies."""
from __future__ import annotations

import numpy as np
import pytest

from nullface.crop import crop_face, paste_face, region_in_image
from nullface.detect import DetectedFace, DlibDetector, make_detector
from nullface.errors import FaceFailedError, InputError, ModelFileError, NoFaceError
from nullface.photo import PhotoOptions, anonymize_photo, detect_batch
from nullface.regions import REGIONS, anonymize_mask, parse_regions, region_mask


@pytest.fixture(scope="module")
def dlib_detector():
    return DlibDetector()


@pytest.fixture(scope="module")
def t1_faces(dlib_detector, t1_image):
    return dlib_detector.detect(t1_image)


def invert(image, crops):
    return [255 - c.image for c in crops]


def identity(image, crops):
    return [c.image.copy() for c in crops]


def test_all_six_faces_of_the_group_photo_are_found(t1_faces):
    assert len(t1_faces) == 6
    areas = [f.area for f in t1_faces]
    assert areas == sorted(areas, reverse=True)
    for f in t1_faces:
        x1, y1, x2, y2 = f.bbox
        lm = f.landmarks68
        assert lm.shape == (68, 2) and f.kps.shape == (5, 2)
        inside = (lm[:, 0] >= x1 - 0.15 * (x2 - x1)) & (lm[:, 0] <= x2 + 0.15 * (x2 - x1)) & \
                 (lm[:, 1] >= y1 - 0.15 * (y2 - y1)) & (lm[:, 1] <= y2 + 0.15 * (y2 - y1))
        assert inside.mean() > 0.9
        assert f.kps[0, 0] < f.kps[1, 0] and f.kps[3, 0] < f.kps[4, 0]     # image-left first


def test_astronaut_face_and_size_filter(dlib_detector, astronaut):
    faces = dlib_detector.detect(astronaut)
    assert faces and 150 < faces[0].bbox[0] < 200 and 60 < faces[0].bbox[1] < 100       # her face, the largest
    big_only = DlibDetector(min_size=95).detect(astronaut)
    assert all(f.size >= 95 for f in big_only) and len(big_only) < len(faces) + 1
    assert DlibDetector(min_size=5000).detect(astronaut) == []


def test_auto_backend_without_buffalo_is_dlib_and_missing_scrfd_is_named(tmp_path):
    assert make_detector("auto", model_dir=None).name == "dlib"
    with pytest.raises(ModelFileError, match="det_10g.onnx"):
        make_detector("insightface", model_dir=tmp_path)
    with pytest.raises(InputError):
        make_detector("yolo")


def test_identity_round_trip_returns_the_input_exactly(dlib_detector, t1_image):
    res = anonymize_photo(t1_image, dlib_detector, identity)
    assert res.found == 6 and res.anonymized == 6
    assert np.array_equal(res.image, t1_image)


def test_changing_anonymizer_touches_only_face_regions(dlib_detector, t1_image, t1_faces):
    res = anonymize_photo(t1_image, dlib_detector, invert)
    changed = np.any(res.image != t1_image, axis=-1)
    allowed = np.zeros(changed.shape, bool)
    for f in t1_faces:
        allowed |= region_in_image(t1_image.shape, crop_face(t1_image, f))
    assert changed.sum() > 5000
    assert not np.any(changed & ~allowed), "a pixel outside every face region changed"
    for f in t1_faces:                                    # each face's centre really changed
        cx, cy = f.kps[2].astype(int)
        assert changed[cy, cx]


def test_faces_at_borders_and_tiny_and_huge_faces(dlib_detector, astronaut):
    face = dlib_detector.detect(astronaut)[0]
    shifted = np.roll(astronaut, (-int(face.bbox[1]) + 5, -int(face.bbox[0]) + 5), axis=(0, 1))
    border = DetectedFace(face.bbox - np.array([face.bbox[0] - 5, face.bbox[1] - 5] * 2, np.float32), face.score,
                          face.kps - np.array([face.bbox[0] - 5, face.bbox[1] - 5], np.float32), None, "dlib")
    crop = crop_face(shifted, border)
    assert crop.image.shape == (512, 512, 3)
    assert crop.image[:40].std() > 1                       # edge-repeated, not a black hole
    out = paste_face(shifted, crop, 255 - crop.image)
    changed = np.any(out != shifted, -1)
    assert changed.any() and not np.any(changed & ~region_in_image(shifted.shape, crop))
    small = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(astronaut).resize((128, 128)))
    small_face = DetectedFace(face.bbox / 4, face.score, face.kps / 4, None, "dlib")
    assert crop_face(small, small_face).image.shape == (512, 512, 3)        # a 22-pixel face
    huge = np.repeat(np.repeat(astronaut, 6, 0), 6, 1)                      # a 540-pixel face
    huge_face = DetectedFace(face.bbox * 6, face.score, face.kps * 6, None, "dlib")
    c = crop_face(huge, huge_face)
    r = paste_face(huge, c, 255 - c.image)
    assert not np.any(np.any(r != huge, -1) & ~region_in_image(huge.shape, c))


def test_overlapping_faces_are_processed_in_rounds(astronaut):
    face = DlibDetector().detect(astronaut)[0]
    other = DetectedFace(face.bbox + 30, face.score, face.kps + 30, None, "dlib")

    class Two:
        name = "two"

        def detect(self, image):
            return [face, other]

    calls = []

    def count(image, crops):
        calls.append(len(crops))
        return invert(image, crops)

    res = anonymize_photo(astronaut, Two(), count, PhotoOptions(batch=8))
    assert calls == [1, 1] and res.anonymized == 2           # overlapping: never in the same round


def test_region_masks_cover_their_own_landmarks_only(t1_faces, astronaut):
    faces = list(t1_faces) + DlibDetector().detect(astronaut)[:1]
    groups = {"eyes": range(36, 48), "brows": range(17, 27), "nose": range(27, 36), "mouth": range(48, 68)}
    for f in faces:
        lm = f.landmarks68
        shape = (int(lm[:, 1].max()) + 60, int(lm[:, 0].max()) + 60)
        for name, idx in groups.items():
            m = region_mask(lm, shape, name)
            own = [m[int(round(lm[i, 1])), int(round(lm[i, 0]))] for i in idx]
            assert np.mean(own) >= 0.8, (name, np.mean(own))
            for other, oidx in groups.items():
                if other == name:
                    continue
                hits = [m[int(round(lm[i, 1])), int(round(lm[i, 0]))] for i in oidx]
                assert np.mean(hits) <= 0.2, (name, other, np.mean(hits))
        face = region_mask(lm, shape, "face")
        assert all(face[int(round(y)), int(round(x))] for x, y in lm[17:68])
        skin = region_mask(lm, shape, "skin")
        assert skin.sum() < face.sum() and not any(skin[int(round(lm[i, 1])), int(round(lm[i, 0]))]
                                                   for i in (37, 44, 62))


def test_region_options_and_five_point_fallback(t1_faces):
    lm = t1_faces[0].landmarks68
    shape = (900, 1300)
    base = region_mask(lm, shape, "eyes")
    assert region_mask(lm, shape, "eyes", grow=3).sum() > base.sum() > region_mask(lm, shape, "eyes", grow=-1).sum()
    soft = region_mask(lm, shape, "eyes", feather=4)
    assert ((soft > 0) & (soft < 1)).any()
    kps = t1_faces[0].kps
    five = region_mask(kps, shape, "eyes")
    assert all(five[int(y), int(x)] for x, y in kps[:2])
    m = anonymize_mask(lm, shape, "eyes,mouth")
    assert m[int(lm[62, 1]), int(lm[62, 0])] == 0 and m[int(lm[33, 1]), int(lm[33, 0])] == 1
    assert anonymize_mask(lm, shape, "") is None
    assert parse_regions("Eyes, lips") == ("eyes", "mouth")
    with pytest.raises(InputError, match="ears"):
        parse_regions("ears")
    assert set(REGIONS) == {"eyes", "brows", "nose", "mouth", "skin", "face"}


def test_kept_regions_reach_the_anonymizer_as_zeros(dlib_detector, astronaut):
    seen = []

    def look(image, crops):
        seen.extend(c.mask for c in crops)
        return invert(image, crops)

    anonymize_photo(astronaut, dlib_detector, look, PhotoOptions(keep=("eyes", "mouth")))
    m = seen[0]
    assert m is not None and m.shape == (512, 512) and 0 < m.mean() < 1
    assert (m == 0).sum() > 500


def failing(image, crops):
    return [RuntimeError("the model ran out of memory") for _ in crops]


def test_failure_policies(dlib_detector, astronaut):
    with pytest.raises(FaceFailedError, match=r"face \d of portrait.png"):
        anonymize_photo(astronaut, dlib_detector, failing, PhotoOptions(on_failure="error"), name="portrait.png")
    face = dlib_detector.detect(astronaut)[0]
    region = region_in_image(astronaut.shape, crop_face(astronaut, face))
    for policy in ("blur", "pixelate"):
        res = anonymize_photo(astronaut, dlib_detector, failing, PhotoOptions(on_failure=policy))
        assert res.failed == res.found and all(f.policy == policy for f in res.faces)
        changed = np.any(res.image != astronaut, -1)
        assert changed[region].mean() > 0.5                                   # the face is obscured
        assert not np.any(changed & ~np.logical_or.reduce(
            [region_in_image(astronaut.shape, crop_face(astronaut, f)) for f in dlib_detector.detect(astronaut)]))
        diff = np.abs(res.image.astype(int) - astronaut.astype(int))[region].mean()
        assert diff > 8
    res = anonymize_photo(astronaut, dlib_detector, failing, PhotoOptions(on_failure="keep"))
    assert res.failed == res.found and np.array_equal(res.image, astronaut)
    half = lambda image, crops: [255 - crops[0].image] + [RuntimeError("x")] * (len(crops) - 1)  # noqa: E731
    res = anonymize_photo(astronaut, dlib_detector, half, PhotoOptions(on_failure="pixelate"))
    assert res.anonymized == 1


def test_keep_policy_warns_loudly(dlib_detector, astronaut, caplog):
    with caplog.at_level("WARNING", logger="nullface"):
        anonymize_photo(astronaut, dlib_detector, failing, PhotoOptions(on_failure="keep"))
    assert "KEPT UNCHANGED" in caplog.text


def test_no_face_is_reported(dlib_detector):
    blank = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="blank.png"):
        anonymize_photo(blank, dlib_detector, invert, name="blank.png")
    res = anonymize_photo(blank, dlib_detector, invert, PhotoOptions(on_no_face="pass"))
    assert res.found == 0 and np.array_equal(res.image, blank)
def test_detect_batch_names_every_image_without_a_face(dlib_detector, astronaut):
    blank = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match=r"image 1, image 2 \(of 3\)"):
        detect_batch([astronaut, blank, blank], dlib_detector)
    found = detect_batch([astronaut, blank], dlib_detector, on_no_face="pass")
    assert [len(f) > 0 for f in found.faces] == [True, False] and found.count() >= 1


def test_grayscale_and_rgba_photos(dlib_detector, astronaut):
    gray = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(astronaut).convert("L"))
    res = anonymize_photo(gray, dlib_detector, invert)
    assert res.found >= 1 and res.image.shape[:2] == gray.shape
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 200, np.uint8)], -1)
    res = anonymize_photo(rgba, dlib_detector, invert)
    assert res.image.shape == rgba.shape and np.all(res.image[..., 3] == 200)
    with pytest.raises(InputError, match="empty"):
        anonymize_photo(np.zeros((0, 0, 3), np.uint8), dlib_detector, invert)
