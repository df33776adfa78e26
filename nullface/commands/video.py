"""The CLI's videos: ``python -m nullface anonymize clip.mp4 -o out`` (files and folders of videos, with photos).

A video is read and written in chunks of frames (memory stays flat on long videos) with one tracking state,
so tracks, identities and seeds continue from chunk to chunk. The output keeps the frame count, frame rate,
size and the audio packets (``--no-audio`` drops them), carries no tag of the input, and appears under its
name only once complete. Its report entry has the photo entries' keys (faces = tracks) plus every track.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("nullface")

CHUNK = 32          # frames held in memory at once


def add_arguments(p) -> None:
    from ..privacy.video import VideoOptions
    from ..privacy.video_io import DEFAULT_CRF
    d = VideoOptions()
    g = p.add_argument_group("videos (.mp4 .mov .m4v .mkv .webm .avi)")
    g.add_argument("--max-gap", type=int, default=d.max_gap,
                   help=f"frames a face may go undetected and still be the same track; those frames are "
                        f"anonymized from the interpolated box (default {d.max_gap})")
    g.add_argument("--pad", type=int, default=d.pad,
                   help=f"frames anonymized before a track's first and after its last detection (default {d.pad})")
    g.add_argument("--smooth", type=int, default=d.smooth,
                   help=f"crop geometry averaged over this many frames on either side (default {d.smooth}, 0 = off)")
    g.add_argument("--relink", type=float, default=d.relink,
                   help=f"a face coming back is the same track when its ArcFace similarity to an ended track is "
                        f"at least this (default {d.relink}, 0 = off)")
    g.add_argument("--crf", type=int, default=DEFAULT_CRF,
                   help=f"H.264 quality of the output video, 0 (lossless) .. 51 (default {DEFAULT_CRF})")
    g.add_argument("--no-audio", action="store_true", help="leave the audio out of output videos")


def video_options(args):
    from ..privacy.video import VideoOptions
    from ..errors import InputError
    if not 0 <= getattr(args, "crf", 18) <= 51:
        raise InputError(f"--crf must be in 0..51, got {args.crf}")
    return VideoOptions(max_gap=args.max_gap, pad=args.pad, smooth=args.smooth, relink=args.relink).validate()


def _chunks(frames, size: int):
    """Lists of ``size`` frames, each with whether it is the last."""
    chunk, it = [], iter(frames)
    for f in it:
        chunk.append(f)
        if len(chunk) == size:
            nxt = next(it, None)
            yield chunk, nxt is None
            chunk = [] if nxt is None else [nxt]
    if chunk:
        yield chunk, True


def anonymize_video(src: Path, target: Path, detector, anonymizer, options, video, *, audio: bool = True,
                    crf: int = 18, name: str = "the video", chunk: int = CHUNK) -> dict:
    """Anonymize one video file into ``target``; the report's fields (raises like ``anonymize_frames``)."""
    from ..privacy.video import anonymize_frames
    from ..privacy.video_io import VideoWriter, iter_frames, probe_video
    info = probe_video(src)
    state = None
    with VideoWriter(target, info.fps, audio_from=src if audio and info.has_audio else None, crf=crf) as w:
        for frames, last in _chunks(iter_frames(src), chunk):
            out, state = anonymize_frames(frames, detector, anonymizer, options, video, state=state, final=last,
                                          name=name)
            for f in out:
                w.write(f)
    rep = state.report()
    rep["video"] = {**info.to_dict(), "frames": rep["frames"], "audio": bool(w.audio_packets),
                    "audio_packets_copied": w.audio_packets}
    return rep


def process_video(src: Path, key: str, target: Path, detector, anonymizer, options, args) -> dict:
    """One video's report entry (never raises, except KeyboardInterrupt: the output is then not written)."""
    from ..errors import NullFaceError
    entry = {"input": str(src), "output": None, "faces_found": 0, "anonymized": 0, "failed": 0, "ignored": 0}
    t0 = time.perf_counter()
    try:
        if not src.is_file():
            raise FileNotFoundError(f"no such file: {src}")
        rep = anonymize_video(src, target, detector, anonymizer, options, video_options(args),
                              audio=not getattr(args, "no_audio", False), crf=getattr(args, "crf", 18), name=key)
        entry.update(rep)
        entry["status"] = ("passed" if rep["tracks_found"] == 0 and not rep["ignored"] else
                           "done" if rep["face_frames_failed"] == 0 else "done_with_policy")
        entry["output"] = str(target)
    except Exception as exc:                                    # reported per file; the run goes on
        kind = type(exc).__name__
        entry["status"] = {"NoFaceError": "no_face", "FaceFailedError": "failed"}.get(kind, "error")
        entry["error"] = str(exc) if isinstance(exc, (NullFaceError, ValueError, OSError)) else f"{kind}: {exc}"
        partial = getattr(exc, "video_state", None)
        if partial is not None:
            entry.update(partial.report())
        entry["anonymized"] = 0                                 # nothing was written
        entry["failed"] = max(entry.get("failed", 0), int(kind == "FaceFailedError"))
        log.error("%s: %s", key, entry["error"])
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    return entry
