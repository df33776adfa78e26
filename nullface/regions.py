"""Region masks from landmarks: eyes, brows, nose, mouth, skin and the whole face.

Masks are float32 HxW in 0..1 in whatever frame the landmarks are given (image or crop).
With dlib's 68 landmarks the regions follow the features' outlines; with only the five
ArcFace points they are ellipses around them (coarser, documented).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import masks as M
from .errors import InputError

REGIONS = ("eyes", "brows", "nose", "mouth", "skin", "face")

# iBUG-68 indices
_IDX = {
    "left_eye": range(36, 42), "right_eye": range(42, 48),
    "left_brow": range(17, 22), "right_brow": range(22, 27),
    "nose": list(range(27, 36)) + [31, 35], "mouth": range(48, 60), "jaw": range(0, 17),
}


def parse_regions(names: str | Iterable[str]) -> tuple[str, ...]:
    """``"eyes,mouth"`` or a list -> a validated tuple of region names."""
    items = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names) if n and n.strip()]
    aliases = {"eye": "eyes", "lips": "mouth", "lip": "mouth", "brow": "brows", "eyebrows": "brows"}
    items = [aliases.get(n, n) for n in items]
    bad = [n for n in items if n not in REGIONS]
    if bad:
        raise InputError(f"unknown face region(s) {bad}; choose from {', '.join(REGIONS)}")
    return tuple(dict.fromkeys(items))


def _turn(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of 2-D points."""
    p = sorted(map(tuple, np.asarray(pts, np.float64)))
    if len(p) < 3:
        return np.array(p)

    def half(seq):
        out = []
        for q in seq:
            while len(out) >= 2 and _turn(out[-2], out[-1], q) <= 0:
                out.pop()
            out.append(q)
        return out
    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _fill(shape: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        if len(poly) >= 3:
            draw.polygon([tuple(map(float, q)) for q in poly], fill=255)
    return np.asarray(img, np.float32) / 255.0


def _ellipse(centre, rx, ry) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    return np.stack([centre[0] + rx * np.cos(a), centre[1] + ry * np.sin(a)], 1)


def _polygons_68(pts: np.ndarray, region: str) -> list[np.ndarray]:
    g = {k: pts[list(v)] for k, v in _IDX.items()}
    eye_h = np.linalg.norm(g["left_eye"].mean(0) - g["right_eye"].mean(0))
    if region == "eyes":
        return [_hull(e.mean(0) + 1.6 * (e - e.mean(0))) for e in (g["left_eye"], g["right_eye"])]
    if region == "brows":
        return [_hull(np.concatenate([b, b + [0, 0.06 * eye_h], b - [0, 0.06 * eye_h]]))
                for b in (g["left_brow"], g["right_brow"])]
    if region == "nose":
        return [_hull(g["nose"])]
    if region == "mouth":
        return [_hull(g["mouth"])]
    if region == "face":
        up = g["jaw"].mean(0) - pts[27]                 # from the nose bridge towards the chin
        up = -up / max(np.linalg.norm(up), 1e-6)
        brows = np.concatenate([g["left_brow"], g["right_brow"]])
        forehead = brows + up * 0.55 * eye_h
        return [_hull(np.concatenate([g["jaw"], brows, forehead]))]
    raise InputError(f"unknown region {region}")


def _polygons_5(kps: np.ndarray, region: str) -> list[np.ndarray]:
    le, re, nose, lm, rm = np.asarray(kps, np.float64)
    d = np.linalg.norm(re - le)
    eyes_c, mouth_c = (le + re) / 2, (lm + rm) / 2
    if region == "eyes":
        return [_ellipse(e, 0.28 * d, 0.17 * d) for e in (le, re)]
    if region == "brows":
        return [_ellipse(e + [0, -0.32 * d], 0.32 * d, 0.1 * d) for e in (le, re)]
    if region == "nose":
        return [_ellipse((eyes_c + nose) / 2 * 0.4 + nose * 0.6, 0.25 * d, 0.42 * d)]
    if region == "mouth":
        return [_ellipse(mouth_c, 0.55 * np.linalg.norm(rm - lm) + 0.05 * d, 0.25 * d)]
    if region == "face":
        h = np.linalg.norm(mouth_c - eyes_c)
        return [_ellipse(eyes_c + (mouth_c - eyes_c) * 0.3, 1.1 * d, 1.6 * h)]
    raise InputError(f"unknown region {region}")


def region_mask(landmarks: np.ndarray, shape: tuple[int, int], regions: str | Iterable[str],
                grow: int = 0, feather: float = 0.0) -> np.ndarray:
    """Union of the named regions of one face, float32 HxW; ``grow`` px (+/-), then ``feather`` px blur.

    ``landmarks``: (68,2) iBUG points, or (5,2) ArcFace points (coarse ellipses).
    """
    names = parse_regions(regions)
    pts = np.asarray(landmarks, np.float64)
    polys_of = _polygons_68 if len(pts) == 68 else _polygons_5 if len(pts) == 5 else None
    if polys_of is None:
        raise InputError(f"landmarks must be 68 or 5 points, got {len(pts)}")
    out = np.zeros(shape, np.float32)
    for name in names:
        if name == "skin":
            m = _fill(shape, polys_of(pts, "face"))
            for other in ("eyes", "brows", "mouth"):
                m = np.minimum(m, 1 - _fill(shape, polys_of(pts, other)))
        else:
            m = _fill(shape, polys_of(pts, name))
        out = np.maximum(out, m)
    if grow or feather:
        t = torch.from_numpy(out)[None]
        out = M.feather(M.grow(t, int(grow)), float(feather))[0].numpy()
    return out.astype(np.float32)


def anonymize_mask(landmarks: np.ndarray, shape: tuple[int, int], keep: str | Iterable[str], grow: int = 0,
                   feather: float = 0.0, keep_mask: np.ndarray | None = None) -> np.ndarray | None:
    """The paper's M for one face: 1 = anonymize, 0 = keep the named regions (and ``keep_mask``) visible.

    None when nothing is kept (the whole crop is anonymized, the reference's default).
    """
    keep = parse_regions(keep)
    if not keep and keep_mask is None:
        return None
    kept = region_mask(landmarks, shape, keep, grow, feather) if keep else np.zeros(shape, np.float32)
    if keep_mask is not None:
        kept = np.maximum(kept, np.asarray(keep_mask, np.float32))
    return (1.0 - kept).astype(np.float32)
