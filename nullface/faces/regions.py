"""Region masks from landmarks: eyes, brows, nose, mouth, skin and the whole face.

Masks are float32 HxW in 0..1 in whatever frame the landmarks are given (image or crop). Each region is
a few shapes (polygons around the landmarks, thick lines, ellipses) whose signed distance is evaluated
at every pixel centre, so ``grow`` (+/- pixels) is an exact round dilation/erosion and ``feather``
(pixels) a linear ramp of that width centred on the edge (0 = hard mask). Only a window around the
face is computed, so masks on large photos stay cheap.

With dlib's 68 landmarks the regions follow the features' outlines; with only the five ArcFace points
(insightface) they are ellipses and lines placed from those points (coarser). Sizes scale with the face
(``unit`` = the distance between the eye centres, or 0.7x eyes-to-mouth for faces seen from the side).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .crop import FaceCrop

REGIONS = ("eyes", "brows", "nose", "mouth", "skin", "face")
MASK_MEANS = ("keep", "anonymize")
_ALIASES = {"eye": "eyes", "lips": "mouth", "lip": "mouth", "brow": "brows", "eyebrows": "brows",
            "eyebrow": "brows"}


def parse_regions(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"eyes,mouth"`` or a list -> a validated tuple of region names (aliases: lips, eyebrows...).

    ``"none"`` (or an empty string) keeps nothing: the whole face is anonymized."""
    if names is None:
        return ()
    items = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names) if n and n.strip()]
    if "none" in items:
        if len(items) > 1:
            raise InputError(f"'none' (anonymize the whole face) cannot be combined with regions, got {names!r}")
        return ()
    items = [_ALIASES.get(n, n) for n in items]
    bad = [n for n in items if n not in REGIONS]
    if bad:
        raise InputError(f"unknown face region(s) {bad}; choose from {', '.join(REGIONS)}")
    return tuple(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Shape:
    """``polygon`` (closed, convex or not), ``line`` (polyline or point) or ``ellipse``
    (points = centre, semi-axis vector a, semi-axis vector b), widened by ``radius`` pixels."""

    kind: str
    points: np.ndarray
    radius: float = 0.0

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xy, max xy) of the shape including its radius."""
        if self.kind == "ellipse":
            c, a, b = self.points
            half = np.sqrt(a ** 2 + b ** 2)
            return c - half - self.radius, c + half + self.radius
        return self.points.min(0) - self.radius, self.points.max(0) + self.radius


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain), counter-clockwise, of 2-D points."""
    p = sorted(map(tuple, np.asarray(pts, np.float64)))
    if len(p) < 3:
        return np.array(p, np.float64)

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(seq):
        out: list = []
        for q in seq:
            while len(out) >= 2 and turn(out[-2], out[-1], q) <= 0:
                out.pop()
            out.append(q)
        return out
    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1], np.float64)


def _segments_distance(px, py, pts: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance from every (px, py) to the polyline ``pts``; with ``closed`` also the even-odd inside test."""
    d2 = np.full(px.shape, np.inf, np.float32)
    inside = np.zeros(px.shape, bool) if closed else None
    n = len(pts)
    if n == 1:
        return np.sqrt((px - pts[0, 0]) ** 2 + (py - pts[0, 1]) ** 2), inside
    edges = range(n) if closed else range(n - 1)
    for i in edges:
        ax, ay = pts[i]
        bx, by = pts[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        ll = ex * ex + ey * ey
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / ll, 0, 1) if ll > 0 else np.zeros_like(px)
        dx, dy = wx - t * ex, wy - t * ey
        np.minimum(d2, dx * dx + dy * dy, out=d2)
        if closed and ay != by:
            crosses = (ay > py) != (by > py)
            xint = ax + (py - ay) * ex / ey
            inside ^= crosses & (px < xint)
    return np.sqrt(d2), inside


def _sdf(shape: Shape, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) from the pixel centres to ``shape``."""
    if shape.kind == "ellipse":
        c, a, b = (np.asarray(v, np.float64) for v in shape.points)
        ra, rb = max(np.linalg.norm(a), 1e-6), max(np.linalg.norm(b), 1e-6)
        ua, ub = a / ra, b / rb
        x = ((px - c[0]) * ua[0] + (py - c[1]) * ua[1]) / ra
        y = ((px - c[0]) * ub[0] + (py - c[1]) * ub[1]) / rb
        k0 = np.sqrt(x * x + y * y)
        k1 = np.sqrt((x / ra) ** 2 + (y / rb) ** 2)
        d = np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(ra, rb))
        return (d - shape.radius).astype(np.float32)
    closed = shape.kind == "polygon" and len(shape.points) >= 3
    dist, inside = _segments_distance(px, py, np.asarray(shape.points, np.float64), closed)
    if closed:
        dist = np.where(inside, -dist, dist)
    return (dist - shape.radius).astype(np.float32)


# --------------------------------------------------------------------------------------- face geometry
def _axes(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(right, down) unit vectors of the face, eye distance, eyes-to-mouth distance, size unit."""
    le, re, _, lm, rm = kps
    eyes, mouth = (le + re) / 2, (lm + rm) / 2
    e2e, e2m = re - le, mouth - eyes
    x = e2e + np.array([e2m[1], -e2m[0]])            # FFHQ's rule: average the eye line and the face axis
    n = np.linalg.norm(x)
    right = x / n if n > 1e-6 else np.array([1.0, 0.0])
    down = np.array([-right[1], right[0]])
    e, m = float(np.linalg.norm(e2e)), float(np.linalg.norm(e2m))
    return right, down, e, m, max(e, 0.7 * m, 1.0)


def _shapes_68(pts: np.ndarray, region: str) -> list[Shape]:
    kps = np.array([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
    right, down, e, m, u = _axes(kps)
    if region == "eyes":
        out = []
        for idx in (range(36, 42), range(42, 48)):
            p = pts[list(idx)]
            c = p.mean(0)
            out.append(Shape("polygon", c + 1.2 * (p - c), 0.09 * u))
        return out
    if region == "brows":
        return [Shape("line", pts[17:22], 0.09 * u), Shape("line", pts[22:27], 0.09 * u)]
    if region == "nose":
        bridge = [pts[27] + 0.3 * (pts[39] - pts[27]), pts[27] + 0.3 * (pts[42] - pts[27])]
        return [Shape("polygon", _hull(np.concatenate([pts[27:36], bridge])), 0.05 * u)]
    if region == "mouth":
        return [Shape("polygon", pts[48:60], 0.07 * u)]           # the outer lip line, not its hull (smiles)
    if region == "face":
        forehead = pts[17:27] - 0.7 * u * down
        return [Shape("polygon", _hull(np.concatenate([pts[0:17], pts[17:27], forehead])), 0.05 * u)]
    raise InputError(f"unknown region {region}")


def _shapes_5(kps: np.ndarray, region: str) -> list[Shape]:
    le, re, nose, lm, rm = kps
    right, down, e, m, u = _axes(kps)
    eyes = (le + re) / 2
    if region == "eyes":
        return [Shape("ellipse", np.array([c, 0.3 * u * right, 0.17 * u * down])) for c in (le, re)]
    if region == "brows":
        return [Shape("ellipse", np.array([c - 0.36 * u * down, 0.3 * u * right, 0.09 * u * down])) for c in (le, re)]
    if region == "nose":
        top = eyes + 0.2 * (nose - eyes)
        return [Shape("line", np.array([top, nose + 0.08 * u * down]), 0.17 * u)]
    if region == "mouth":
        return [Shape("line", np.array([lm, rm]), 0.16 * u)]
    if region == "face":                # fitted to dlib's face outlines (jaw + forehead) on real photos
        mouth = (lm + rm) / 2
        turn = (nose - (eyes + mouth) / 2) @ right          # the nose points where the face turns
        centre = eyes + 0.36 * m * down - 1.35 * turn * right
        return [Shape("ellipse", np.array([centre, 1.12 * max(e, m) * right, 1.45 * max(m, 0.85 * e) * down]),
                      0.0)]
    raise InputError(f"unknown region {region}")


def region_shapes(landmarks: np.ndarray, region: str) -> list[Shape]:
    """The shapes of one region (not ``skin``) from 68 or 5 landmarks."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape == (68, 2):
        return _shapes_68(pts, region)
    if pts.shape == (5, 2):
        return _shapes_5(pts, region)
    raise InputError(f"landmarks must be 68 or 5 (x, y) points, got shape {pts.shape}")


# ----------------------------------------------------------------------------------------------- masks
def _ramp(sd: np.ndarray, grow: float, feather: float) -> np.ndarray:
    if feather <= 0:
        return (sd <= grow).astype(np.float32)
    return np.clip(0.5 - (sd - grow) / feather, 0.0, 1.0).astype(np.float32)


def _window(shapes: Sequence[Shape], shape: tuple[int, int], reach: float) -> tuple[int, int, int, int] | None:
    lo = np.min([s.extent()[0] for s in shapes], 0) - reach - 2
    hi = np.max([s.extent()[1] for s in shapes], 0) + reach + 2
    x0, y0 = max(0, int(np.floor(lo[0]))), max(0, int(np.floor(lo[1])))
    x1, y1 = min(shape[1], int(np.ceil(hi[0])) + 1), min(shape[0], int(np.ceil(hi[1])) + 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


FEATURES = ("eyes", "brows", "nose", "mouth")


def _region_sd(landmarks: np.ndarray, name: str, px: np.ndarray, py: np.ndarray, core: bool = False) -> np.ndarray:
    """Signed distance to a region; ``core``: to its landmark outline, without the region's margin."""
    return np.min([_sdf(s, px, py) + (s.radius if core else 0.0) for s in region_shapes(landmarks, name)], 0)


def _features_mask(pts: np.ndarray, names: Sequence[str], px: np.ndarray, py: np.ndarray, grow: float,
                   feather: float) -> np.ndarray:
    """Union of the named features (eyes, brows, nose, mouth), each cut where a feature that is not
    named is nearer: a region never swallows its neighbours' landmarks, and named neighbours merge."""
    sd = np.min([_region_sd(pts, n, px, py) for n in names], 0)
    m = _ramp(sd, grow, feather)
    rivals = [n for n in FEATURES if n not in names]
    if rivals:
        own = np.min([_region_sd(pts, n, px, py, core=True) for n in names], 0)
        other = np.min([_region_sd(pts, n, px, py, core=True) for n in rivals], 0)
        m *= _ramp(own - other, 0.0, feather)
    return m


def region_mask(landmarks: np.ndarray, shape: tuple[int, int], regions: str | Iterable[str],
                grow: float = 0, feather: float = 0.0) -> np.ndarray:
    """Union of the named regions of one face, float32 HxW (``shape`` = (h, w)).

    ``landmarks``: (68,2) iBUG points, or (5,2) ArcFace points (coarse shapes). ``grow``: pixels added
    (+) or removed (-) all around; ``feather``: width in pixels of the soft edge (0 = hard 0/1 mask).
    Eyes, brows, nose and mouth stop halfway to a feature that is not asked for; ``face`` includes the
    forehead; ``skin`` is the face without eyes, brows and mouth (nose included).
    """
    names = parse_regions(regions)
    pts = np.asarray(landmarks, np.float64)
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), np.float32)
    if not names or h <= 0 or w <= 0:
        return out
    reach = max(float(grow), 0.0) + max(float(feather), 0.0) / 2
    features = [n for n in names if n in FEATURES]
    parts = ([("features", features)] if features else []) + [(n, ["face"]) for n in names if n in ("face", "skin")]
    for part, bases in parts:
        win = _window([s for b in bases for s in region_shapes(pts, b)], (h, w), reach)
        if win is None:
            continue
        x0, y0, x1, y1 = win
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        if part == "features":
            m = _features_mask(pts, features, px, py, grow, feather)
        else:
            m = _ramp(_region_sd(pts, "face", px, py), grow, feather)
            if part == "skin":
                m = m * (1.0 - _features_mask(pts, ("eyes", "brows", "mouth"), px, py, -grow, feather))
        np.maximum(out[y0:y1, x0:x1], m, out=out[y0:y1, x0:x1])
    return out


def anonymize_mask(landmarks: np.ndarray, shape: tuple[int, int], keep: str | Iterable[str], grow: float = 0,
                   feather: float = 0.0, keep_mask: np.ndarray | None = None) -> np.ndarray | None:
    """The paper's M for one face: 1 = anonymize, 0 = keep the named regions (and ``keep_mask``) visible.

    None when nothing is kept (the whole crop is anonymized, the reference's default).
    """
    keep = parse_regions(keep)
    if not keep and keep_mask is None:
        return None
    kept = region_mask(landmarks, shape, keep, grow, feather) if keep else np.zeros(shape, np.float32)
    if keep_mask is not None:
        kept = np.maximum(kept, np.clip(np.asarray(keep_mask, np.float32), 0, 1))
    return (1.0 - kept).astype(np.float32)


def combine_external(mask: np.ndarray | None, external: np.ndarray, means: str = "keep") -> np.ndarray:
    """Combine an anonymization mask (1 = anonymize; None = everything) with an external mask.

    ``means="keep"``: the external mask's white areas stay visible (M * (1 - ext)).
    ``means="anonymize"``: only its white areas may be anonymized (M * ext).
    """
    if means not in MASK_MEANS:
        raise InputError(f"an external mask means 'keep' or 'anonymize', not '{means}'")
    ext = np.clip(np.asarray(external, np.float32), 0, 1)
    base = np.ones(ext.shape, np.float32) if mask is None else np.asarray(mask, np.float32)
    if base.shape != ext.shape:
        raise InputError(f"the external mask is {ext.shape}, the anonymization mask {base.shape}")
    return (base * (1.0 - ext) if means == "keep" else base * ext).astype(np.float32)


# ---------------------------------------------------------------------------------------- crops, images
def face_landmarks(face) -> np.ndarray:
    """The 68 landmarks of a face when known, else its 5 points."""
    return face.landmarks68 if getattr(face, "landmarks68", None) is not None else face.kps


def external_to_crop(external: np.ndarray, crop: "FaceCrop") -> np.ndarray:
    """An image-size mask (float 0..1) warped into a crop's frame (bilinear; 0 beyond the image)."""
    from .crop import warp_float
    ext = np.clip(np.asarray(external, np.float32), 0, 1)
    if crop.image_shape is not None and ext.shape != tuple(crop.image_shape[:2]):
        raise InputError(f"the external mask is {ext.shape[1]}x{ext.shape[0]}, the image "
                         f"{crop.image_shape[1]}x{crop.image_shape[0]}")
    return np.clip(warp_float(ext, crop.matrix, (crop.size, crop.size), edge=True), 0, 1)


def crop_anonymize_mask(crop: "FaceCrop", keep: str | Iterable[str] = (), grow: float = 0, feather: float = 0.0,
                        external: np.ndarray | None = None, external_means: str = "keep") -> np.ndarray | None:
    """M for one crop (crop coordinates; 1 = anonymize): 1 - union(kept regions), then the external mask
    (image size, see ``combine_external``). None = the whole crop is anonymized."""
    lm = crop.to_crop(face_landmarks(crop.face))
    mask = anonymize_mask(lm, (crop.size, crop.size), keep, grow, feather)
    if external is not None:
        mask = combine_external(mask, external_to_crop(external, crop), external_means)
    return mask


def image_region_mask(shape: tuple[int, int], faces: Sequence, regions: str | Iterable[str], grow: float = 0,
                      feather: float = 0.0) -> np.ndarray:
    """Union of the named regions of every face, in image coordinates (``shape`` = (h, w))."""
    out = np.zeros((int(shape[0]), int(shape[1])), np.float32)
    for f in faces:
        np.maximum(out, region_mask(face_landmarks(f), shape, regions, grow, feather), out=out)
    return out

