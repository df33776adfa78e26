"""The method-neutral crop anonymizer: any method's batch of face crops as a ``nullface.privacy.photo`` anonymizer.

A method gives ``crops_fn(crops, conditions, settings) -> uint8 results`` (one batch) and its retry schedule
``escalate``; this module adds what every method shares: a per-face condition (e.g. the face's own ArcFace
identity), one batch per call, per-face errors for the photo's fail-closed policy, and the re-identification
audit with retries (``nullface.privacy.audit.audit_crops``). ``crop_audit`` is the audit all methods use.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ModelFileError
from ..faces.identity import BUFFALO_HINT, FaceModels

Callback = Optional[Callable[[dict], None]]
# crops_fn(crops, conditions, settings) -> one uint8 result per crop (one batch)
CropsFn = Callable[[list, list, Any], list]


def arcface_identity(face_models: FaceModels) -> Callable[[np.ndarray, Any], np.ndarray]:
    """``f(image, crop) -> e``: the face's own ArcFace embedding, taken from the photo at its detected landmarks,
    or the crop's fixed ``embedding`` when it carries one (a video track's). ``f.embed(image, face)`` embeds
    a face (what ``nullface.privacy.video`` chooses a track's identity with)."""
    if face_models is None or face_models.arcface is None:
        raise ModelFileError("anonymizing faces needs ArcFace (w600k_r50.onnx in buffalo_l). " + BUFFALO_HINT)

    def identity(image, crop):
        given = getattr(crop, "embedding", None)
        return face_models.arcface.embed(image, crop.face.kps) if given is None else given
    identity.embed = lambda image, face: face_models.arcface.embed(image, face.kps)
    return identity


def crop_anonymizer(crops_fn: CropsFn, settings, escalate: Callable, *,
                    identity: Optional[Callable[[np.ndarray, Any], Any]] = None, audit=None, max_tries: int = 1,
                    callback: Callback = None, many_images: bool = False):
    """A method's ``crops_fn`` as a ``nullface.privacy.photo`` anonymizer: ``f(image, crops) -> results``.

    ``identity(image, crop)`` gives each face's condition (None: no condition); a face whose condition
    fails gets that error, and the others go on. The faces of one call run as one batch; if it fails, each
    of its faces gets the error, so the photo's fail-closed policy applies. With ``audit``
    (``f(original_crop, result, crop) -> FaceAudit``) a face still re-identified is retried with
    ``escalate(settings, k)`` up to ``max_tries`` in all, then becomes an error. Audits are kept in
    ``f.audits`` (face index in call order); ``f.keep`` is the method's default kept regions. ``callback``
    gets the method's progress, plus ``{"phase": "expect", "work": n}`` when a retry adds n image-steps.
    ``many_images``: the method's result for a face does not depend on the other faces of its batch (its noise
    is drawn per face), so faces of several photos may share a call: ``f([photo per crop], crops)``
    (``nullface.privacy.photo.anonymize_photos``). A batch that fails is retried face by face, so that only
    the faces that fail, fail.
    """
    from ..privacy.audit import audit_crops

    def one(crop, condition, s):
        try:
            return crops_fn([crop], [condition], s)[0]
        except Exception as exc:                # this face fails; the policy decides
            return exc

    def run(image, crops: list) -> list:
        images = image if isinstance(image, (list, tuple)) else [image] * len(crops)   # one photo per crop
        results: list = [None] * len(crops)
        ok, conditions = [], []
        for i, c in enumerate(crops):
            try:
                conditions.append(None if identity is None else identity(images[i], c))
                ok.append(i)
            except Exception as exc:            # this face fails; the others go on
                results[i] = exc
        if ok:
            try:
                outs = crops_fn([crops[i] for i in ok], conditions, settings)
            except Exception as exc:            # the batch failed: each face alone, so only failing faces fail
                if len(ok) == 1:
                    outs = [exc]
                else:
                    outs = [one(crops[i], cond, settings) for i, cond in zip(ok, conditions)]
            for i, o in zip(ok, outs):
                results[i] = o
        if audit is None:
            return results
        condition = dict(zip(ok, conditions))
        return audit_crops(results, crops, audit, settings, max_tries, record=run.audits, escalate=escalate,
                           callback=callback, retry=lambda i, s: crops_fn([crops[i]], [condition[i]], s)[0])

    run.audits = []
    run.embed = getattr(identity, "embed", None)   # a video track's identity (``nullface.privacy.video``)
    run.keep = type(settings).KEEP          # the method's default kept regions (PhotoOptions.keep = None)
    run.audited = audit is not None        # every anonymized face passed the audit
    run.many_images = bool(many_images)
    return run


def crop_audit(recognizers: Sequence):
    """An audit for ``crop_anonymizer``: compares the original and anonymized crop of one face.

    The face is measured in crop coordinates (``FaceCrop.face_in_crop``: its detected box carried by the
    crop's similarity transform), so the recognizer sees the same framing as a detection on the crop; both
    sides are measured with the same geometry (``nullface.privacy.audit.paired_geometry``).
    """
    from ..privacy.audit import audit_face

    def audit(original: np.ndarray, result: np.ndarray, crop) -> object:
        return audit_face(original, result, crop.face_in_crop(), recognizers)
    return audit
