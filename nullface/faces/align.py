"""Similarity alignment of faces from five landmarks (the ArcFace template)."""
from __future__ import annotations

import numpy as np
from PIL import Image

# ArcFace's 112x112 template: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping points ``src`` onto ``dst``; a 2x3 matrix."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / n
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(cov) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s0 ** 2).sum() / n
    scale = (d * np.diag(sign)).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def warp_affine(image: np.ndarray, m: np.ndarray, size: tuple[int, int],
                resample: int = Image.BILINEAR) -> np.ndarray:
    """Warp an HxWxC uint8 image with the 2x3 matrix ``m`` (source -> output) into ``size`` (w, h)."""
    inv = invert_affine(m)
    pil = Image.fromarray(image)
    out = pil.transform(size, Image.AFFINE, data=tuple(inv.reshape(-1)), resample=resample)
    return np.asarray(out)


def arcface_matrix(kps: np.ndarray, size: int = 112) -> np.ndarray:
    """The 2x3 matrix that maps a face with landmarks ``kps`` (5x2) onto the ArcFace template."""
    return similarity_transform(kps, ARCFACE_TEMPLATE * (size / 112.0))


def arcface_crop(image: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """The aligned ``size``x``size`` crop that ArcFace expects, from an RGB uint8 image."""
    return warp_affine(image, arcface_matrix(kps, size), (size, size))
