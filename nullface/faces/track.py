"""Face tracks: the detections of consecutive frames linked into one track per person.

``FaceTracker`` is an online tracker in the ByteTrack/SORT family, kept small on purpose: each live
track predicts its box with a constant velocity, the frame's detections are assigned to the predictions
by the Hungarian algorithm (scipy) on 1 - IoU, with a centre-distance fallback for small or fast faces,
and a track that misses up to ``max_gap`` frames stays alive and is joined again. Faces are few and
large next to the objects such trackers are built for, so detections are never dropped by score here
(the detector's threshold decides what a face is; every detection starts or extends a track).

Why not the ``trackers`` package (Roboflow, Apache-2.0): it depends on ``supervision`` (matplotlib and
more) and on ``opencv-python``, which clashes with the ``opencv-python-headless`` many ComfyUI installs
carry; the matching it would give us is the 60 lines below. ``scipy`` is already installed with
scikit-image and insightface. Everything else a video needs (gaps filled, padding, smoothing, identity)
is decided per track in ``nullface.privacy.video``.

The tracker's state (``FaceTracker.tracks``) is plain data, so it can be kept between the chunks of one
long video (ComfyUI queues long videos in several runs) and dropped when a new video starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .detect import DetectedFace


@dataclass
class Observation:
    """A detection of a track's face in one frame."""

    frame: int
    face: DetectedFace


@dataclass
class Track:
    """One person: its detections in frame order, and the identity it keeps in every frame."""

    id: int
    observations: list[Observation] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))   # box change per frame
    identity: np.ndarray | None = None      # the recognizer's unit vector chosen for the track
    identity_frames: list[int] = field(default_factory=list)                           # frames it came from

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    def predict(self, frame: int) -> np.ndarray:
        """The box expected in ``frame`` (constant velocity from the last detection)."""
        return self.last.face.bbox.astype(np.float32) + self.velocity * (frame - self.last.frame)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` [N,4] with every box in ``b`` [M,4] -> [N,M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])      # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def match_cost(predicted: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Cost of giving each detection to each track: 1 - IoU, or for boxes that do not overlap, 1 plus
    their centre distance in units of the predicted face size (linked when under ``MAX_JUMP``)."""
    cost = 1.0 - iou(predicted, detected)
    p, d = np.asarray(predicted, np.float64), np.asarray(detected, np.float64)
    cp, cd = (p[:, :2] + p[:, 2:]) / 2, (d[:, :2] + d[:, 2:]) / 2
    size = np.maximum(np.minimum(p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]), 1.0)
    jump = np.linalg.norm(cp[:, None] - cd[None], axis=-1) / size[:, None]
    return np.where(cost >= 1.0, 1.0 + jump, cost)


MAX_JUMP = 0.6          # a detection whose centre is further than this x the face size is another face
MAX_COST = 1.0 + MAX_JUMP


class FaceTracker:
    """Online face tracker. ``update(frame, faces) -> [track id per face]``; tracks live ``max_gap`` missed frames."""

    def __init__(self, max_gap: int = 8, smoothing: float = 0.5):
        self.max_gap = int(max_gap)
        self.smoothing = float(smoothing)      # weight of the newest box change in the velocity estimate
        self.tracks: dict[int, Track] = {}
        self.next_id = 0
        self.last_frame = -1

    def alive(self, frame: int) -> list[Track]:
        """Tracks that may still be joined in ``frame``."""
        return [t for t in self.tracks.values() if frame - t.last.frame <= self.max_gap + 1]

    def update(self, frame: int, faces: list[DetectedFace]) -> list[int]:
        """Assign each face of ``frame`` (in increasing frame order) to a track; new faces start tracks."""
        from scipy.optimize import linear_sum_assignment
        if frame <= self.last_frame:
            raise ValueError(f"frame {frame} comes after frame {self.last_frame}: frames must be in order")
        self.last_frame = frame
        live = self.alive(frame)
        ids: list[int | None] = [None] * len(faces)
        if live and faces:
            cost = match_cost(np.stack([t.predict(frame) for t in live]), np.stack([f.bbox for f in faces]))
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] < MAX_COST:
                    ids[c] = live[r].id
        for i, f in enumerate(faces):
            if ids[i] is None:
                ids[i] = self.next_id
                self.tracks[self.next_id] = Track(self.next_id)
                self.next_id += 1
            t = self.tracks[ids[i]]
            if t.observations:
                step = (f.bbox.astype(np.float32) - t.last.face.bbox) / (frame - t.last.frame)
                t.velocity = (1 - self.smoothing) * t.velocity + self.smoothing * step
            t.observations.append(Observation(frame, f))
        return [int(i) for i in ids]

    def relink(self, track: Track, vector: np.ndarray, min_similarity: float, before: int) -> Track | None:
        """The ended track (last seen before frame ``before``) whose identity is most similar to ``vector``
        (cosine >= ``min_similarity``): a person who left the frame and came back."""
        best, best_sim = None, min_similarity
        for t in self.tracks.values():
            if t is track or t.identity is None or t.last.frame >= before:
                continue
            sim = float(np.dot(t.identity, vector))
            if sim >= best_sim:
                best, best_sim = t, sim
        return best

    def merge(self, into: Track, track: Track) -> None:
        """``track`` is ``into`` seen again: its detections continue ``into``."""
        into.observations.extend(track.observations)
        into.velocity = track.velocity
        del self.tracks[track.id]

    def forget(self, before: int, keep: int = 1) -> None:
        """Drop detections older than frame ``before`` (keeping each track's last ``keep``): a long video
        does not keep every box in memory."""
        for t in self.tracks.values():
            old = [o for o in t.observations[:-keep] if o.frame < before]
            if old:
                t.observations = t.observations[len(old):]


# ------------------------------------------------------------------------------------------------ per-frame faces
def _landmarks(face: DetectedFace) -> np.ndarray | None:
    return getattr(face, "landmarks", getattr(face, "landmarks68", None))


def blend_faces(a: DetectedFace, b: DetectedFace, t: float) -> DetectedFace:
    """The face between ``a`` (t = 0) and ``b`` (t = 1): box, five points and landmarks interpolated linearly
    (landmarks only when both have the same set), score the lower of the two."""
    lerp = lambda x, y: (np.asarray(x, np.float32) * (1 - t) + np.asarray(y, np.float32) * t).astype(np.float32)  # noqa: E731
    la, lb = _landmarks(a), _landmarks(b)
    lm = lerp(la, lb) if la is not None and lb is not None and la.shape == lb.shape else None
    return type(a)(lerp(a.bbox, b.bbox), min(float(a.score), float(b.score)), lerp(a.kps, b.kps), lm, a.backend)


def track_faces(track: Track, start: int, end: int, max_gap: int, pad: int, smooth: int,
                final: bool) -> dict[int, tuple[DetectedFace, str]]:
    """The track's face in each frame of ``start..end`` (inclusive) with how it was found.

    ``detected`` frames use the detection; a gap of at most ``max_gap`` frames between two detections is
    ``interpolated``; ``pad`` frames before a segment's first and after its last detection repeat that box
    (``padded``). At the end of a chunk that is not ``final`` a live track is held up to ``max_gap`` frames,
    since the next chunk may show it again. The five points and box of every frame are then averaged over
    ``smooth`` frames on either side, fewer near the ends of the track so that the window stays centred
    (a face moving steadily is not lagged behind); the crop follows the face without jitter. The 68
    landmarks move with the five points (shifted by their mean correction), so the kept regions and the
    paste region stay where the crop puts the face.
    """
    obs = sorted(track.observations, key=lambda o: o.frame)
    plan: dict[int, tuple[DetectedFace, str]] = {}
    rank = {"padded": 0, "interpolated": 1, "detected": 2}

    def put(frame: int, face: DetectedFace, how: str) -> None:
        if frame < max(start, 0) or frame > end:
            return
        if frame not in plan or rank[how] > rank[plan[frame][1]]:
            plan[frame] = (face, how)

    for k, o in enumerate(obs):
        put(o.frame, o.face, "detected")
        nxt = obs[k + 1] if k + 1 < len(obs) else None
        prev = obs[k - 1] if k > 0 else None
        if nxt is not None and nxt.frame - o.frame - 1 <= max_gap:
            for f in range(o.frame + 1, nxt.frame):
                put(f, blend_faces(o.face, nxt.face, (f - o.frame) / (nxt.frame - o.frame)), "interpolated")
        elif nxt is None and not final and o.frame + max_gap >= end:
            for f in range(o.frame + 1, min(end, o.frame + max_gap) + 1):
                put(f, o.face, "padded")
        else:
            for f in range(o.frame + 1, o.frame + pad + 1):
                put(f, o.face, "padded")
        if prev is None or o.frame - prev.frame - 1 > max_gap:
            for f in range(o.frame - pad, o.frame):
                put(f, o.face, "padded")
    if smooth <= 0:
        return plan
    from dataclasses import replace
    out = {}
    seen = {f for f, (_, how) in plan.items() if how != "padded"}       # padded frames hold a box: left as is
    for f, (face, how) in plan.items():
        r = 0                       # a symmetric window only: a one-sided mean would lag behind a moving face
        while how != "padded" and r < smooth and f - r - 1 in seen and f + r + 1 in seen:
            r += 1
        if r == 0:
            out[f] = (face, how)
            continue
        near = [plan[g][0] for g in range(f - r, f + r + 1)]
        kps = np.mean([n.kps for n in near], 0).astype(np.float32)
        lm = _landmarks(face)         # moved with the five points (their shape, the expression, is kept)
        lm = None if lm is None else (lm + (kps - face.kps).mean(0)).astype(np.float32)
        out[f] = (type(face)(np.mean([n.bbox for n in near], 0).astype(np.float32), face.score, kps, lm,
                             face.backend), how)
    return out
