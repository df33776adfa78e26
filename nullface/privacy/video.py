"""Videos: every face of every frame anonymized, one new identity per person, fail closed in time.

``anonymize_frames(frames, detector, anonymizer, options, video)`` anonymizes a sequence of frames (a whole
clip, or one chunk of a long one: pass the returned ``VideoState`` to the next call). Per chunk:

1. every frame is searched for faces (``PhotoOptions``' min size, score and max faces mark faces ignored,
   reported per frame, as for photos), and the faces are linked into tracks (``nullface.faces.track``);
2. each new track gets its identity: the recognizer's vectors of its best frames (highest detection score
   x face size, ``VideoOptions.identity_frames`` of them) averaged and made unit again, and its seed
   offset (the track number; with NullFace the track's seed is ``settings.seed + offset``), kept for all
   its frames and chunks. A new track whose identity matches a track that ended earlier
   (``VideoOptions.relink``) continues that track: a person who left and came back keeps their new face;
3. each frame gets its tracks' faces: detected, interpolated across detector misses, padded before a
   track starts and after it ends, the crop geometry smoothed along the track (``track_faces``);
4. the frames go through the photo driver (``anonymize_photos``, ``VideoOptions.frames_per_call`` frames at
   a time) with exactly their tracks' faces: the same crops, masks, pasting and failure policy as a photo,
   and the faces of several frames share UNet calls (``PhotoOptions.batch`` per call) when the method allows
   it (each face's result does not depend on its batch). A face that cannot be anonymized fails the video
   under the default policy ``error``; blur, pixelate or keep apply to that face in that frame.

The report (``VideoState.report``) lists every track: its frames, box and source per frame, status and audit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..faces.detect import DetectedFace
from ..faces.track import FaceTracker, Track, track_faces
from .photo import Anonymizer, PhotoOptions, anonymize_photos, as_rgb, select
from .policy import no_face

log = logging.getLogger("nullface")

# embed(frame_rgb, face) -> the recognizer's vector of that face (the identity a track keeps)
Embed = Callable[[np.ndarray, DetectedFace], np.ndarray]


@dataclass(frozen=True)
class VideoOptions:
    """How faces are followed through time (the per-frame processing is ``PhotoOptions``')."""

    max_gap: int = 8            # frames a track may go undetected and still be the same track (interpolated)
    pad: int = 3                # frames anonymized before a track's first and after its last detection
    smooth: int = 2             # crop geometry averaged over this many frames on either side (0 = off)
    identity_frames: int = 5    # best frames whose identity vectors are averaged for the track
    relink: float = 0.5         # a new track this similar (cosine of the identity vectors; ArcFace for NullFace)
                                # to an ended one continues it (0 = off)
    frames_per_call: int = 8    # frames handed to the photo driver together: their faces share UNet calls
                                # (PhotoOptions.batch faces per call); the result is the same as frame by frame

    def validate(self) -> "VideoOptions":
        for name in ("max_gap", "pad", "smooth"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise InputError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.frames_per_call, int) or self.frames_per_call < 1:
            raise InputError(f"frames_per_call must be an integer >= 1, got {self.frames_per_call!r}")
        if not isinstance(self.identity_frames, int) or self.identity_frames < 1:
            raise InputError(f"identity_frames must be an integer >= 1, got {self.identity_frames!r}")
        if not 0.0 <= self.relink <= 1.0:
            raise InputError(f"relink must be a cosine similarity in 0..1 (0 = off), got {self.relink}")
        return self


@dataclass
class TrackReport:
    """What the report says of one track."""

    id: int
    frames: list[dict] = field(default_factory=list)   # {frame, bbox, source, status[, policy, error]}
    identity_frames: list[int] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        count = lambda key, v: sum(f[key] == v for f in self.frames)      # noqa: E731
        failed = [f for f in self.frames if f["status"] != "anonymized"]
        return {"track": self.id, "first_frame": self.frames[0]["frame"] if self.frames else None,
                "last_frame": self.frames[-1]["frame"] if self.frames else None, "frames_count": len(self.frames),
                "detected": count("source", "detected"), "interpolated": count("source", "interpolated"),
                "padded": count("source", "padded"),
                "status": "anonymized" if not failed else "failed", "failed_frames": len(failed),
                "identity_frames": self.identity_frames, "audit": self.audit, "frames": self.frames}


@dataclass
class VideoState:
    """What carries over from one chunk of a video to the next: the tracks, identities and the report."""

    tracker: FaceTracker
    frame: int = 0                                    # index of the next frame
    tracks: dict[int, TrackReport] = field(default_factory=dict)
    ignored: list[dict] = field(default_factory=list)
    detector: str = ""
    size: tuple[int, int] | None = None

    @classmethod
    def new(cls, video: "VideoOptions") -> "VideoState":
        return cls(FaceTracker(max_gap=video.max_gap))

    def report(self) -> dict:
        tracks = [t.to_dict() for t in sorted(self.tracks.values(), key=lambda t: t.id)]
        face_frames = sum(t["frames_count"] for t in tracks)
        failed = sum(t["failed_frames"] for t in tracks)
        return {"frames": self.frame, "detector": self.detector, "tracks_found": len(tracks),
                "faces_found": len(tracks), "anonymized": sum(t["status"] == "anonymized" for t in tracks),
                "failed": sum(t["status"] == "failed" for t in tracks), "face_frames": face_frames,
                "face_frames_failed": failed, "ignored": len(self.ignored), "tracks": tracks,
                "ignored_faces": self.ignored}


class _Planned:
    """A 'detector' that returns the faces planned for the current frame (the photo driver's input)."""

    name = "tracked"

    def __init__(self):
        self.faces: list[DetectedFace] = []

    def detect(self, image) -> list[DetectedFace]:
        return list(self.faces)


def _quality(face: DetectedFace) -> float:
    """Detection score x face size: sharp, frontal, large faces first."""
    return max(float(face.score), 1e-3) * face.size


def choose_identity(track: Track, frames: dict[int, np.ndarray], embed: Embed, count: int) -> None:
    """Set the track's identity: the mean of the recognizer's unit vectors of its ``count`` best detected
    frames among ``frames`` (frame index -> RGB), made unit again."""
    best = sorted((o for o in track.observations if o.frame in frames), key=lambda o: -_quality(o.face))[:count]
    vectors = []
    for o in best:
        v = np.asarray(embed(frames[o.frame], o.face), np.float32).reshape(-1)
        vectors.append(v / max(float(np.linalg.norm(v)), 1e-12))
    if vectors:
        mean = np.mean(vectors, 0)
        track.identity = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        track.identity_frames = sorted(o.frame for o in best)


def _with_identity(anonymizer: Anonymizer, owners: dict[int, Track], use_embedding: bool) -> Anonymizer:
    """The anonymizer, given each crop's track seed offset (and identity): the crops are tagged in place, so the
    photo driver still knows them (and routes each audit to its frame)."""
    def run(images, crops):
        for c in crops:
            t = owners[id(c.face)]
            c.seed_offset = t.id
            c.embedding = t.identity if use_embedding and t.identity is not None else None
        return anonymizer(images, crops)
    for name in ("audits", "many_images", "audited", "keep"):
        if hasattr(anonymizer, name):
            setattr(run, name, getattr(anonymizer, name))
    return run


def anonymize_frames(frames: Sequence[np.ndarray], detector, anonymizer: Anonymizer,
                     options: PhotoOptions = PhotoOptions(), video: VideoOptions = VideoOptions(), *,
                     state: VideoState | None = None, embed: Embed | None = None, final: bool = True,
                     name: str = "the video", progress: Callable[[int, int], None] | None = None,
                     ) -> tuple[list[np.ndarray], VideoState]:
    """Anonymize ``frames`` (uint8 RGB, one size); returns the frames and the state for the next chunk.

    ``embed`` (default: the anonymizer's own ``embed``, which the NullFace engine has) gives each track one
    identity, passed to the anonymizer on every crop as ``crop.embedding``; without one the anonymizer
    embeds each frame itself. ``final``: no chunk follows (tracks at the end are
    padded by ``video.pad``; otherwise held up to ``video.max_gap`` frames, as the face may come back).
    ``progress(done, total)`` is called after each frame. Raises ``FaceFailedError`` (policy ``error``) or
    ``NoFaceError`` (no face in the whole video, ``options.on_no_face`` error) with the frame named.
    """
    options.validate()
    video.validate()
    if options.keep is None:                 # the method's own default kept regions, as for photos
        options = replace(options, keep=tuple(getattr(anonymizer, "keep", ())))
    embed = embed or getattr(anonymizer, "embed", None)
    state = state or VideoState.new(video)
    rgb = [as_rgb(f)[0] for f in frames]
    if not rgb:
        return [], state
    size = rgb[0].shape[:2]
    if any(f.shape[:2] != size for f in rgb) or (state.size is not None and state.size != size):
        raise InputError(f"every frame of {name} must have one size; got "
                         f"{sorted({tuple(f.shape[:2]) for f in rgb} | ({state.size} if state.size else set()))}")
    state.size, start = size, state.frame
    end = start + len(rgb) - 1
    state.detector = getattr(detector, "name", type(detector).__name__)
    new_tracks: set[int] = set()
    for i, f in enumerate(rgb):                                    # 1. detect and link
        faces, ignored = select(list(detector.detect(f)), options)
        state.ignored += [{"frame": start + i, **g.to_dict()} for g in ignored]
        before = set(state.tracker.tracks)
        state.tracker.update(start + i, faces)
        new_tracks |= set(state.tracker.tracks) - before
    by_frame = {start + i: f for i, f in enumerate(rgb)}
    for tid in sorted(new_tracks):                                 # 2. one identity per track
        track = state.tracker.tracks[tid]
        if embed is None:
            continue
        choose_identity(track, by_frame, embed, video.identity_frames)
        if video.relink > 0 and track.identity is not None:
            old = state.tracker.relink(track, track.identity, video.relink, track.observations[0].frame)
            if old is not None:
                log.info("%s: track %d is track %d seen again (identity similarity >= %g)",
                         name, tid, old.id, video.relink)
                state.tracker.merge(old, track)
    plans: dict[int, list[tuple[DetectedFace, Track, str]]] = {f: [] for f in by_frame}
    for track in state.tracker.tracks.values():                    # 3. the faces of every frame
        plan = track_faces(track, start - video.smooth, end, video.max_gap, video.pad, video.smooth, final)
        for f, (face, how) in plan.items():
            if f >= start:
                plans[f].append((face, track, how))
    if final and not state.tracks and not any(plans.values()) and not state.ignored:
        no_face(name, options.on_no_face)
    per_frame = replace(options, on_no_face="pass", min_face_size=0, max_faces=0, score_threshold=None)
    order = sorted(by_frame)
    items = {f: sorted(plans[f], key=lambda x: -x[0].area) for f in order}
    owners = {id(face): track for f in order for face, track, _ in items[f]}
    run = _with_identity(anonymizer, owners, embed is not None)
    out = []
    for k in range(0, len(order), video.frames_per_call):           # 4. frames through the photo driver together:
        part = order[k:k + video.frames_per_call]                  #    faces of several frames share UNet calls
        results = anonymize_photos([by_frame[f] for f in part], _Planned(), run, per_frame,
                                   names=[f"frame {f} of {name}" for f in part],
                                   found=[[face for face, _, _ in items[f]] for f in part])
        for f, res in zip(part, results):
            if isinstance(res, BaseException):
                partial = getattr(res, "result", None)
                if partial is not None:
                    _record(state, f, items[f], partial.faces, partial.audits, owners)
                res.video_state = state           # the tracks so far, for the report
                raise res
            _record(state, f, items[f], res.faces, res.audits, owners)
            out.append(res.image)
            if progress is not None:
                progress(f - start + 1, len(rgb))
    state.frame = end + 1
    state.tracker.forget(end - video.max_gap - video.smooth - 1)
    return out, state


def _record(state: VideoState, frame: int, items, outcomes, audits, owners: dict[int, Track]) -> None:
    """Add one frame's faces and audits to their tracks' reports."""
    for (face, track, how), res in zip(items, outcomes):
        rep = state.tracks.setdefault(track.id, TrackReport(track.id))
        rep.identity_frames = list(track.identity_frames)
        entry = {"frame": frame, "bbox": [round(float(v), 1) for v in face.bbox], "source": how,
                 "status": res.status}
        if res.policy:
            entry["policy"] = res.policy
        if res.error:
            entry["error"] = res.error
        rep.frames.append(entry)
    for a in audits:
        crop = getattr(a, "crop", None)
        track = owners.get(id(crop.face)) if crop is not None else None
        if track is not None:
            state.tracks.setdefault(track.id, TrackReport(track.id)).audit.append({"frame": frame, **a.to_dict()})
