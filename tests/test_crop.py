"""Aligned crops (FFHQ framing) and pasting back: exact outside the faces, borders, tiny and huge faces."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from nullface.faces.crop import crop_face, crop_matrix, paste_face, paste_faces, region_in_image, region_weights
from nullface.faces.detect import DetectedFace
from nullface.errors import InputError
from tests import faces_data as fd


def moved(face: DetectedFace, scale: float = 1.0, shift=(0.0, 0.0)) -> DetectedFace:
    """The same face in a resized / shifted image."""
    s = np.asarray(shift, np.float32)
    lm = None if face.landmarks68 is None else face.landmarks68 * scale + s
    return DetectedFace(face.bbox * scale + np.tile(s, 2), face.score, face.kps * scale + s, lm, face.backend)


def test_ffhq_framing():
    face = fd.faces("astronaut")[0]
    crop = crop_face(fd.image("astronaut"), face, 512)
    assert crop.image.shape == (512, 512, 3) and crop.image.dtype == np.uint8
    k = crop.kps
    eyes, mouth = k[:2].mean(0), k[3:].mean(0)
    assert abs(k[0, 1] - k[1, 1]) < 3                                  # upright
    assert 0.20 < np.linalg.norm(k[1] - k[0]) / 512 < 0.27              # FFHQ: eyes ~1/4 of the width apart
    assert 0.42 < eyes[1] / 512 < 0.50 and abs(eyes[0] / 512 - 0.5) < 0.04
    assert 0.65 < mouth[1] / 512 < 0.80
    np.testing.assert_allclose(crop.to_image(crop.to_crop(face.kps)), face.kps, atol=1e-3)
    wide = crop_face(fd.image("astronaut"), face, 512, zoom=2.0)
    assert np.linalg.norm(wide.kps[1] - wide.kps[0]) == pytest.approx(np.linalg.norm(k[1] - k[0]) / 2, rel=1e-3)
    assert crop.image_shape == (512, 512)


def test_framing_follows_the_head_when_the_photo_is_turned():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    angle = 25.0
    turned = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.BICUBIC, center=(256, 256)))
    a = np.deg2rad(angle)                                # PIL turns counter-clockwise on screen
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    kps = (face.kps - 256) @ rot.T + 256
    tface = DetectedFace(face.bbox, face.score, kps.astype(np.float32), None, "dlib")
    a_crop, b_crop = crop_face(img, face, 256), crop_face(turned, tface, 256)
    centre = slice(64, 192)
    diff = np.abs(a_crop.image[centre, centre].astype(int) - b_crop.image[centre, centre].astype(int)).mean()
    assert diff < 8, diff


def test_faces_at_the_border_are_mirrored_not_black():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    cut = np.ascontiguousarray(img[110:, 215:])                        # the face runs off the top-left corner
    f = moved(face, shift=(-215, -110))
    crop = crop_face(cut, f)
    yy, xx = np.mgrid[0:512, 0:512] + 0.5
    pts = crop.to_image(np.stack([xx.ravel(), yy.ravel()], 1))
    beyond = ((pts[:, 0] < 0) | (pts[:, 1] < 0)).reshape(512, 512)
    assert beyond.mean() > 0.2
    assert (crop.image[beyond].max(-1) < 8).mean() < 0.01               # no black holes for the model
    far = beyond & (np.minimum(*np.meshgrid(np.arange(512), np.arange(512))) < 20)
    sharp = np.abs(np.diff(crop.image.astype(int), axis=1)).mean(-1)
    assert sharp[far[:, 1:]].mean() < sharp[~beyond[:, 1:]].mean()      # the mirrored part fades to a blur
    out = paste_face(cut, crop, 255 - crop.image)
    changed = np.any(out != cut, -1)
    assert changed.any() and not np.any(changed & ~region_in_image(cut.shape, crop))


def test_tiny_and_huge_faces():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    small = np.asarray(Image.fromarray(img).resize((64, 64), Image.LANCZOS))          # an 11-pixel face
    c = crop_face(small, moved(face, 0.125))
    assert c.image.shape == (512, 512, 3) and c.image.std() > 10
    out = paste_face(small, c, 255 - c.image)
    assert np.any(out != small) and not np.any(np.any(out != small, -1) & ~region_in_image(small.shape, c))
    huge = np.asarray(Image.fromarray(img).resize((4096, 4096), Image.BICUBIC))      # a 720-pixel face
    t0 = time.perf_counter()
    big = crop_face(huge, moved(face, 8.0))
    r = paste_face(huge, big, 255 - big.image)
    assert time.perf_counter() - t0 < 10
    ref = crop_face(img, face)
    assert np.abs(big.image.astype(int) - ref.image.astype(int)).mean() < 12   # the same face, not aliased
    changed = np.any(r != huge, -1)
    (x0, y0, x1, y1), weight = region_weights(big, huge.shape)
    assert not changed[:y0].any() and not changed[y1:].any() and not changed[:, :x0].any() and not changed[:, x1:].any()
    assert not np.any(changed[y0:y1, x0:x1] & (weight <= 0))


def test_identity_round_trip_is_exact():
    img = fd.image("t1")
    pairs = [(c, c.image.copy()) for c in (crop_face(img, f) for f in fd.faces("t1"))]
    out = paste_faces(img, pairs)
    assert np.array_equal(out, img)


def test_a_changing_result_changes_only_the_face_regions():
    img = fd.image("t1")
    crops = [crop_face(img, f) for f in fd.faces("t1")]
    out = paste_faces(img, [(c, 255 - c.image) for c in crops])
    changed = np.any(out != img, -1)
    allowed = np.logical_or.reduce([region_in_image(img.shape, c) for c in crops])
    assert not np.any(changed & ~allowed), "a pixel outside every face region changed"
    assert np.array_equal(out[~allowed], img[~allowed])
    for c in crops:
        (x0, y0, x1, y1), w = region_weights(c, img.shape)
        for x, y in c.face.kps.astype(int):                          # eyes, nose, mouth fully replaced
            assert w[y - y0, x - x0] == pytest.approx(1.0)
            assert abs(int(out[y, x].mean()) - (255 - int(img[y, x].mean()))) < 40
        full = w >= 1.0
        inverted = 255 - img[y0:y1, x0:x1][full].astype(int)
        assert np.abs(out[y0:y1, x0:x1][full].astype(int) - inverted).mean() < 12


def test_overlapping_faces_are_pasted_in_order():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    a, b = crop_face(img, face), crop_face(img, moved(face, shift=(40, 25)))
    black, white = np.zeros_like(a.image), np.full_like(b.image, 255)
    out = paste_faces(img, [(a, black), (b, white)])
    (bx0, by0, bx1, by1), wb = region_weights(b, img.shape)
    top = np.zeros(img.shape[:2], bool)
    top[by0:by1, bx0:bx1] = wb >= 1.0
    wa = np.zeros(img.shape[:2], np.float32)
    (ax0, ay0, ax1, ay1), w = region_weights(a, img.shape)
    wa[ay0:ay1, ax0:ax1] = w
    assert np.all(out[top] == 255)                                     # the later face is on top
    only_a = (wa >= 1.0) & ~region_in_image(img.shape, b)
    assert only_a.any() and np.all(out[only_a] == 0)


def test_region_weights_are_zero_outside_and_at_the_crop_border():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    c = crop_face(img, face)
    r = c.region
    assert r.dtype == np.float32 and r.shape == (512, 512) and r.min() == 0 and r.max() == 1
    assert not r[0].any() and not r[-1].any() and not r[:, 0].any() and not r[:, -1].any()
    lm = c.landmarks68
    assert all(r[int(y), int(x)] == 1.0 for x, y in lm if 0 <= x < 512 and 0 <= y < 512)
    (x0, y0, x1, y1), w = region_weights(c, img.shape)
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512 and w.shape == (y1 - y0, x1 - x0)
    assert 0 <= w.min() and w.max() <= 1


def test_bad_inputs():
    img, face = fd.image("astronaut"), fd.faces("astronaut")[0]
    c = crop_face(img, face, 128)
    with pytest.raises(InputError):
        paste_face(img, c, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError):
        paste_face(img, c, c.image.astype(np.float32))
    with pytest.raises(InputError):
        crop_face(img[..., 0], face)
    with pytest.raises(InputError, match="zoom"):
        crop_matrix(face.kps, zoom=0)
    flat = DetectedFace(np.array([10, 10, 60, 70], np.float32), 1.0, np.full((5, 2), 30, np.float32))
    m = crop_matrix(flat.kps, 256, bbox=flat.bbox)                      # degenerate points: the box frames it
    assert np.isfinite(m).all()
    with pytest.raises(InputError, match="degenerate"):
        crop_matrix(flat.kps, 256)
