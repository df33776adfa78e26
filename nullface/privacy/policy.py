"""Fail closed: what happens to a face that was found but could not be anonymized, and to no face at all.

Failure policies (``on_failure``):
  ``error``    (default) raise FaceFailedError naming the image and the face; nothing is returned.
  ``blur``     a Gaussian blur with sigma = 1/5 of the face's size over the whole face region.
  ``pixelate`` blocks of 1/6 of the face's size (about 6 blocks across the face) over the face region.
  ``keep``     the face stays as it was, with a loud WARNING in the log and ``failed`` in the report.
No-face policies (``on_no_face``): ``error`` (NoFaceError naming the image) or ``pass`` (the image is
passed through unchanged, logged, reported and counted).

Too little of the face to change: a mask (kept regions, grow/shrink, an external or user mask, 1 = anonymize)
must change at least ``MIN_FACE_SHARE`` of the face's area (``face_share``), in every method; else the face
fails (photos) or the call is refused (arrays).
"""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image, ImageFilter

from ..errors import FaceFailedError, InputError, NoFaceError

log = logging.getLogger("nullface")

ON_FAILURE = ("error", "blur", "pixelate", "keep")

# The smallest share of a face's area that a mask must change (mask >= 0.5, where the methods binarize it).
# Measured on insightface's t1.jpg (6 faces) with dlib's recognizer, replacing the masked part of each face by
# another person's face (the best any method could do inside that mask): masks changing up to 39 % of the face
# (--keep face --grow -2 ... -32) leave every face recognized (distance 0.09-0.48 < 0.6); keeping eyes, brows,
# nose and mouth (72-82 % changed) is borderline (0.51-0.66); the paper's eyes + mouth (87-91 %) passes
# (0.70-0.83). Half the face is the floor below which no method can anonymize; between it and the paper's
# setup the re-identification audit (on by default) decides. docs/privacy.md has the table.
MIN_FACE_SHARE = 0.5
ON_NO_FACE = ("error", "pass")


def face_share(mask: np.ndarray, face: np.ndarray) -> float:
    """The share of the face's area (``face``: bool, same size) that ``mask`` (1 = anonymize) changes."""
    face = np.asarray(face, bool)
    if not face.any():
        return 0.0
    return float((np.asarray(mask, np.float32)[face] >= 0.5).mean())


def too_little_of_the_face(mask: np.ndarray, face: np.ndarray) -> str | None:
    """Why ``mask`` leaves too little of ``face`` to anonymize (share < ``MIN_FACE_SHARE``), else None."""
    share = face_share(mask, face)
    if share >= MIN_FACE_SHARE:
        return None
    if share == 0:
        return "its mask keeps the whole face visible (kept regions / external mask): nothing would be anonymized"
    return (f"its mask changes {share:.1%} of the face, less than the {MIN_FACE_SHARE:.0%} needed to anonymize it "
            "(kept regions, grow/shrink or an external mask keep too much visible)")


def check_mask_shares(masks, what: str = "the mask") -> None:
    """Refuse masks (1 = anonymize; [B,H,W] or [H,W], array or tensor) of aligned face crops given without
    landmarks, that change less than ``MIN_FACE_SHARE`` of the face (``aligned_face_area``)."""
    from ..faces.crop import aligned_face_area
    m = np.asarray(masks.detach().cpu().numpy() if hasattr(masks, "detach") else masks, np.float32)
    m = m[None] if m.ndim == 2 else m
    face = aligned_face_area(*m.shape[-2:])
    for i, one in enumerate(m):
        why = too_little_of_the_face(one, face)
        if why is not None:
            where = f" of image {i}" if len(m) > 1 else ""
            raise InputError(f"{what}{where} anonymizes too little: {why}")


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
