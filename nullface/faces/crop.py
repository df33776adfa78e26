"""Aligned face crops and pasting results back with a feathered seam confined to each face.

Framing follows the FFHQ / CelebA-HQ alignment (the paper's inputs): the crop is centred a little below
the eyes, turned so that the face is upright, and ``2 * max(2.0 x eye distance, 1.8 x eyes-to-mouth)``
image pixels wide (``zoom`` 1.0; larger shows more around the face). Parts of the crop beyond the photo
are filled by mirroring the photo, so the model never sees black borders.

Pasting only changes pixels where the face's paste region (an ellipse from forehead to chin, feathered
inward, exactly 0 outside) is > 0; every other pixel is copied byte for byte, and a result equal to its
crop leaves the photo untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from .align import invert_affine
from .face import Face
from ..errors import InputError

PASTE_FEATHER = 0.12        # width of the seam, as a fraction of the face ellipse's radius


@dataclass
class FaceCrop:
    """An aligned crop of one face, the 2x3 image->crop matrix, and where it may be pasted back."""

    image: np.ndarray                        # uint8 SxSx3
    matrix: np.ndarray                       # 2x3, image -> crop
    face: Face                               # the face, in image coordinates
    region: np.ndarray                       # float32 SxS paste weight: 1 inside the face, 0 outside
    mask: np.ndarray | None = None           # float32 SxS, 1 = anonymize (None = the whole crop)
    image_shape: tuple[int, int] | None = None   # (h, w) of the photo it was cut from
    image_index: int = 0                     # which image of a batch it was cut from
    embedding: np.ndarray | None = None      # a fixed identity to negate (a video track's); None = from the photo
    seed_offset: int | None = None           # the face's own seed is settings.seed + this (a video track's); None = batch seed

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        """Image points -> crop points."""
        pts = np.asarray(pts, np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Crop points -> image points."""
        inv = invert_affine(self.matrix)
        return np.asarray(pts, np.float64) @ inv[:, :2].T + inv[:, 2]

    @property
    def kps(self) -> np.ndarray:
        """The five landmarks in crop coordinates."""
        return self.to_crop(self.face.kps).astype(np.float32)

    @property
    def landmarks68(self) -> np.ndarray | None:
        """The 68 landmarks in crop coordinates, when the detector gave them."""
        lm = self.face.landmarks68
        return None if lm is None else self.to_crop(lm).astype(np.float32)

    def face_in_crop(self) -> Face:
        """The face in crop coordinates: its detected box carried by the crop's similarity transform (same
        centre, scaled sides, upright as the crop), so a recognizer sees the framing of a detection on the crop."""
        x1, y1, x2, y2 = (float(v) for v in self.face.bbox)
        centre = self.to_crop(np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]))[0]
        scale = float(np.sqrt(abs(np.linalg.det(np.asarray(self.matrix, np.float64)[:, :2]))))
        hw, hh = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
        box = np.array([centre[0] - hw, centre[1] - hh, centre[0] + hw, centre[1] + hh], np.float32)
        lm = self.face.landmarks
        return replace(self.face, bbox=box, kps=self.kps,
                       landmarks=None if lm is None else self.to_crop(lm).astype(np.float32))


# ------------------------------------------------------------------------------------------------ warping
def _h(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return m if m.shape == (3, 3) else np.vstack([m[:2], [0.0, 0.0, 1.0]])


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _warp(src: np.ndarray, m: np.ndarray, size: tuple[int, int], resample=Image.BICUBIC,
          pad: str = "symmetric") -> np.ndarray:
    """Warp ``src`` (uint8 HxW[xC] or float32 HxW) by ``m`` (source -> output) into ``size`` (w, h).

    Only the part of ``src`` the output sees is touched: it is cut out, shrunk first with a box filter
    when ``m`` minifies by more than 2x (no aliasing on large faces), padded where the output reaches
    beyond ``src`` (``symmetric``: mirrored, ``edge``, or ``constant`` zeros), then resampled.
    """
    m = _h(m)
    w, h = int(size[0]), int(size[1])
    H, W = src.shape[:2]
    inv = np.linalg.inv(m)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ inv.T
    lo, hi = np.floor(corners[:, :2].min(0)) - 3, np.ceil(corners[:, :2].max(0)) + 3
    cx0, cy0 = int(np.clip(lo[0], 0, W - 1)), int(np.clip(lo[1], 0, H - 1))
    cx1, cy1 = int(np.clip(hi[0], cx0 + 1, W)), int(np.clip(hi[1], cy0 + 1, H))
    sub = src[cy0:cy1, cx0:cx1]
    m = m @ _translate(cx0, cy0)                                  # sub -> output
    lo, hi = lo - [cx0, cy0], hi - [cx0, cy0]
    k = int(np.floor(1.0 / max(np.sqrt(abs(np.linalg.det(m[:2, :2]))), 1e-9)))   # source px per output px
    pil = Image.fromarray(np.ascontiguousarray(sub))
    if k >= 2:                                                    # box-filter shrink by an integer factor
        pil = pil.reduce(k)
        m = m @ np.diag([k, k, 1.0])
        lo, hi = np.floor(lo / k) - 1, np.ceil(hi / k) + 1
    arr = np.asarray(pil)
    pads = ((max(0, int(-lo[1])), max(0, int(hi[1] - arr.shape[0]))),
            (max(0, int(-lo[0])), max(0, int(hi[0] - arr.shape[1]))))
    if any(p for pair in pads for p in pair):
        widths = pads + (((0, 0),) if arr.ndim == 3 else ())
        arr = np.pad(arr, widths, mode=pad) if pad != "constant" else np.pad(arr, widths)
        m = m @ _translate(-pads[1][0], -pads[0][0])
    inv = np.linalg.inv(m)
    out = Image.fromarray(np.ascontiguousarray(arr)).transform((w, h), Image.AFFINE, data=tuple(inv[:2].reshape(-1)),
                                                               resample=resample)
    return np.asarray(out)


def warp_float(mask: np.ndarray, m: np.ndarray, size: tuple[int, int], edge: bool = False) -> np.ndarray:
    """Bilinear warp of a float32 HxW mask; beyond the mask 0 (or its edge values with ``edge``)."""
    return _warp(np.asarray(mask, np.float32), m, size, Image.BILINEAR, "edge" if edge else "constant")


# ------------------------------------------------------------------------------------------------ framing
def crop_matrix(kps: np.ndarray, size: int = 512, zoom: float = 1.0, bbox: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 image -> crop matrix of the FFHQ framing for a face with landmarks ``kps`` (5x2)."""
    if zoom <= 0:
        raise InputError(f"zoom must be > 0, got {zoom}")
    le, re, _, lm, rm = np.asarray(kps, np.float64)
    eyes, mouth = (le + re) / 2, (lm + rm) / 2
    e2e, e2m = re - le, mouth - eyes
    x = e2e + np.array([e2m[1], -e2m[0]])
    n = np.linalg.norm(x)
    half = max(2.0 * np.linalg.norm(e2e), 1.8 * np.linalg.norm(e2m))
    if n < 1e-6 or half < 1.0:                                    # degenerate landmarks: frame the box
        if bbox is None:
            raise InputError("the face's landmarks are degenerate (all in one point) and it has no box")
        x, n = np.array([1.0, 0.0]), 1.0
        half = max(float(max(bbox[2] - bbox[0], bbox[3] - bbox[1])), 2.0)
        eyes, e2m = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]), np.zeros(2)
    u = x / n
    centre = eyes + 0.1 * e2m
    s = size / (2.0 * half * zoom)
    rot = np.array([[u[0], u[1]], [-u[1], u[0]]])
    m = np.zeros((2, 3))
    m[:, :2] = s * rot
    m[:, 2] = size / 2.0 - s * rot @ centre
    return m


def face_region(size: int, kps_crop: np.ndarray, feather: float = PASTE_FEATHER,
                landmarks_crop: np.ndarray | None = None) -> np.ndarray:
    """Paste weight in crop coordinates: an ellipse from forehead to chin, 1 inside, feathered inward to
    exactly 0 at its edge and at the crop's border. With 68 landmarks the ellipse grows until all of
    them get the full weight."""
    kps = np.asarray(kps_crop, np.float64)
    eyes, mouth = kps[:2].mean(0), kps[3:].mean(0)
    d = max(np.linalg.norm(mouth - eyes), 1e-6)
    down = (mouth - eyes) / d
    right = np.array([down[1], -down[0]])
    turn = (kps[2] - (eyes + mouth) / 2) @ right                 # a turned head lies opposite its nose
    centre = eyes + 0.3 * d * down - 1.0 * turn * right
    ry, rx = 1.7 * d, max(1.3 * np.linalg.norm(kps[1] - kps[0]), 1.0 * d)
    feather = float(np.clip(feather, 1e-3, 0.9))
    if landmarks_crop is not None:
        rel = np.asarray(landmarks_crop, np.float64) - centre
        r = np.sqrt((rel @ right / rx) ** 2 + (rel @ down / ry) ** 2).max()
        grow = max(1.0, r / (1.0 - feather) * 1.02)
        rx, ry = rx * grow, ry * grow
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    rel = np.stack([xx - centre[0], yy - centre[1]], -1)
    r = np.sqrt((rel @ right / rx) ** 2 + (rel @ down / ry) ** 2)
    t = np.clip((1.0 - r) / feather, 0, 1)
    border = max(2.0, 0.02 * size)                               # fade out at the crop's own edge too
    edge = np.minimum(np.minimum(xx, size - xx), np.minimum(yy, size - yy))
    t = t * np.clip((edge - 1.0) / border, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)                # smoothstep: exactly 0 outside


def _soften_outside(crop: np.ndarray, m: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Where the crop reaches beyond the photo it shows the photo mirrored; fade that towards a strong
    blur with the distance from the photo's edge (as the FFHQ alignment does), so that a face cut by
    the edge does not meet a crisp mirror image of itself."""
    size = crop.shape[0]
    inv = invert_affine(m)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    x = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    h, w = image_hw
    out_x = np.maximum(np.maximum(-x, x - w), 0)
    out_y = np.maximum(np.maximum(-y, y - h), 0)
    dist = np.sqrt(out_x ** 2 + out_y ** 2) * np.sqrt(abs(np.linalg.det(m[:, :2])))   # in crop pixels
    if not np.any(dist > 0):
        return crop
    from PIL import ImageFilter
    blurred = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(size / 24)), np.float32)
    t = np.clip(dist / (0.1 * size), 0, 1)[..., None]
    return np.round(crop * (1 - t) + blurred * t).astype(np.uint8)


def crop_face(image: np.ndarray, face: Face, size: int = 512, zoom: float = 1.0,
              feather: float = PASTE_FEATHER) -> FaceCrop:
    """The similarity-aligned ``size`` x ``size`` crop of ``face`` (FFHQ framing at ``zoom`` 1.0)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"crop_face needs an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    m = crop_matrix(face.kps, size, zoom, face.bbox)
    crop = _soften_outside(_warp(image, m, (size, size), Image.BICUBIC, "symmetric"), m, image.shape[:2])
    lm = None if face.landmarks68 is None else np.asarray(face.landmarks68, np.float64) @ m[:, :2].T + m[:, 2]
    kps_crop = np.asarray(face.kps, np.float64) @ m[:, :2].T + m[:, 2]
    return FaceCrop(image=crop, matrix=m, face=face, region=face_region(size, kps_crop, feather, lm),
                    image_shape=tuple(image.shape[:2]))


def aligned_face_area(height: int, width: int) -> np.ndarray:
    """Bool HxW: where the face lies in an aligned crop of that size (FFHQ framing at zoom 1, as ``crop_face``
    makes): the paste region of a frontal template face whose eye distance equals its eyes-to-mouth distance.
    The face area of a crop given without its landmarks; a non-square image holds the square crop centred."""
    size = min(int(height), int(width))
    d = size / 4.0                                    # crop_matrix: half-width 2 x eye distance = size / 2
    c, ey = size / 2.0, size / 2.0 - 0.1 * d          # the crop centre lies 0.1 eyes-to-mouth below the eyes
    kps = np.array([[c - d / 2, ey], [c + d / 2, ey], [c, ey + 0.55 * d], [c - 0.4 * d, ey + d], [c + 0.4 * d, ey + d]])
    out = np.zeros((int(height), int(width)), bool)
    y0, x0 = (int(height) - size) // 2, (int(width) - size) // 2
    out[y0:y0 + size, x0:x0 + size] = face_region(size, kps) > 0.5
    return out


# ------------------------------------------------------------------------------------------------ pasting
def region_weights(crop: FaceCrop, image_shape: tuple[int, ...]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """``((x0, y0, x1, y1), weight)``: the paste weight of ``crop`` in image coordinates, inside the
    smallest box of the image that holds all of it (weight is float32 (y1-y0)x(x1-x0); empty box if the
    region lies outside the image)."""
    h, w = image_shape[:2]
    ys, xs = np.nonzero(crop.region > 0)
    if len(xs) == 0:
        return (0, 0, 0, 0), np.zeros((0, 0), np.float32)
    inv = invert_affine(crop.matrix)
    pts = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1],
                    [xs.max() + 1, ys.max() + 1]], np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = max(0, int(np.floor(pts[:, 0].min())) - 1), max(0, int(np.floor(pts[:, 1].min())) - 1)
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + 1), min(h, int(np.ceil(pts[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0), np.zeros((0, 0), np.float32)
    to_box = _translate(-x0, -y0) @ _h(inv)                       # crop -> box
    weight = np.clip(warp_float(crop.region, to_box, (x1 - x0, y1 - y0)), 0, 1)
    return (x0, y0, x1, y1), weight


def region_in_image(image_shape: tuple[int, ...], crop: FaceCrop) -> np.ndarray:
    """Boolean HxW map of the pixels ``paste_face`` may change for this crop."""
    out = np.zeros(image_shape[:2], bool)
    (x0, y0, x1, y1), weight = region_weights(crop, image_shape)
    out[y0:y1, x0:x1] = weight > 0
    return out


def paste_face(image: np.ndarray, crop: FaceCrop, result: np.ndarray) -> np.ndarray:
    """Blend ``result`` (an anonymized version of ``crop.image``) back into ``image`` inside the face region.

    Only pixels where the region's weight is > 0 change; every other pixel is copied byte for byte.
    A result equal to the crop returns ``image`` itself, unchanged.
    """
    result = np.asarray(result)
    if result.shape != crop.image.shape or result.dtype != np.uint8:
        raise InputError(f"the result is {result.dtype} {result.shape}, the crop uint8 {crop.image.shape}")
    if np.array_equal(result, crop.image):
        return image
    (x0, y0, x1, y1), weight = region_weights(crop, image.shape)
    if weight.size == 0:
        return image
    to_box = _translate(-x0, -y0) @ _h(invert_affine(crop.matrix))
    warped = _warp(result, to_box, (x1 - x0, y1 - y0), Image.BICUBIC, "edge").astype(np.float32)
    patch = image[y0:y1, x0:x1]
    wgt = weight[..., None]
    blended = np.clip(np.round(patch + wgt * (warped - patch)), 0, 255).astype(np.uint8)
    blended[weight <= 0] = patch[weight <= 0]
    out = image.copy()
    out[y0:y1, x0:x1] = blended
    return out


def paste_faces(image: np.ndarray, crops_and_results) -> np.ndarray:
    """Paste several ``(crop, result)`` pairs in the given order (later ones on top where they overlap)."""
    out = image
    for crop, result in crops_and_results:
        out = paste_face(out, crop, result)
    return out
