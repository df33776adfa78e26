"""Fail closed: what happens to a face that was found but could not be anonymized, and to no face at all.

Failure policies (``on_failure``):
  ``error``    (default) raise FaceFailedError naming the image and the face; nothing is returned.
  ``blur``     a Gaussian blur with sigma = 1/5 of the face's size over the whole face region.
  ``pixelate`` blocks of 1/6 of the face's size (about 6 blocks across the face) over the face region.
  ``keep``     the face stays as it was, with a loud WARNING in the log and ``failed`` in the report.
No-face policies (``on_no_face``): ``error`` (NoFaceError naming the image) or ``pass`` (the image is
passed through unchanged, logged, reported and counted).
"""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image, ImageFilter

from ..errors import FaceFailedError, InputError, NoFaceError

log = logging.getLogger("nullface")

ON_FAILURE = ("error", "blur", "pixelate", "keep")
ON_NO_FACE = ("error", "pass")


def check_policy(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown {what} policy '{value}'; choose one of {', '.join(allowed)}")
    return value


def obscure_patch(patch: np.ndarray, how: str, face_size: float) -> np.ndarray:
    """``patch`` (uint8 HxWx3) blurred or pixelated strongly enough to hide a face of ``face_size`` px."""
    pil = Image.fromarray(patch)
    if how == "pixelate":
        block = max(2, int(round(face_size / 6)))
        small = pil.resize((max(1, -(-pil.width // block)), max(1, -(-pil.height // block))), Image.BOX)
        return np.asarray(small.resize((small.width * block, small.height * block), Image.NEAREST))[
            :patch.shape[0], :patch.shape[1]]
    if how == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=max(2.0, face_size / 5))))
    raise InputError(f"cannot obscure with '{how}' (blur or pixelate)")


def obscure(image: np.ndarray, region: np.ndarray, how: str, face_size: float,
            box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Blur or pixelate ``image`` where ``region`` (bool, HxW or the size of ``box``) is set.

    ``box`` (x0, y0, x1, y1) says where a box-sized ``region`` lies. Pixels outside the region are
    not touched; the blur/blocks are computed from a margin around it so that its edge is obscured too.
    """
    h, w = image.shape[:2]
    if box is None:
        ys, xs = np.nonzero(region)
        if len(xs) == 0:
            return image
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        region = region[box[1]:box[3], box[0]:box[2]]
    x0, y0, x1, y1 = box
    if not np.any(region):
        return image
    pad = int(face_size) + 2
    px0, py0, px1, py1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    done = obscure_patch(np.ascontiguousarray(image[py0:py1, px0:px1]), how, face_size)
    out = image.copy()
    target = out[y0:y1, x0:x1]
    target[region] = done[y0 - py0:y1 - py0, x0 - px0:x1 - px0][region]
    return out


def apply_failure(image: np.ndarray, region: np.ndarray, face_size: float, policy: str, where: str,
                  reason: str, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Apply ``policy`` to one failed face (``region``: bool, see ``obscure``); ``error`` raises, ``keep``
    warns loudly and returns the image unchanged."""
    check_policy(policy, ON_FAILURE, "failure")
    if policy == "error":
        raise FaceFailedError(f"{where} could not be anonymized: {reason}. Nothing was returned "
                              "(policy 'error'); choose blur, pixelate or keep to go on.")
    if policy == "keep":
        log.warning("!!! %s could not be anonymized (%s) and is KEPT UNCHANGED because the failure policy is "
                    "'keep': this output still shows that person's face !!!", where, reason)
        return image
    log.warning("%s could not be anonymized (%s): %s applied instead", where, reason, policy)
    return obscure(image, region, policy, face_size, box)


def no_face(image_name: str, policy: str) -> None:
    """Raise for an image without faces unless the policy passes it through (it is still reported)."""
    check_policy(policy, ON_NO_FACE, "no-face")
    if policy == "error":
        raise NoFaceError(f"no face found in {image_name}; nothing was anonymized (policy 'error'; "
                          "choose 'pass' to pass such images through, reported)")
    log.warning("no face found in %s: passed through unchanged (policy 'pass')", image_name)
