"""Short test clips made from the real photos (no video file is stored in the repository).

``pan_zoom`` moves and zooms a window over a photo and returns the frames with each frame's photo -> frame
transform (so the photo's face boxes are known in every frame); ``write_clip`` encodes frames with PyAV,
with a tone as audio and the tags a phone writes (GPS, creation time, device, encoder) planted in the
container and its streams.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from PIL import Image

PLANTED = {"location": "+48.8584+002.2945/", "creation_time": "2024-05-01T10:00:00.000000Z",
           "com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 15 Pro",
           "comment": "Shot by Alice Example"}
STREAM_PLANTED = {"creation_time": "2024-05-01T10:00:00.000000Z", "handler_name": "Core Media Video",
                  "title": "alice-phone"}


def pan_zoom(photo: np.ndarray, n: int, size: tuple[int, int], start: tuple[float, float, float],
             stop: tuple[float, float, float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames of ``size`` (w, h): a window of width ``s * photo width`` whose top-left corner goes from
    ``(x, y)`` to ... (fractions of the photo), for ``start``/``stop`` = (x, y, s). Returns frames and, per
    frame, the 2x3 photo -> frame matrix."""
    H, W = photo.shape[:2]
    w, h = size
    frames, mats = [], []
    pil = Image.fromarray(photo)
    for i in range(n):
        t = i / max(1, n - 1)
        x, y, s = (a + (b - a) * t for a, b in zip(start, stop))
        ww = s * W
        wh = ww * h / w
        box = (x * W, y * H, x * W + ww, y * H + wh)
        frames.append(np.asarray(pil.resize((w, h), Image.BILINEAR, box=box)))
        k = w / ww
        mats.append(np.array([[k, 0, -box[0] * k], [0, k, -box[1] * k]]))
    return frames, mats


def slide(photo: np.ndarray, n: int, size: tuple[int, int], xs: list[float], y: float = 0.5,
          scale: float = 1.0, background: int = 90) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The photo (resized by ``scale``) pasted on a plain background with its centre at ``xs[i]`` x frame
    width (``y`` x frame height): it moves across, and out of, the frame. Returns frames and matrices."""
    w, h = size
    small = np.asarray(Image.fromarray(photo).resize((int(photo.shape[1] * scale), int(photo.shape[0] * scale)),
                                                     Image.BILINEAR))
    sh, sw = small.shape[:2]
    frames, mats = [], []
    for i in range(n):
        f = np.full((h, w, 3), background, np.uint8)
        x0, y0 = int(round(xs[i] * w - sw / 2)), int(round(y * h - sh / 2))
        a, b = max(0, x0), max(0, y0)
        c, d = min(w, x0 + sw), min(h, y0 + sh)
        if c > a and d > b:
            f[b:d, a:c] = small[b - y0:d - y0, a - x0:c - x0]
        frames.append(f)
        mats.append(np.array([[scale, 0, x0], [0, scale, y0]]))
    return frames, mats


def map_box(box, m) -> np.ndarray:
    x1, y1, x2, y2 = box
    pts = np.array([[x1, y1], [x2, y2]], np.float64) @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]
    return pts.reshape(-1)


def write_clip(path, frames, fps=Fraction(25), audio: bool = True, codec: str = "libx264", crf: int = 12) -> None:
    """Encode ``frames`` with a 440 Hz tone (AAC) and the phone tags of ``PLANTED``."""
    import av
    with av.open(str(path), "w") as c:
        c.metadata.update(PLANTED)
        v = c.add_stream(codec, rate=fps)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv444p"
        v.options = {"crf": str(crf)}
        v.metadata.update(STREAM_PLANTED)
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
            a.metadata.update({**STREAM_PLANTED, "handler_name": "Core Media Audio"})
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            c.mux(v.encode(vf))
        c.mux(v.encode(None))
        if a is not None:
            n = int(16000 * len(frames) / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, k
                c.mux(a.encode(af))
            c.mux(a.encode(None))


def audio_packets(path) -> list[bytes]:
    import av
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
