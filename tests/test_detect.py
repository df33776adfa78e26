"""Face detection on real photos with the real dlib detector; insightface's missing-file errors."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from nullface.faces.detect import (DetectedFace, DlibDetector, InsightFaceDetector, find_scrfd_folder, kps_from_68,
                             make_detector, select_faces, split_ignored)
from nullface.errors import InputError, ModelFileError
from tests import faces_data as fd


def test_all_six_faces_of_the_group_photo(t1_image):
    faces = fd.faces("t1")
    assert len(faces) == 6
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:
        assert f.backend == "dlib" and f.bbox.dtype == np.float32 and f.kps.shape == (5, 2)
        x1, y1, x2, y2 = f.bbox
        assert 0 <= x1 < x2 <= t1_image.shape[1] and 0 <= y1 < y2 <= t1_image.shape[0]
        lm = f.landmarks68
        assert lm.shape == (68, 2) and lm.dtype == np.float32
        # dlib's box runs from the brows to the chin: every landmark inside it, with a little slack,
        # and the eyes, nose and mouth well inside
        pad = 0.2 * (x2 - x1)
        assert np.all((lm[:, 0] > x1 - pad) & (lm[:, 0] < x2 + pad) & (lm[:, 1] > y1 - pad) & (lm[:, 1] < y2 + pad))
        assert np.all((f.kps[:, 0] > x1) & (f.kps[:, 0] < x2) & (f.kps[:, 1] > y1) & (f.kps[:, 1] < y2))
        assert f.kps[0, 0] < f.kps[1, 0] and f.kps[3, 0] < f.kps[4, 0]       # image-left first
        assert f.kps[0, 1] < f.kps[2, 1] < f.kps[3, 1]                        # eyes above nose above mouth


def test_five_points_come_from_the_68():
    f = fd.faces("t1")[0]
    lm = f.landmarks68
    np.testing.assert_allclose(f.kps[0], lm[36:42].mean(0), atol=1e-4)
    np.testing.assert_allclose(f.kps[1], lm[42:48].mean(0), atol=1e-4)
    np.testing.assert_array_equal(f.kps[2:], lm[[30, 48, 54]])
    mirrored = lm.copy()
    mirrored[:, 0] = 2000 - mirrored[:, 0]               # a mirrored fit: both pairs swap together
    k = kps_from_68(mirrored)
    assert k[0, 0] < k[1, 0] and k[3, 0] < k[4, 0]
    np.testing.assert_allclose(k[0], mirrored[42:48].mean(0), atol=1e-4)


def test_astronaut_has_one_face():
    faces = fd.faces("astronaut")
    x1, y1, x2, y2 = faces[0].bbox
    assert 150 < x1 < 200 and 60 < y1 < 100 and 70 < x2 - x1 < 120        # her face is the largest
    # dlib's default (margin 0) favours recall: the mission patch on her suit scores about 0.1
    assert all(f.score < 0.3 for f in faces[1:])
    strict = DlibDetector(score_threshold=0.3).detect(fd.image("astronaut"))
    kept, left = split_ignored(strict)                   # the patch is left alone, and listed
    assert len(kept) == 1 and np.allclose(kept[0].bbox, faces[0].bbox)
    assert len(left) == len(faces) - 1 and all(f.ignored.startswith("below score_threshold=0.3") for f in left)
    assert faces[0].score > 1.0


def test_min_size_and_max_faces_mark_faces_ignored_never_drop_them():
    faces = fd.faces("t1")
    cut = 100
    marked = DlibDetector(min_size=cut).detect(fd.image("t1"))
    expected = [f for f in faces if f.size >= cut]
    assert 0 < len(expected) < len(faces) and len(marked) == len(faces)             # nothing dropped
    assert [f.size >= cut for f in marked] == [not f.ignored for f in marked]
    assert all(f.ignored.startswith("smaller than min_face_size") for f in marked if f.size < cut)
    assert all(f.ignored for f in DlibDetector(min_size=5000).detect(fd.image("t1")))
    sel = select_faces(faces, max_faces=2)
    assert [f.ignored is None for f in sel] == [True, True, False, False, False, False]
    assert [f.area for f in sel[:2]] == [faces[0].area, faces[1].area]
    assert select_faces(list(reversed(faces)))[0].area == faces[0].area                # sorted again
    low = min(f.score for f in faces)
    assert len(split_ignored(select_faces(faces, score_threshold=low + 1e-3))[0]) == 5
    # max_faces counts the faces left after the other filters; an earlier reason is kept
    sel = select_faces(select_faces(faces, min_size=cut), max_faces=1)
    assert sum(not f.ignored for f in sel) == 1 and sel[0].ignored is None
    assert all(f.ignored.startswith("smaller") for f in sel if f.size < cut)
    assert "reason" in sel[-1].to_dict() and "reason" not in sel[0].to_dict()


def test_no_face_and_bad_images():
    det = fd.detector()
    assert det.detect(np.full((200, 300, 3), 128, np.uint8)) == []
    assert det.detect(np.zeros((16, 16, 3), np.uint8)) == []
    with pytest.raises(InputError, match="HxWx3 uint8"):
        det.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(InputError, match="empty"):
        det.detect(np.zeros((0, 10, 3), np.uint8))


def test_auto_backend_falls_back_to_dlib_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="nullface"):
        det = make_detector("auto", model_dir=tmp_path)
    assert det.name == "dlib" and isinstance(det, DlibDetector)
    assert "auto chose dlib" in caplog.text and "face detection backend: dlib" in caplog.text
    assert make_detector("auto").name == "dlib"
    assert make_detector("dlib", min_size=40, max_faces=2).max_faces == 2
    with pytest.raises(InputError, match="yolo"):
        make_detector("yolo")


class FakeSCRFD:
    """insightface's SCRFD interface: ``prepare(det_thresh=)``, then ``detect`` returns only boxes scoring >= it."""

    taskname = "detection"
    SCORES = (0.95, 0.70, 0.30)

    def prepare(self, ctx_id, input_size, det_thresh):
        self.det_thresh = det_thresh

    def detect(self, bgr, input_size, max_num):
        rows = [(10 + 60 * i, 10, 50 + 60 * i, 60 - 5 * i, s) for i, s in enumerate(self.SCORES) if s >= self.det_thresh]
        boxes = np.array(rows, np.float32).reshape(-1, 5)
        kps = np.stack([np.full((5, 2), 30 + 60 * i, np.float32) for i in range(len(rows))]) if rows else None
        return boxes, kps


def test_a_raised_score_threshold_lists_the_faces_it_leaves_instead_of_dropping_them(tmp_path, monkeypatch):
    import insightface.model_zoo as zoo
    (tmp_path / "det_10g.onnx").write_bytes(b"stand-in")
    monkeypatch.setattr(zoo, "get_model", lambda *a, **k: FakeSCRFD())
    image = np.zeros((80, 200, 3), np.uint8)
    default = InsightFaceDetector(tmp_path).detect(image)
    assert [f.score for f in default] == pytest.approx([0.95, 0.70]) and not any(f.ignored for f in default)
    strict = InsightFaceDetector(tmp_path, score_threshold=0.9).detect(image)
    assert [f.score for f in strict] == pytest.approx([0.95, 0.70])             # the 0.70 face is still found ...
    assert strict[0].ignored is None and strict[1].ignored == "below score_threshold=0.9"   # ... and listed
    lenient = InsightFaceDetector(tmp_path, score_threshold=0.2).detect(image)  # below SCRFD's own 0.5: all found
    assert len(lenient) == 3 and not any(f.ignored for f in lenient)
    from nullface.privacy.photo import anonymize_photo
    res = anonymize_photo(image, InsightFaceDetector(tmp_path, score_threshold=0.9), lambda im, cs: [255 - c.image for c in cs])
    assert res.found == 1 and [f.score for f in res.ignored] == pytest.approx([0.70])
    assert res.to_dict()["ignored_faces"][0]["reason"] == "below score_threshold=0.9"


def test_missing_scrfd_file_is_named_with_where_to_get_it(tmp_path):
    for call in (lambda: InsightFaceDetector(tmp_path), lambda: make_detector("insightface", model_dir=tmp_path)):
        with pytest.raises(ModelFileError) as err:
            call()
        msg = str(err.value)
        assert "det_10g.onnx" in msg and str(tmp_path) in msg
        assert "GitHub releases" in msg and "non-commercial" in msg and "buffalo_l" in msg
    with pytest.raises(ModelFileError, match="det_10g.onnx"):
        make_detector("insightface")
    assert not any(tmp_path.iterdir()), "nothing may be downloaded into the folder"


def test_a_corrupt_scrfd_file_is_a_model_error_not_a_download(tmp_path):
    folder = tmp_path / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    (folder / "det_10g.onnx").write_bytes(b"not an onnx model")
    assert find_scrfd_folder(tmp_path) == folder and find_scrfd_folder(folder) == folder
    assert find_scrfd_folder(tmp_path / "nowhere") is None
    with pytest.raises(ModelFileError, match="det_10g.onnx|could not be loaded|not a face detector"):
        make_detector("auto", model_dir=tmp_path)          # auto takes SCRFD when the file is there
    assert sorted(p.name for p in folder.iterdir()) == ["det_10g.onnx"]


def test_detected_face_helpers():
    f = DetectedFace(np.array([10, 20, 50, 100], np.float32), 0.9, np.zeros((5, 2), np.float32))
    assert f.size == 40 and f.area == 3200 and f.landmarks68 is None
    assert f.to_dict() == {"bbox": [10.0, 20.0, 50.0, 100.0], "score": 0.9, "backend": "dlib"}
