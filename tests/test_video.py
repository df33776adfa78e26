"""Videos: tracking, one identity and seed per track, fail closed in time, no metadata, audio kept.

Clips are built from the real photos (tests/video_clips.py); a stand-in anonymizer paints each track's
face in a colour of its own, so every check is exact and fast. The real engine runs in test_video_engine.py.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from nullface.errors import FaceFailedError, NoFaceError  # noqa: E402
from nullface.faces.detect import DlibDetector  # noqa: E402
from nullface.privacy.photo import PhotoOptions  # noqa: E402
from nullface.privacy.video import VideoOptions, anonymize_frames  # noqa: E402
from nullface.privacy.video_io import VideoWriter, container_tags, iter_frames, probe_video  # noqa: E402
from tests.video_clips import PLANTED, STREAM_PLANTED, audio_packets, map_box, pan_zoom, slide, write_clip  # noqa: E402

PALETTE = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20], [230, 20, 230], [20, 230, 230],
                    [250, 140, 0], [140, 0, 250]], np.uint8)


class TrackPainter:
    """Stand-in anonymizer: each track's face becomes its palette colour; records what each crop carried."""

    def __init__(self):
        self.calls: list[tuple[int, bytes | None]] = []

    def __call__(self, image, crops):
        out = []
        for c in crops:
            assert c.seed_offset is not None, "a video crop carries its track's seed"
            emb = None if c.embedding is None else np.asarray(c.embedding).tobytes()
            self.calls.append((c.seed_offset, emb))
            out.append(np.broadcast_to(PALETTE[c.seed_offset % len(PALETTE)], c.image.shape).copy())
        return out


def thumb_embed(frame, face):
    """A cheap stand-in identity: the face box as an 8x8 gray thumbnail."""
    from PIL import Image
    x1, y1, x2, y2 = (int(v) for v in face.bbox)
    g = np.asarray(Image.fromarray(frame[max(0, y1):y2, max(0, x1):x2]).convert("L").resize((8, 8)), np.float32)
    return g.reshape(-1) - g.mean() + 1e-3


class Missing:
    """The dlib detector, made to miss every face in some frames (counted in calls)."""

    def __init__(self, detector, miss: set[int]):
        self.detector, self.miss, self.n, self.name = detector, miss, 0, "dlib-with-misses"

    def detect(self, image):
        i, self.n = self.n, self.n + 1
        return [] if i in self.miss else self.detector.detect(image)


def track_at(frame: np.ndarray, box) -> int | None:
    """The palette index painted at the centre of ``box`` (None: the face is not painted there)."""
    x1, y1, x2, y2 = box
    cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
    patch = frame[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).astype(int).mean(0)
    d = np.abs(PALETTE.astype(int) - patch).max(1)
    return int(d.argmin()) if d.min() < 24 else None


class Cached:
    """The real detector, run once per distinct frame (the tests run the same clips several times)."""

    def __init__(self, detector):
        self.detector, self.name, self.seen = detector, detector.name, {}

    def detect(self, image):
        import hashlib
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key not in self.seen:
            self.seen[key] = self.detector.detect(image)
        return list(self.seen[key])


@pytest.fixture(scope="module")
def dlib_detector():
    return Cached(DlibDetector())


@pytest.fixture(scope="module")
def t1_clip(t1_image, dlib_detector):
    frames, mats = pan_zoom(t1_image, 6, (640, 442), (0.0, 0.0, 1.0), (0.035, 0.04, 0.925))
    truth = [f.bbox for f in dlib_detector.detector.detect(t1_image)]
    assert len(truth) == 6
    return frames, [[map_box(b, m) for b in truth] for m in mats]


def test_six_faces_under_pan_and_zoom_keep_one_track_identity_and_seed_each(t1_clip, dlib_detector):
    frames, boxes = t1_clip
    painter = TrackPainter()
    out, state = anonymize_frames(frames, dlib_detector, painter, PhotoOptions(crop_size=64), embed=thumb_embed)
    assert len(out) == len(frames)
    owner = {}
    for i, (frame, truth) in enumerate(zip(out, boxes)):
        for person, box in enumerate(truth):
            if box[0] < 0 or box[1] < 0 or box[2] > frame.shape[1] or box[3] > frame.shape[0]:
                continue                                                  # out of the picture
            t = track_at(frame, box)
            assert t is not None, f"person {person} shows their own face in frame {i}"
            assert owner.setdefault(person, t) == t, f"person {person} changed track in frame {i}"
    assert len(set(owner.values())) == 6                                  # one track per person
    report = state.report()
    assert report["tracks_found"] == 6 and report["anonymized"] == 6
    assert all(t["frames_count"] == len(frames) and t["status"] == "anonymized" for t in report["tracks"])
    for track in range(6):                                                # one identity and seed per track
        embs = {e for s, e in painter.calls if s == track}
        assert len(embs) == 1 and None not in embs
    assert len({e for _, e in painter.calls}) == 6


class ManyPainter(TrackPainter):
    """The painter as a method whose faces may come from several frames in one call (``many_images``)."""

    many_images = True

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def __call__(self, images, crops):
        self.sizes.append(len(crops))
        return super().__call__(images, crops)


def test_faces_of_several_frames_share_calls_and_give_the_frame_by_frame_result(t1_clip, dlib_detector):
    frames, _ = t1_clip
    opts = PhotoOptions(crop_size=64, batch=8)
    one, many = ManyPainter(), ManyPainter()
    alone, _ = anonymize_frames(frames, dlib_detector, one, opts, VideoOptions(frames_per_call=1), embed=thumb_embed)
    together, _ = anonymize_frames(frames, dlib_detector, many, opts, VideoOptions(frames_per_call=4),
                                   embed=thumb_embed)
    assert all(np.array_equal(a, b) for a, b in zip(alone, together))
    assert sorted(one.calls) == sorted(many.calls)                # the same faces, each with its track's seed
    assert max(one.sizes) <= 6 < max(many.sizes) <= 8              # 6 faces a frame; calls now span frames
    assert len(many.sizes) < len(one.sizes)


def test_forced_misses_are_anonymized_from_the_interpolated_track(astronaut, dlib_detector):
    n = 10
    frames, mats = slide(astronaut, n, (400, 300), list(np.linspace(0.35, 0.65, n)), scale=0.55)
    truth = map_box(dlib_detector.detect(astronaut)[0].bbox, mats[0])
    painter = TrackPainter()
    det = Missing(dlib_detector, {3, 4, 5, 9})
    out, state = anonymize_frames(frames, det, painter, PhotoOptions(crop_size=64, score_threshold=0.3),
                                  VideoOptions(max_gap=4, pad=2))
    for i, (frame, m) in enumerate(zip(out, mats)):
        box = truth + np.array([m[0, 2] - mats[0][0, 2], 0, m[0, 2] - mats[0][0, 2], 0])
        assert track_at(frame, box) == 0, f"frame {i}: the face is not anonymized"
    (track,) = [t for t in state.report()["tracks"] if t["track"] == 0]
    sources = [f["source"] for f in track["frames"]]
    assert sources[3:6] == ["interpolated"] * 3 and sources[9] == "padded"
    assert state.report()["ignored"] >= 1                    # the mission patch, reported as ignored


def test_a_face_that_leaves_and_comes_back_keeps_its_track(astronaut, dlib_detector):
    from nullface.privacy.audit import DlibRecognizer
    rec = DlibRecognizer()

    def embed(frame, face):
        return rec.describe(frame, face)

    xs = [0.5, 0.5, 0.5, 1.6, 1.6, 1.6, 1.6, 1.6, 0.5, 0.5]       # gone for five frames
    frames, _ = slide(astronaut, len(xs), (400, 300), xs, scale=0.55)
    painter = TrackPainter()
    opts = PhotoOptions(crop_size=64, score_threshold=0.3, on_no_face="pass")
    out, state = anonymize_frames(frames, dlib_detector, painter, opts, VideoOptions(max_gap=2, pad=1, relink=0.9),
                                  embed=embed)
    rep = state.report()
    assert rep["tracks_found"] == 1, rep["tracks"]
    assert [f["frame"] for f in rep["tracks"][0]["frames"]] == [0, 1, 2, 3, 7, 8, 9]
    assert len({e for _, e in painter.calls}) == 1


def test_chunks_continue_tracks_and_identity(t1_clip, dlib_detector):
    frames, boxes = t1_clip
    whole = TrackPainter()
    out1, _ = anonymize_frames(frames, dlib_detector, whole, PhotoOptions(crop_size=64), embed=thumb_embed)
    parts = TrackPainter()
    a, state = anonymize_frames(frames[:3], dlib_detector, parts, PhotoOptions(crop_size=64), embed=thumb_embed,
                                final=False)
    b, state = anonymize_frames(frames[3:], dlib_detector, parts, PhotoOptions(crop_size=64), embed=thumb_embed,
                                state=state)
    assert state.report()["tracks_found"] == 6 and state.frame == len(frames)
    assert {s for s, _ in parts.calls} == set(range(6))
    for x, y, truth in zip(out1, a + b, boxes):     # the same new face for each person, chunked or not
        assert [track_at(x, box) for box in truth] == [track_at(y, box) for box in truth]
    assert np.array_equal(out1[0], a[0])            # far from the cut, identical


def test_failure_policy_error_fails_the_video_and_blur_goes_on(astronaut, dlib_detector):
    frames, _ = slide(astronaut, 3, (400, 300), [0.5] * 3, scale=0.55)

    def broken(image, crops):
        return [RuntimeError("no GPU memory") for _ in crops]

    with pytest.raises(FaceFailedError, match="frame 0"):
        anonymize_frames(frames, dlib_detector, broken, PhotoOptions(crop_size=64, score_threshold=0.3))
    out, state = anonymize_frames(frames, dlib_detector, broken,
                                  PhotoOptions(crop_size=64, score_threshold=0.3, on_failure="blur"))
    t = state.report()["tracks"][0]
    assert t["status"] == "failed" and {f["policy"] for f in t["frames"]} == {"blur"}
    assert not np.array_equal(out[1], frames[1])
    blank = [np.full((120, 160, 3), 80, np.uint8)] * 2
    with pytest.raises(NoFaceError):
        anonymize_frames(blank, dlib_detector, broken, PhotoOptions(crop_size=64))


def test_video_io_keeps_frames_rate_and_audio_and_drops_every_tag(tmp_path):
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    src = tmp_path / "phone.mp4"
    write_clip(src, frames, Fraction(30000, 1001))
    assert container_tags(src)["container"]["location"] == PLANTED["location"]          # planted
    info = probe_video(src)
    got = list(iter_frames(src))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, info.fps, audio_from=src) as w:
        for f in got:
            w.write(f)
    back = probe_video(out)
    assert (back.width, back.height, back.fps) == (64, 48, Fraction(30000, 1001))
    assert len(list(iter_frames(out))) == 12
    assert audio_packets(out) == audio_packets(src) and audio_packets(src)              # bit for bit
    text = repr(container_tags(out)) + out.read_bytes().decode("latin-1")
    for value in list(PLANTED.values()) + list(STREAM_PLANTED.values()) + ["Lavf"]:
        assert value not in text, value
    silent = tmp_path / "silent.mkv"
    with VideoWriter(silent, info.fps) as w:
        w.write(got[0])
    assert audio_packets(silent) == [] and not probe_video(silent).has_audio
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "never.mp4", info.fps) as w:
            w.write(got[0])
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "phone.mp4", "silent.mkv"]
