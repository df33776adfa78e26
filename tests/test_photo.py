"""Whole photos with fake anonymizers: batching, exactness outside faces, failure and no-face policies."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from nullface.faces.crop import crop_face, region_in_image
from nullface.faces.detect import DetectedFace, DlibDetector
from nullface.errors import FaceFailedError, InputError, NoFaceError
from nullface.privacy.photo import PhotoOptions, anonymize_photo, as_rgb, detect_batch
from nullface.privacy.policy import apply_failure, no_face, obscure
from nullface.faces.regions import parse_regions
from tests import faces_data as fd
from tests.faces_data import FixedDetector, failing, identity, invert



def t1_detector():
    return FixedDetector(fd.faces("t1"))


def astro_detector():
    return FixedDetector(fd.faces("astronaut")[:1])


def allowed_region(image, faces, options=PhotoOptions()):
    return np.logical_or.reduce([region_in_image(image.shape, crop_face(image, f, options.crop_size, options.zoom))
                                 for f in faces])


def test_identity_round_trip_is_exact_and_batched():
    calls = []

    def spy(image, crops):
        calls.append(len(crops))
        return identity(image, crops)

    res = anonymize_photo(fd.image("t1"), t1_detector(), spy, PhotoOptions(batch=8))
    assert res.found == 6 and res.anonymized == 6 and res.failed == 0
    assert np.array_equal(res.image, fd.image("t1"))
    assert sum(calls) == 6 and len(calls) < 6 and max(calls) > 1      # several faces per call
    assert res.counts == {"faces_found": 6, "anonymized": 6, "failed": 0, "policies": {}, "ignored": 0}


def test_a_changing_anonymizer_touches_only_face_regions():
    img = fd.image("t1")
    res = anonymize_photo(img, t1_detector(), invert)
    changed = np.any(res.image != img, -1)
    assert changed.sum() > 20000
    assert not np.any(changed & ~allowed_region(img, fd.faces("t1"))), "a pixel outside every face changed"
    for f in fd.faces("t1"):
        x, y = f.kps[2].astype(int)
        assert changed[y, x]


def test_crops_carry_the_kept_regions_as_zeros():
    seen = []

    def look(image, crops):
        seen.extend(crops)
        return invert(image, crops)

    anonymize_photo(fd.image("astronaut"), astro_detector(), look, PhotoOptions(keep=("eyes", "mouth")))
    c = seen[0]
    assert c.mask.shape == (512, 512) and c.mask.dtype == np.float32 and 0 < c.mask.mean() < 1
    for x, y in c.kps[[0, 1, 3, 4]]:
        assert c.mask[int(y), int(x)] == 0
    x, y = c.kps[2]
    assert c.mask[int(y), int(x)] == 1
    seen.clear()
    anonymize_photo(fd.image("astronaut"), astro_detector(), look)
    assert seen[0].mask is None                 # PhotoOptions().keep = None: an anonymizer of no method, whole face
    seen.clear()
    look.keep = ("eyes", "mouth")               # a method's anonymizer carries its settings' KEEP (NullFace's here)
    anonymize_photo(fd.image("astronaut"), astro_detector(), look)
    assert np.array_equal(seen[0].mask, c.mask)
    seen.clear()
    anonymize_photo(fd.image("astronaut"), astro_detector(), look, PhotoOptions(keep=parse_regions("none")))
    assert seen[0].mask is None                                   # nothing kept: the whole crop


def test_external_mask_option():
    img = fd.image("astronaut")
    ext = np.zeros(img.shape[:2], np.float32)
    ext[:, :220] = 1                                              # keep the left half of her face
    seen = []

    def look(image, crops):
        seen.extend(crops)
        return invert(image, crops)

    anonymize_photo(img, astro_detector(), look, PhotoOptions(keep=(), external_mask=ext))
    m, k = seen[0].mask, seen[0].kps
    assert m[int(k[0, 1]), int(k[0, 0])] == 0 and m[int(k[1, 1]), int(k[1, 0])] == 1
    with pytest.raises(InputError, match="external mask"):
        anonymize_photo(img, astro_detector(), invert, PhotoOptions(external_mask=ext[:10]))
    with pytest.raises(InputError, match="external_mask_means"):
        PhotoOptions(external_mask_means="maybe").validate()


def test_overlapping_faces_run_in_rounds_largest_on_top():
    face = fd.faces("astronaut")[0]
    other = DetectedFace(face.bbox + 30, face.score, face.kps + 30, face.landmarks68 + 30, "dlib")
    calls = []

    def count(image, crops):
        calls.append(len(crops))
        return invert(image, crops)

    res = anonymize_photo(fd.image("astronaut"), FixedDetector([face, other]), count, PhotoOptions(batch=8))
    assert calls == [1, 1] and res.anonymized == 2              # overlapping: never in the same round


def test_failure_policy_error_names_image_and_face():
    with pytest.raises(FaceFailedError, match=r"face 0 of portrait.png .*out of memory"):
        anonymize_photo(fd.image("astronaut"), astro_detector(), failing, name="portrait.png")

    def explode(image, crops):
        raise RuntimeError("CUDA error")

    with pytest.raises(FaceFailedError, match="CUDA error"):
        anonymize_photo(fd.image("astronaut"), astro_detector(), explode)
    with pytest.raises(FaceFailedError, match="expected uint8"):
        anonymize_photo(fd.image("astronaut"), astro_detector(), lambda im, cs: [c.image[:10] for c in cs])
    with pytest.raises(FaceFailedError, match="returned 0 results"):
        anonymize_photo(fd.image("astronaut"), astro_detector(), lambda im, cs: [])


@pytest.mark.parametrize("policy", ["blur", "pixelate"])
def test_blur_and_pixelate_hide_the_face_inside_its_region_only(policy):
    img = fd.image("astronaut")
    face = fd.faces("astronaut")[0]
    res = anonymize_photo(img, astro_detector(), failing, PhotoOptions(on_failure=policy))
    assert res.failed == 1 and res.anonymized == 0 and res.faces[0].policy == policy
    assert "out of memory" in res.faces[0].error and res.counts["policies"] == {policy: 1}
    region = allowed_region(img, [face])
    changed = np.any(res.image != img, -1)
    assert not np.any(changed & ~region)
    x1, y1, x2, y2 = face.bbox.astype(int)
    before, after = img[y1:y2, x1:x2].astype(float), res.image[y1:y2, x1:x2].astype(float)
    # the detail (local contrast) of the face is gone
    detail = lambda a: np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert detail(after) < 0.5 * detail(before)
    assert np.abs(after - before).mean() > 8


def test_keep_policy_warns_loudly_and_reports(caplog):
    img = fd.image("astronaut")
    with caplog.at_level(logging.WARNING, logger="nullface"):
        res = anonymize_photo(img, astro_detector(), failing, PhotoOptions(on_failure="keep"))
    assert "KEPT UNCHANGED" in caplog.text and res.failed == 1 and res.faces[0].policy == "keep"
    assert np.array_equal(res.image, img)


def test_one_face_failing_does_not_stop_the_others():
    half = lambda image, crops: [255 - crops[0].image] + [RuntimeError("x")] * (len(crops) - 1)  # noqa: E731
    res = anonymize_photo(fd.image("t1"), t1_detector(), half, PhotoOptions(on_failure="pixelate", batch=8))
    assert res.found == 6 and res.anonymized >= 1 and res.failed == 6 - res.anonymized
    assert [f.status for f in res.faces].count("failed") == res.failed


def test_no_face_policies():
    blank = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="blank.png"):
        anonymize_photo(blank, fd.detector(), invert, name="blank.png")
    res = anonymize_photo(blank, fd.detector(), invert, PhotoOptions(on_no_face="pass"))
    assert res.found == 0 and res.image is blank
    with pytest.raises(NoFaceError):
        no_face("x", "error")


def test_min_size_score_and_max_faces_list_ignored_faces_with_box_and_reason():
    img = fd.image("t1")
    sizes = sorted(f.size for f in fd.faces("t1"))
    res = anonymize_photo(img, t1_detector(), invert, PhotoOptions(min_face_size=sizes[-1]))
    assert res.found == sum(s >= sizes[-1] for s in sizes) and len(res.ignored) == 6 - res.found
    assert res.ignored[0].ignored.startswith("smaller than min_face_size") and len(res.ignored[0].bbox) == 4
    assert res.to_dict()["ignored_faces"][0]["reason"] == res.ignored[0].ignored          # the report lists it
    assert res.counts["ignored"] == 6 - res.found
    res = anonymize_photo(img, t1_detector(), invert, PhotoOptions(score_threshold=1.0))
    expected = sum(f.score >= 1.0 for f in fd.faces("t1"))
    assert 0 < res.found == expected < 6 and len(res.ignored) == 6 - expected
    # max_faces has one meaning everywhere: the largest are anonymized, the others are ignored (listed)
    res = anonymize_photo(img, t1_detector(), invert, PhotoOptions(max_faces=2))
    assert res.anonymized == 2 and res.failed == 0 and len(res.ignored) == 4
    assert all(i.ignored.startswith("beyond max_faces=2") for i in res.ignored)
    assert min(f.area for f in fd.faces("t1")[:2]) >= max(i.area for i in res.ignored) - 1


def test_every_detected_face_is_anonymized_failed_or_listed_as_ignored():
    """A face left out by the filters is never dropped unreported, whichever layer filters it."""
    img = fd.image("t1")
    faces = fd.faces("t1")
    cut = sorted(f.size for f in faces)[3]
    detector = DlibDetector(min_size=cut)                        # filtering configured on the detector ...
    res = anonymize_photo(img, detector, invert, PhotoOptions(max_faces=2))   # ... and on the options
    assert res.found + len(res.ignored) == len(faces) == 6
    reasons = [i.ignored for i in res.ignored]
    assert sum(r.startswith("smaller than min_face_size") for r in reasons) == sum(f.size < cut for f in faces)
    assert any(r.startswith("beyond max_faces") for r in reasons)
    # all faces ignored: no "no face" error, the image comes back unchanged with every face listed
    res = anonymize_photo(img, t1_detector(), invert, PhotoOptions(min_face_size=10_000))
    assert res.found == 0 and len(res.ignored) == 6 and res.image is img
    found = detect_batch([img], t1_detector(), options=PhotoOptions(min_face_size=cut))
    assert found.count() + found.ignored_count() == 6 and found.ignored_count() == sum(f.size < cut for f in faces)


def test_error_policy_counts_every_failed_face_of_the_file():
    half = lambda image, crops: [255 - crops[0].image] + [RuntimeError("x")] * (len(crops) - 1)  # noqa: E731
    with pytest.raises(FaceFailedError, match="5 face") as err:
        anonymize_photo(fd.image("t1"), t1_detector(), half, PhotoOptions(batch=8))
    assert err.value.faces_failed == 5 and err.value.faces_found == 6
    assert err.value.result.image is None and [f.status for f in err.value.result.faces].count("failed") == 5


def test_image_layouts():
    img = fd.image("astronaut")
    gray = np.asarray(Image.fromarray(img).convert("L"))
    res = anonymize_photo(gray, astro_detector(), invert)
    assert res.image.shape == gray.shape and res.image.dtype == np.uint8       # gray stays gray
    outside = ~allowed_region(img, fd.faces("astronaut")[:1])
    assert np.array_equal(res.image[outside], gray[outside])
    res = anonymize_photo(gray[..., None], astro_detector(), invert)
    assert res.image.shape == gray.shape + (1,)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 200, np.uint8)], -1)
    res = anonymize_photo(rgba, astro_detector(), invert, mode="RGBA")
    assert res.image.shape == rgba.shape and np.all(res.image[..., 3] == 200)
    tiny = np.full((16, 16, 3), 90, np.uint8)
    assert anonymize_photo(tiny, fd.detector(), invert, PhotoOptions(on_no_face="pass")).found == 0
    with pytest.raises(InputError, match="empty"):
        anonymize_photo(np.zeros((0, 0, 3), np.uint8), fd.detector(), invert)
    with pytest.raises(InputError, match="uint8"):
        as_rgb(img.astype(np.float32))
    with pytest.raises(InputError, match="shape"):
        as_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="crop_size"):
        PhotoOptions(crop_size=100).validate()
    with pytest.raises(InputError, match="policy"):
        PhotoOptions(on_failure="ignore").validate()


def test_detect_batch_names_every_image_without_a_face():
    blank = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match=r"image 1, image 2 \(of 3\)"):
        detect_batch([fd.image("astronaut"), blank, blank], fd.detector())
    found = detect_batch([fd.image("astronaut"), blank], fd.detector(), on_no_face="pass")
    assert [len(f) > 0 for f in found.faces] == [True, False] and found.count() >= 1
    assert found.sizes == [(512, 512), (200, 300)] and found.flat()[0][:2] == (0, 0)


def test_policy_helpers_touch_only_the_region():
    img = fd.image("astronaut")
    region = np.zeros(img.shape[:2], bool)
    region[100:200, 150:300] = True
    for how in ("blur", "pixelate"):
        out = obscure(img, region, how, 90)
        assert np.array_equal(out[~region], img[~region]) and not np.array_equal(out[region], img[region])
    assert apply_failure(img, region, 90, "keep", "face 0", "x") is img
    with pytest.raises(InputError):
        obscure(img, region, "swirl", 90)


def test_a_mask_that_keeps_the_whole_face_is_a_failure_not_a_success():
    """keep=face (or an external mask that spares the face) would anonymize nothing of the face: the face
    gets the failure policy instead of being reported as anonymized."""
    calls = []

    def spy(image, crops):
        calls.append(len(crops))
        return invert(image, crops)
    with pytest.raises(FaceFailedError, match="keeps the whole face"):
        anonymize_photo(fd.image("astronaut"), astro_detector(), spy, PhotoOptions(keep=("face",)))
    res = anonymize_photo(fd.image("astronaut"), astro_detector(), spy, PhotoOptions(keep=("face",),
                                                                                      on_failure="pixelate"))
    assert res.failed == 1 and res.anonymized == 0 and calls == []
    assert anonymize_photo(fd.image("astronaut"), astro_detector(), spy,
                           PhotoOptions(keep=("eyes", "mouth"))).anonymized == 1


def test_a_mask_that_leaves_too_little_of_the_face_fails_the_face_in_every_method():
    """--keep face --grow -2 changes about 2 % of each face: below MIN_FACE_SHARE, every face fails closed
    (the photo path is the same for NullFace, Reverse Personalization and inpainting)."""
    from nullface.privacy.policy import MIN_FACE_SHARE
    img = fd.image("astronaut")
    thin = PhotoOptions(crop_size=128, keep=("face",), grow=-1)
    with pytest.raises(FaceFailedError, match=rf"changes \d+\.\d% of the face, less than the {MIN_FACE_SHARE:.0%}"):
        anonymize_photo(img, astro_detector(), invert, thin)
    res = anonymize_photo(img, astro_detector(), invert, PhotoOptions(crop_size=128, keep=("face",), grow=-1,
                                                                     on_failure="blur"))
    assert res.failed == 1 and res.anonymized == 0 and "of the face" in res.faces[0].error
    # a user mask that keeps the face: refused as well; the default keep (eyes, mouth) changes most of the face
    keep_face = np.zeros(img.shape[:2], np.float32)
    x1, y1, x2, y2 = (int(v) for v in fd.faces("astronaut")[0].bbox)
    keep_face[max(0, y1 - 40):y2 + 40, max(0, x1 - 40):x2 + 40] = 1
    with pytest.raises(FaceFailedError, match="keeps the whole face visible"):
        anonymize_photo(img, astro_detector(), invert, PhotoOptions(crop_size=128, keep=()), keep_mask=keep_face)
    assert anonymize_photo(img, astro_detector(), invert, PhotoOptions(crop_size=128)).anonymized == 1
