"""Aligned face crops and pasting results back with a feathered seam confined to each face."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .align import ARCFACE_TEMPLATE, invert_affine, similarity_transform
from .detect import DetectedFace

# Template for a loose, FFHQ-like framing: the ArcFace points, zoomed out by ``zoom`` and centred so that
# the eyes-mouth midpoint sits slightly above the middle (face with forehead, chin and some hair).
_T = (ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) / 112.0


def crop_template(size: int, zoom: float = 1.3) -> np.ndarray:
    """Where the five landmarks go in a ``size`` crop."""
    return (_T / zoom + np.array([0.5, 0.5])) * size


@dataclass
class FaceCrop:
    """An aligned crop of one face, the 2x3 image->crop matrix, and where it may be pasted back."""

    image: np.ndarray            # uint8 SxSx3
    matrix: np.ndarray           # 2x3, image -> crop
    face: DetectedFace           # in image coordinates
    region: np.ndarray           # float32 SxS paste weight: 1 inside the face, feathered to 0 at its edge
    mask: np.ndarray | None = None   # float32 SxS, 1 = anonymize (None = the whole crop)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        """Image points -> crop points."""
        pts = np.asarray(pts, np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]


def _warp(image: np.ndarray, m: np.ndarray, size: tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
    """Warp ``image`` by ``m`` (source -> output) into ``size`` (w, h); shrinks first when ``m`` minifies,
    so large faces are not aliased; outside the source, edge pixels are repeated."""
    m = np.asarray(m, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src = image
    if scale < 0.5:                                   # pre-shrink with a proper low-pass filter
        f = max(scale * 1.5, 1.0 / max(src.shape[:2]))
        new = (max(1, int(round(src.shape[1] * f))), max(1, int(round(src.shape[0] * f))))
        fx, fy = new[0] / src.shape[1], new[1] / src.shape[0]
        src = np.asarray(Image.fromarray(src).resize(new, Image.LANCZOS))
        m = m @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
    # pad with edge pixels so that parts of the crop beyond the image see the image's border, not black
    inv = invert_affine(m)
    w, h = size
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ inv[:, :2].T + inv[:, 2]
    lo = np.floor(corners.min(0)).astype(int) - 2
    hi = np.ceil(corners.max(0)).astype(int) + 2
    pad_l, pad_t = max(0, -lo[0]), max(0, -lo[1])
    pad_r, pad_b = max(0, hi[0] - src.shape[1]), max(0, hi[1] - src.shape[0])
    if pad_l or pad_t or pad_r or pad_b:
        pads = ((pad_t, pad_b), (pad_l, pad_r)) + (((0, 0),) if src.ndim == 3 else ())
        src = np.pad(src, pads, mode="edge")
        m = m @ np.array([[1, 0, -pad_l], [0, 1, -pad_t], [0, 0, 1]], np.float64)
    inv = invert_affine(m)
    out = Image.fromarray(src).transform(size, Image.AFFINE, data=tuple(inv.reshape(-1)), resample=resample)
    return np.asarray(out)


def face_region(size: int, kps_crop: np.ndarray, feather: float = 0.12) -> np.ndarray:
    """Paste weight in crop coordinates: an ellipse from forehead to chin, 1 inside, feathered inward to 0."""
    kps = np.asarray(kps_crop, np.float64)
    eyes, mouth = kps[:2].mean(0), kps[3:].mean(0)
    axis = mouth - eyes
    d = max(np.linalg.norm(axis), 1e-6)
    down = axis / d
    right = np.array([down[1], -down[0]])
    centre = eyes + 0.3 * d * down
    ry, rx = 1.7 * d, max(1.3 * np.linalg.norm(kps[1] - kps[0]), 1.0 * d)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    rel = np.stack([xx - centre[0], yy - centre[1]], -1)
    r = np.sqrt((rel @ right / rx) ** 2 + (rel @ down / ry) ** 2)
    t = np.clip((1.0 - r) / max(feather, 1e-6), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)                # smoothstep: exactly 0 outside the ellipse


def crop_face(image: np.ndarray, face: DetectedFace, size: int = 512, zoom: float = 1.3,
              feather: float = 0.12) -> FaceCrop:
    """The similarity-aligned ``size`` x ``size`` crop of ``face`` (FFHQ-like framing)."""
    m = similarity_transform(face.kps, crop_template(size, zoom))
    crop = _warp(image, m, (size, size))
    kps_crop = np.asarray(face.kps, np.float64) @ m[:, :2].T + m[:, 2]
    return FaceCrop(image=crop, matrix=m, face=face, region=face_region(size, kps_crop, feather))


def paste_face(image: np.ndarray, crop: FaceCrop, result: np.ndarray) -> np.ndarray:
    """Blend ``result`` (an anonymized version of ``crop.image``) back into ``image`` inside the face region.

    Only pixels where the region's weight is > 0 change; every other pixel is copied byte for byte.
    An unchanged result leaves the image unchanged.
    """
    if result.shape != crop.image.shape:
        raise ValueError(f"the result is {result.shape}, the crop {crop.image.shape}")
    if np.array_equal(result, crop.image):
        return image
    out = image.copy()
    inv = invert_affine(crop.matrix)                                  # crop -> image
    s = crop.size
    ys, xs = np.nonzero(crop.region > 0)
    if len(xs) == 0:
        return out
    pts = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1],
                    [xs.max() + 1, ys.max() + 1]], np.float64) @ inv[:, :2].T + inv[:, 2]
    h, w = image.shape[:2]
    x0, y0 = max(0, int(np.floor(pts[:, 0].min())) - 1), max(0, int(np.floor(pts[:, 1].min())) - 1)
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + 1), min(h, int(np.ceil(pts[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    box = np.array([[1, 0, -x0], [0, 1, -y0]], np.float64)
    to_box = np.vstack([box, [0, 0, 1]]) @ np.vstack([inv, [0, 0, 1]])   # crop -> box
    size = (x1 - x0, y1 - y0)
    warped = _warp(result, to_box[:2], size).astype(np.float32)
    weight = _warp((crop.region * 65535).astype(np.uint16).astype(np.int32), to_box[:2], size, Image.BILINEAR)
    weight = (np.asarray(weight, np.float32) / 65535.0)[..., None]
    patch = out[y0:y1, x0:x1].astype(np.float32)
    blended = np.clip(np.round(patch + weight * (warped - patch)), 0, 255).astype(np.uint8)
    keep = weight[..., 0] <= 0
    blended[keep] = out[y0:y1, x0:x1][keep]
    out[y0:y1, x0:x1] = blended
    return out


def region_in_image(image_shape: tuple[int, ...], crop: FaceCrop) -> np.ndarray:
    """Boolean HxW map of the pixels ``paste_face`` may change for this crop."""
    h, w = image_shape[:2]
    inv = invert_affine(crop.matrix)
    region = _warp((crop.region * 65535).astype(np.uint16).astype(np.int32),
                   np.vstack([inv, [0, 0, 1]])[:2], (w, h), Image.BILINEAR)
    return np.asarray(region) > 0
