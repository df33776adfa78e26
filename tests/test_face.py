"""One face type from detection to report: the crop, the outcome, the audit and the report carry the detected face."""
from __future__ import annotations

import dataclasses

import numpy as np

from nullface.faces import crop, detect, face
from nullface.privacy import audit, photo
from tests import faces_data as fd
from tests.faces_data import FixedDetector


def test_the_detected_face_is_the_object_every_later_stage_carries():
    faces = fd.faces("t1")
    assert all(type(f) is face.Face for f in faces) and detect.DetectedFace is face.Face
    seen = []

    def spy(image, crops):
        seen.extend(c.face for c in crops)                     # the crop references the face, not a copy of it
        return [255 - c.image for c in crops]

    res = photo.anonymize_photo(fd.image("t1"), FixedDetector(faces), spy, photo.PhotoOptions(max_faces=2))
    kept = [f for f in faces if not f.ignored][:2]
    assert all(any(s is k for s in seen) for k in kept)
    assert [o.face for o in res.faces] == kept and all(o.face is k for o, k in zip(res.faces, kept))
    assert all(type(g) is face.Face and g.ignored for g in res.ignored) and len(res.ignored) == 4
    # the report's fields come from the face: unchanged format
    d = res.to_dict()
    assert list(d["faces"][0]) == ["index", "bbox", "score", "status", "policy", "error", "audit"]
    assert d["faces"][0]["audit"] == "not audited"                  # a plain function has no audit
    assert d["faces"][0]["bbox"] == kept[0].box_list() and d["faces"][0]["score"] == round(kept[0].score, 4)
    assert list(d["ignored_faces"][0]) == ["bbox", "score", "backend", "reason"]


def test_derived_faces_are_faces_too():
    f = fd.faces("astronaut")[0]
    c = crop.crop_face(fd.image("astronaut"), f, 256)
    inside = c.face_in_crop()                                  # the face in crop coordinates: a Face, same detection
    assert type(inside) is face.Face and inside.score == f.score and inside.backend == f.backend
    np.testing.assert_allclose(inside.kps, c.kps, atol=1e-4)
    np.testing.assert_allclose(inside.landmarks68, c.landmarks68, atol=1e-4)
    five = dataclasses.replace(f, landmarks=f.landmarks[:5])   # dlib's 5-point fit: landmarks, but not the 68
    assert five.landmarks68 is None and f.landmarks68 is f.landmarks
    fa = audit.FaceAudit(f, ())
    assert fa.face is f and fa.bbox == tuple(float(v) for v in f.bbox) and not fa.passed
    assert audit.faces_per_image([f], 1) == [[f]]
