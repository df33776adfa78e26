"""Video files without leaks: decode frames upright, encode anonymized frames, copy the audio, no metadata.

Phone and camera videos carry GPS coordinates, the device model, the owner's name and the capture time as
container and stream tags, and the encoder's name of the device. None of it survives here: the output
container and its streams are created empty (no tags are copied, ``bitexact`` keeps the muxer from adding
its own version string and creation time), the frames are re-encoded from pixels only, and the audio packets
are copied bit for bit into a fresh stream without the input's tags (``drop_audio`` leaves the audio out).
A rotation flag is applied to the pixels on decoding, so the output plays upright without one.

The output is written to a hidden temporary file next to the target and renamed into place when complete
(atomic: an interrupted run leaves no half-written video). Needs PyAV (``pip install av``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, MissingDependencyError

VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
REMUX_KEEPS = {".mp4", ".mov", ".m4v", ".mkv"}   # written in the input's container; others become .mkv
DEFAULT_CRF = 18                                  # libx264 constant rate factor: visually lossless


def _av():
    try:
        import av
    except ImportError:
        raise MissingDependencyError("video needs PyAV: pip install av (or pip install 'comfyui-nullface[video]')") \
            from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What playback needs to know of a video (nothing else is read)."""

    width: int                        # upright (after the rotation flag)
    height: int
    fps: Fraction
    frames: int                       # counted from the stream header; 0 if the container does not say
    has_audio: bool
    rotation: int = 0                 # degrees the decoder turns frames to show them upright

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": float(self.fps), "frames": self.frames,
                "audio": self.has_audio}


def output_suffix(suffix: str) -> str:
    """The container an output is written in: the input's when it can hold any copied audio, else .mkv."""
    return suffix.lower() if suffix.lower() in REMUX_KEEPS else ".mkv"


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path))
    except Exception as exc:
        raise InputError(f"unreadable video '{path}' ({type(exc).__name__}: {exc})") from None


def _upright(frame) -> np.ndarray:
    a = frame.to_ndarray(format="rgb24")
    turns = (-int(getattr(frame, "rotation", 0) or 0) // 90) % 4
    return np.ascontiguousarray(np.rot90(a, turns)) if turns else a


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count and whether there is audio."""
    with _open(Path(path)) as c:
        if not c.streams.video:
            raise InputError(f"'{path}' has no video stream")
        s = c.streams.video[0]
        fps = s.average_rate or s.guessed_rate or Fraction(25)
        rotation = 0
        for frame in c.decode(video=0):
            rotation = int(getattr(frame, "rotation", 0) or 0)
            h, w = _upright(frame).shape[:2]
            break
        else:
            raise InputError(f"'{path}' has no decodable video frame")
        return VideoInfo(w, h, Fraction(fps), int(s.frames or 0), bool(c.streams.audio), rotation)


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of the first video stream, upright, as uint8 RGB HxWx3, in display order."""
    with _open(Path(path)) as c:
        if not c.streams.video:
            raise InputError(f"'{path}' has no video stream")
        c.streams.video[0].thread_type = "AUTO"
        for frame in c.decode(video=0):
            yield _upright(frame)


class VideoWriter:
    """Write frames and (optionally) the audio of ``audio_from`` into ``target``, atomically, without metadata.

    ``with VideoWriter(target, fps, audio_from=src) as w: w.write(frame) ...``. The file appears under
    ``target`` only when the block ends without an exception. H.264 (yuv420p; yuv444p for odd sizes) at
    ``crf`` (0 = lossless). Decoded audio (``waveform``: float samples [channels, n] and their rate, as
    ComfyUI's AUDIO carries) is encoded as AAC instead of copied.
    """

    def __init__(self, target: str | Path, fps: Fraction | float, audio_from: str | Path | None = None,
                 crf: int = DEFAULT_CRF, waveform: tuple[np.ndarray, int] | None = None):
        self.target = Path(target)
        self.fps = Fraction(fps).limit_denominator(100000)
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.crf = int(crf)
        self.waveform = waveform
        if waveform is not None and (np.asarray(waveform[0]).ndim != 2 or not 1 <= np.asarray(waveform[0]).shape[0] <= 2):
            raise InputError(f"audio must be [channels (1 or 2), samples], got {np.asarray(waveform[0]).shape}")
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be in 0..51, got {crf}")
        self.tmp = self.target.with_name(f".{self.target.stem}.{os.getpid()}.part{self.target.suffix}")
        self._out = self._video = self._src = self._audio = None
        self.frames = 0
        self.audio_packets = 0

    def __enter__(self) -> "VideoWriter":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        return self

    def _start(self, h: int, w: int) -> None:
        av = _av()
        fmt = {".mkv": "matroska", ".m4v": "mp4"}.get(self.target.suffix.lower())
        self._out = av.open(str(self.tmp), "w", format=fmt, options={"fflags": "+bitexact"})
        self._out.metadata.clear()
        odd = h % 2 or w % 2
        s = self._out.add_stream("libx264", rate=self.fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p" if odd or self.crf == 0 else "yuv420p"
        s.options = {"crf": str(self.crf), "preset": "medium"}
        s.metadata.clear()
        self._video = s
        if self.audio_from is not None:          # every stream exists before the first packet is written
            self._src = _open(self.audio_from)
            if self._src.streams.audio:
                self._audio = self._out.add_stream_from_template(self._src.streams.audio[0])
                self._audio.metadata.clear()
        elif self.waveform is not None:
            channels = np.asarray(self.waveform[0]).shape[0]
            self._audio = self._out.add_stream("aac", rate=int(self.waveform[1]))
            self._audio.layout = "stereo" if channels == 2 else "mono"
            self._audio.metadata.clear()

    def write(self, frame: np.ndarray) -> None:
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise InputError(f"a video frame must be uint8 HxWx3, got {a.dtype} {a.shape}")
        if self._out is None:
            self._start(*a.shape[:2])
        elif (a.shape[1], a.shape[0]) != (self._video.width, self._video.height):
            raise InputError(f"frame {self.frames} is {a.shape[1]}x{a.shape[0]}, the video "
                             f"{self._video.width}x{self._video.height}")
        vf = _av().VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
        vf.pts = self.frames
        vf.time_base = 1 / self.fps
        self._out.mux(self._video.encode(vf))
        self.frames += 1

    def _copy_audio(self) -> None:
        """The first audio stream's packets, bit for bit, into a new stream without the input's tags."""
        for packet in self._src.demux(self._src.streams.audio[0]):
            if packet.dts is None:              # the demuxer's flush packet
                continue
            packet.stream = self._audio
            self._out.mux(packet)
            self.audio_packets += 1

    def _encode_audio(self) -> None:
        """Decoded samples into AAC frames of 1024 samples."""
        av = _av()
        wave, rate = np.asarray(self.waveform[0], np.float32), int(self.waveform[1])
        layout = "stereo" if wave.shape[0] == 2 else "mono"
        for k in range(0, wave.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, k:k + 1024]), format="fltp", layout=layout)
            f.sample_rate, f.pts = rate, k
            self._out.mux(self._audio.encode(f))
            self.audio_packets += 1
        self._out.mux(self._audio.encode(None))

    def _finish(self) -> None:
        if self._out is None:
            raise InputError("no frame was written: a video needs at least one frame")
        self._out.mux(self._video.encode(None))
        if self._audio is not None and self._src is not None:
            self._copy_audio()
        elif self._audio is not None:
            self._encode_audio()
        self._out.close()
        self._out = None
        os.replace(self.tmp, self.target)

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            for c in (self._out, self._src):
                if c is not None:
                    try:
                        c.close()
                    except Exception:
                        pass
            self._out = self._src = None
            if self.tmp.exists():
                self.tmp.unlink()


def container_tags(path: str | Path) -> dict[str, dict]:
    """Every tag of a file: the container's and each stream's (what a leak check reads)."""
    with _open(Path(path)) as c:
        tags = {"container": dict(c.metadata)}
        for s in c.streams:
            tags[f"{s.type}:{s.index}"] = dict(s.metadata)
        return tags


def save_video(frames, fps: float, directory: str | Path, prefix: str = "anonymized",
               waveform: tuple[np.ndarray, int] | None = None, crf: int = DEFAULT_CRF) -> Path:
    """Frames (and decoded audio) as ``<prefix>_<counter>.mp4`` in ``directory``: no metadata, atomic, never
    overwriting a file; the name never echoes the input's."""
    from .saving import check_prefix, next_counter
    check_prefix(prefix)
    if not (isinstance(fps, (int, float, Fraction)) and float(fps) > 0):
        raise InputError(f"the frame rate must be > 0, got {fps!r}")
    directory = Path(directory)
    counter = next_counter(directory, prefix)
    while (directory / f"{prefix}_{counter:05d}.mp4").exists():
        counter += 1
    target = directory / f"{prefix}_{counter:05d}.mp4"
    with VideoWriter(target, Fraction(fps).limit_denominator(1001), waveform=waveform, crf=crf) as w:
        for f in frames:
            w.write(f)
    return target
