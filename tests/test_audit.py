"""Re-identification audit on real photos with dlib's real weights, and the retry loop with fakes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from nullface.privacy import audit as A
from nullface.faces.detect import DlibDetector
from nullface.errors import InputError
from nullface.methods.nullface.settings import NullFaceSettings


def _detect(image: np.ndarray) -> list:
    return DlibDetector().detect(image)


def _face_at(faces, x, y):
    """The detected face whose box contains (x, y)."""
    for f in faces:
        x1, y1, x2, y2 = f.bbox
        if x1 <= x <= x2 and y1 <= y <= y2:
            return f
    raise AssertionError(f"no face at {(x, y)} among {[f.bbox.tolist() for f in faces]}")


@pytest.fixture(scope="session")
def dlib_rec():
    return A.DlibRecognizer()


@pytest.fixture(scope="session")
def astro_face(astronaut):
    return _face_at(_detect(astronaut), 220, 120)   # Eileen Collins' face (not the suit's patch)


@pytest.fixture(scope="session")
def t1_faces(t1_image):
    faces = _detect(t1_image)
    assert len(faces) >= 4
    return faces


def _blur_box(image, bbox, radius, margin=0.2):
    x1, y1, x2, y2 = bbox
    w, h = x2 - x1, y2 - y1
    box = [int(max(0, x1 - margin * w)), int(max(0, y1 - margin * h)),
           int(min(image.shape[1], x2 + margin * w)), int(min(image.shape[0], y2 + margin * h))]
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    out = image.copy()
    out[box[1]:box[3], box[0]:box[2]] = blurred[box[1]:box[3], box[0]:box[2]]
    return out


def _crop_around(image, bbox, size=256, scale=2.0):
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    half = scale * max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 2
    box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
    return np.asarray(Image.fromarray(image).crop(box).resize((size, size), Image.BICUBIC))


# ----------------------------------------------------------------------------------------------- dlib audits

def test_same_face_fails_the_audit(astronaut, astro_face, dlib_rec):
    fa = A.audit_face(astronaut, astronaut.copy(), astro_face, [dlib_rec])
    assert not fa.passed
    r = fa.result("dlib")
    assert r.score < 0.05 and r.threshold == 0.6 and not r.passed
    assert fa.landmarks_source == "refit"


def test_two_different_people_pass(t1_image, t1_faces, dlib_rec):
    a, b = t1_faces[0], t1_faces[1]
    crop_a, crop_b = _crop_around(t1_image, a.bbox), _crop_around(t1_image, b.bbox)
    face = _detect(crop_a)[0]
    fa = A.audit_face(crop_a, crop_b, face, [dlib_rec])
    assert fa.passed, fa.summary()
    assert fa.result("dlib").score >= 0.6
    # sanity: the same crop against itself is re-identified
    assert not A.audit_face(crop_a, crop_a, face, [dlib_rec]).passed


def test_heavily_blurred_face_passes(astronaut, astro_face, dlib_rec):
    blurred = _blur_box(astronaut, astro_face.bbox, radius=14)
    fa = A.audit_face(astronaut, blurred, astro_face, [dlib_rec])
    assert fa.passed, fa.summary()
    assert fa.result("dlib").score > 0.6
    json.dumps(fa.to_dict())


def test_image_audit_counts_faces_and_reports(astronaut, astro_face, dlib_rec):
    blurred = _blur_box(astronaut, astro_face.bbox, radius=14)
    ia = A.audit_image(astronaut, blurred, [astro_face], [dlib_rec], index=3)
    assert ia.passed and ia.passed_count == 1
    unchanged = A.audit_image(astronaut, astronaut, [astro_face], [dlib_rec], index=4)
    assert not unchanged.passed and unchanged.passed_count == 0
    empty = A.audit_image(astronaut, astronaut, [], [dlib_rec], index=5)
    assert empty.passed and empty.passed_count == 0
    text = A.format_report([ia, unchanged, empty])
    assert "image 3: 1/1" in text and "FAIL" in text and "nothing to re-identify" in text
    assert "AUDIT FAILED" in text


def test_size_mismatch_is_an_input_error(astronaut, astro_face, dlib_rec):
    with pytest.raises(InputError, match="differ"):
        A.audit_face(astronaut, astronaut[:256], astro_face, [dlib_rec])


# --------------------------------------------------------------------------------------- fail closed, ArcFace

class _FakeArcFace:
    """Embeds the pixels of an aligned area around the keypoints into a seeded random unit vector."""

    def __init__(self):
        self.calls = []

    def embed(self, image, kps):
        self.calls.append(np.asarray(kps).copy())
        x1, y1 = np.floor(kps.min(0)).astype(int)
        x2, y2 = np.ceil(kps.max(0)).astype(int)
        patch = image[y1:y2, x1:x2] // 64            # coarse: tiny landmark jitter does not matter
        seed = int(hashlib.sha256(patch.tobytes()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
        return v / np.linalg.norm(v)


def test_arcface_recognizer_with_fake(astronaut, astro_face):
    fake = _FakeArcFace()
    rec = A.ArcFaceRecognizer(fake)
    assert rec.metric == "similarity" and rec.threshold == A.ARCFACE_SAME_PERSON_SIMILARITY
    same = A.audit_face(astronaut, astronaut.copy(), astro_face, [rec], landmarker=lambda im, box: astro_face.landmarks68)
    assert not same.passed and same.result("arcface").score == pytest.approx(1.0, abs=1e-5)
    other = A.audit_face(astronaut, _blur_box(astronaut, astro_face.bbox, 14), astro_face, [rec])
    # without a dlib recognizer there is no landmarker: the original keypoints are used
    assert other.landmarks_source == "original"
    assert other.passed and abs(other.result("arcface").score) < 0.35
    np.testing.assert_allclose(fake.calls[-1], astro_face.kps)


def test_anonymized_keypoints_come_from_refitted_landmarks(astronaut, astro_face, dlib_rec):
    fake = _FakeArcFace()
    A.audit_face(astronaut, astronaut, astro_face, [A.ArcFaceRecognizer(fake), dlib_rec])
    orig_kps, anon_kps = fake.calls
    assert np.abs(orig_kps - anon_kps).max() < 2.0   # same image, same box: the refit finds the same points


class _Broken:
    name, metric, threshold = "broken", "distance", 0.6

    def describe(self, image, face):
        raise RuntimeError("no descriptor")

    def score(self, a, b):
        return 1.0


class _Nan(_Broken):
    name = "nan"

    def describe(self, image, face):
        return np.zeros(3)

    def score(self, a, b):
        return float("nan")


def test_fail_closed(astronaut, astro_face, dlib_rec):
    blurred = _blur_box(astronaut, astro_face.bbox, 14)
    fa = A.audit_face(astronaut, blurred, astro_face, [dlib_rec, _Broken(), _Nan()])
    assert fa.result("dlib").passed
    assert not fa.result("broken").passed and "no descriptor" in fa.result("broken").error
    assert not fa.result("nan").passed and math.isnan(fa.result("nan").score)
    assert not fa.passed
    assert fa.to_dict()["results"][2]["score"] is None
    assert not A.audit_face(astronaut, blurred, astro_face, []).passed   # no recognizer: nothing proven


def test_landmark_refit_falls_back_to_original(astronaut, astro_face):
    def broken(image, box):
        raise RuntimeError("boom")
    geo, source = A.refit_geometry(astronaut, astro_face, broken)
    assert source == "original"
    np.testing.assert_array_equal(geo.landmarks, astro_face.landmarks68)


def test_kps_from_68_order(astro_face):
    kps = A.kps_from_68(astro_face.landmarks68)
    assert kps.shape == (5, 2)
    assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0]    # image-left first
    assert kps[0, 1] < kps[2, 1] < kps[3, 1]                  # eyes above nose above mouth


# ------------------------------------------------------------------------------------------------ retry loop

@dataclasses.dataclass(frozen=True)
class _Verdict:
    passed: bool

    def to_dict(self):
        return {"passed": self.passed}


def test_retry_stops_at_max_tries_and_reports_failure():
    seen = []

    def attempt(s):
        seen.append(s)
        return f"image-{s.seed}"

    out = A.anonymize_with_audit(attempt, lambda r: _Verdict(False), NullFaceSettings(seed=7), max_tries=4)
    assert not out.passed
    assert len(seen) == 4 and len(out.tries) == 4
    assert out.result == "image-10"
    assert [t.index for t in out.tries] == [1, 2, 3, 4]
    assert all(not t.passed for t in out.tries)
    d = out.to_dict()
    json.dumps(d)
    assert d["passed"] is False and d["tries"][3]["settings"]["seed"] == 10


def test_retry_stops_early_on_success():
    calls = []

    def attempt(s):
        calls.append(s.seed)
        return s.seed

    out = A.anonymize_with_audit(attempt, lambda r: _Verdict(r >= 2), NullFaceSettings(seed=1), max_tries=5)
    assert out.passed and calls == [1, 2] and out.result == 2 and len(out.tries) == 2
    assert out.settings.seed == 2


def test_escalation_schedule_is_applied():
    base = NullFaceSettings(seed=0, lambda_id=1.0, lambda_cfg=10.0)
    out = A.anonymize_with_audit(lambda s: s, lambda r: _Verdict(False), base, max_tries=6)
    got = [(t.settings.seed, t.settings.lambda_id, t.settings.lambda_cfg) for t in out.tries]
    assert got == [(0, 1.0, 10.0), (1, 1.25, 12.5), (2, 1.5, 15.0), (3, 1.75, 17.5), (4, 2.0, 20.0), (5, 2.0, 20.0)]
    assert all(t.settings.t_skip == base.t_skip and t.settings.steps == base.steps for t in out.tries)
    # values above the cap are never lowered
    high = A.DEFAULT_ESCALATION(NullFaceSettings(lambda_cfg=25.0, lambda_id=3.0), 1)
    assert high.lambda_cfg == 25.0 and high.lambda_id == 3.0


def test_escalation_on_any_dataclass_and_custom_schedule():
    @dataclasses.dataclass(frozen=True)
    class S:
        seed: int = 0
        lambda_id: float = 1.0
        lambda_cfg: float = 10.0
        other: str = "x"

    sched = A.Escalation(seed_step=100, lambda_id_step=0.5, lambda_cfg_step=5.0)
    out = A.anonymize_with_audit(lambda s: s, lambda r: _Verdict(r.seed >= 200), S(), max_tries=5, escalate=sched)
    assert out.passed and [t.settings.seed for t in out.tries] == [0, 100, 200]
    assert out.settings == S(seed=200, lambda_id=2.0, lambda_cfg=20.0)

    def custom(s, k):
        return dataclasses.replace(s, other=f"try{k}")

    out = A.anonymize_with_audit(lambda s: s, lambda r: _Verdict(False), S(), max_tries=3, escalate=custom)
    assert [t.settings.other for t in out.tries] == ["x", "try1", "try2"]


def test_audit_exception_counts_as_failure_and_bad_max_tries():
    def audit(r):
        raise RuntimeError("recognizer crashed")

    out = A.anonymize_with_audit(lambda s: 1, audit, NullFaceSettings(), max_tries=2)
    assert not out.passed and len(out.tries) == 2 and "crashed" in out.tries[0].error
    json.dumps(out.to_dict())
    with pytest.raises(InputError):
        A.anonymize_with_audit(lambda s: 1, audit, NullFaceSettings(), max_tries=0)


def test_retry_with_real_audit(astronaut, astro_face, dlib_rec):
    """End to end with dlib: the 'anonymizer' blurs harder as lambda_cfg grows."""
    def attempt(s):
        return _blur_box(astronaut, astro_face.bbox, radius=s.lambda_cfg - 8.0)

    out = A.anonymize_with_audit(attempt, lambda img: A.audit_face(astronaut, img, astro_face, [dlib_rec]),
                                 NullFaceSettings(lambda_cfg=10.0), max_tries=6)
    assert out.passed
    assert 1 < len(out.tries) <= 6
    assert not out.tries[0].passed


def test_identical_images_score_zero_through_the_cli_audit(t1_image, t1_faces, astronaut, astro_face, dlib_rec):
    """The CLI's and the photo node's audit (crop_audit) measures both crops with the same geometry, so
    an unchanged face scores a distance of about 0 (it measured 0.03-0.26 when the anonymized side's
    landmarks were re-fitted in the rotated crop's hull while the original kept the detected ones)."""
    from nullface.faces.crop import crop_face
    from nullface.methods.anonymizer import crop_audit
    fake = _FakeArcFace()
    audit = crop_audit([dlib_rec, A.ArcFaceRecognizer(fake)])
    for image, face in [(astronaut, astro_face)] + [(t1_image, f) for f in t1_faces]:
        crop = crop_face(image, face, 512)
        fa = audit(crop.image, crop.image.copy(), crop)
        assert fa.result("dlib").score < 1e-6 and not fa.passed, fa.summary()
        np.testing.assert_array_equal(fake.calls[-2], fake.calls[-1])        # ArcFace: the same keypoints
    fa = A.audit_face(astronaut, astronaut.copy(), astro_face, [dlib_rec])
    assert fa.result("dlib").score < 1e-6


def test_geometry_falls_back_to_the_detected_landmarks_on_both_sides(astronaut, astro_face):
    calls = []

    def refit_once(image, box):              # works on the original, fails on the anonymized image
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return astro_face.landmarks68 + 1
    a, b, source = A.paired_geometry(astronaut, astronaut, astro_face, refit_once)
    assert source == "original" and np.array_equal(a.landmarks, b.landmarks)
