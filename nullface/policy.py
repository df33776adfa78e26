"""Fail closed: what happens to a face that was found but could not be anonymized, and to no face at all."""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image, ImageFilter

from .errors import FaceFailedError, InputError, NoFaceError

log = logging.getLogger("nullface")

ON_FAILURE = ("error", "blur", "pixelate", "keep")
ON_NO_FACE = ("error", "pass")


def check_policy(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown {what} policy '{value}'; choose one of {', '.join(allowed)}")
    return value


def obscure(image: np.ndarray, region: np.ndarray, how: str, face_size: float) -> np.ndarray:
    """Blur or pixelate ``image`` where ``region`` (bool HxW) is set, strongly enough to hide identity.

    Pixelation uses blocks of 1/6 of the face size (about 6 blocks across the face); blur a Gaussian of
    sigma 1/5 of the face size. Pixels outside the region are not touched.
    """
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return image
    pad = int(face_size) + 2
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)
    patch = Image.fromarray(image[y0:y1, x0:x1])
    if how == "pixelate":
        block = max(2, int(face_size / 6))
        small = patch.resize((max(1, patch.width // block), max(1, patch.height // block)), Image.BOX)
        done = np.asarray(small.resize(patch.size, Image.NEAREST))
    elif how == "blur":
        done = np.asarray(patch.filter(ImageFilter.GaussianBlur(radius=max(2.0, face_size / 5))))
    else:
        raise InputError(f"cannot obscure with '{how}'")
    out = image.copy()
    sub = region[y0:y1, x0:x1]
    out[y0:y1, x0:x1][sub] = done[sub]
    return out


def apply_failure(image: np.ndarray, region: np.ndarray, face_size: float, policy: str, where: str,
                  reason: str) -> np.ndarray:
    """Apply ``policy`` to one failed face; ``error`` raises, ``keep`` warns loudly."""
    if policy == "error":
        raise FaceFailedError(f"{where} could not be anonymized: {reason}. Nothing was returned "
                              "(policy 'error'); choose blur, pixelate or keep to go on.")
    if policy == "keep":
        log.warning("!!! %s could not be anonymized (%s) and is KEPT UNCHANGED because the failure policy is "
                    "'keep': this output still shows that person's face !!!", where, reason)
        return image
    log.warning("%s could not be anonymized (%s): %s applied instead", where, reason, policy)
    return obscure(image, region, policy, face_size)


def no_face(image_name: str, policy: str) -> None:
    """Raise for an image without faces unless the policy passes it through (it is still reported)."""
    if policy == "error":
        raise NoFaceError(f"no face found in {image_name}; nothing was anonymized (policy 'error'; "
                          "choose 'pass' to pass such images through, reported)")
    log.warning("no face found in %s: passed through unchanged (policy 'pass')", image_name)
