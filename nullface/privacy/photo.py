"""Whole photos: find every face, crop, anonymize in batches, paste back; fail closed.

``anonymize_photo(image, detector, anonymizer, options)`` is the one entry point. The anonymizer is any
``f(image_rgb, crops) -> [anonymized crop | Exception, ...]`` (the diffusion engine's is
``nullface.methods.nullface.pipeline.crop_anonymizer``); it receives all faces of a round in one call (``options.batch``
at most) and each ``FaceCrop`` carries its anonymization mask (``crop.mask``, 1 = anonymize). An anonymizer
with ``audited = True`` checks every face with the re-identification audit and fails those it rejects, so
each anonymized face is reported ``audit: "passed"``; with any other anonymizer ``"not audited"``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..faces.crop import PASTE_FEATHER, FaceCrop, crop_face, paste_face, region_weights
from ..faces.detect import select_faces, split_ignored
from ..faces.face import Face
from ..errors import FaceFailedError, InputError
from ..faces.imageio import photo_array
from .audit import NOT_AUDITED
from .policy import ON_FAILURE, ON_NO_FACE, apply_failure, check_policy, no_face, too_little_of_the_face
from ..faces.regions import MASK_MEANS, crop_anonymize_mask, parse_regions

log = logging.getLogger("nullface")

# anonymizer(image, crops) -> one anonymized crop (uint8, same size) or an Exception per crop
Anonymizer = Callable[[np.ndarray, list[FaceCrop]], list["np.ndarray | Exception"]]


@dataclass(frozen=True)
class PhotoOptions:
    """How a photo is processed (the method's own parameters live in NullFaceSettings)."""

    crop_size: int = 512
    zoom: float = 1.0                 # framing: 1.0 = FFHQ/CelebA-HQ (the paper's inputs); larger shows more
    keep: tuple[str, ...] | None = None   # regions kept visible; () = whole face; None = the method's default
                                          # (its settings' KEEP, carried by its anonymizer as ``keep``)
    grow: float = 0                   # grow (+) / shrink (-) the kept regions, crop pixels
    feather: float = 0.0              # soft edge of the kept regions, crop pixels (0 = hard, as the paper)
    on_failure: str = "error"         # error | blur | pixelate | keep
    on_no_face: str = "error"         # error | pass
    batch: int = 4                    # faces per anonymizer call
    paste_feather: float = PASTE_FEATHER  # width of the seam, as a fraction of the face ellipse
    min_face_size: float = 0          # faces whose box is smaller (px, shorter side) are ignored (reported)
    score_threshold: float | None = None  # faces scoring lower (detector's own scale) are ignored (reported)
    max_faces: int = 0                # 0 = all; faces beyond the largest max_faces are ignored (reported)
    external_mask: np.ndarray | None = field(default=None, compare=False, repr=False)  # image size, 0..1
    external_mask_means: str = "keep"     # keep: its white areas stay visible; anonymize: only there

    def validate(self) -> "PhotoOptions":
        check_policy(self.on_failure, ON_FAILURE, "failure")
        check_policy(self.on_no_face, ON_NO_FACE, "no-face")
        parse_regions(self.keep)
        if self.crop_size < 64 or self.crop_size % 8:
            raise InputError(f"crop_size must be a multiple of 8 and >= 64, got {self.crop_size}")
        if self.batch < 1:
            raise InputError("batch must be >= 1")
        if not self.zoom > 0:
            raise InputError(f"zoom must be > 0, got {self.zoom}")
        if self.max_faces < 0 or self.min_face_size < 0:
            raise InputError("max_faces and min_face_size must be >= 0")
        if self.external_mask_means not in MASK_MEANS:
            raise InputError(f"external_mask_means must be one of {MASK_MEANS}, got '{self.external_mask_means}'")
        return self


@dataclass
class FaceOutcome:
    """What became of one face to anonymize (the face itself is ``face``)."""

    index: int                        # its place among the photo's faces to anonymize (largest first)
    face: Face
    status: str                       # "anonymized" | "failed" | "not_attempted" (the file failed before)
    policy: str | None = None         # the failure policy applied, if any
    error: str | None = None
    audit: str | None = None          # an anonymized face: "passed" (re-ID audit) or "not audited"

    @property
    def bbox(self) -> np.ndarray:
        return self.face.bbox

    @property
    def score(self) -> float:
        return self.face.score

    def to_dict(self) -> dict:
        return {"index": self.index, "bbox": self.face.box_list(), "score": round(float(self.face.score), 4),
                "status": self.status, "policy": self.policy, "error": self.error, "audit": self.audit}


@dataclass
class PhotoResult:
    image: np.ndarray                 # same layout as the input (gray, RGB, or RGBA with the alpha kept)
    faces: list[FaceOutcome] = field(default_factory=list)
    detector: str = ""
    ignored: list[Face] = field(default_factory=list)   # faces left as they are, each with its reason (.ignored)

    @property
    def found(self) -> int:
        return len(self.faces)

    @property
    def anonymized(self) -> int:
        return sum(f.status == "anonymized" for f in self.faces)

    @property
    def failed(self) -> int:
        return sum(f.status == "failed" for f in self.faces)

    @property
    def ignored_count(self) -> int:
        return len(self.ignored)

    @property
    def counts(self) -> dict:
        policies = {}
        for f in self.faces:
            if f.policy:
                policies[f.policy] = policies.get(f.policy, 0) + 1
        return {"faces_found": self.found, "anonymized": self.anonymized, "failed": self.failed,
                "policies": policies, "ignored": len(self.ignored)}

    def to_dict(self) -> dict:
        return {**self.counts, "detector": self.detector, "faces": [f.to_dict() for f in self.faces],
                "ignored_faces": [f.to_dict() for f in self.ignored]}


def as_rgb(image: np.ndarray, mode: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Any uint8 grayscale / RGB / RGBA array or PIL image -> (RGB, alpha or None).

    A 4-channel array needs its ``mode``: ``"RGBA"`` or ``"CMYK"`` (see ``nullface.faces.imageio.photo_array``)."""
    a = photo_array(image, mode)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, -1), None
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, -1), None
    if a.shape[2] == 4:                          # RGBA: photo_array converted CMYK already
        return np.ascontiguousarray(a[..., :3]), a[..., 3]
    return np.ascontiguousarray(a), None


def _restore_layout(out: np.ndarray, original: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The RGB result in the input's layout: gray stays gray (ITU-R 601 luma; unchanged pixels are
    exact), RGBA gets its alpha back."""
    if alpha is not None:
        return np.concatenate([out, alpha[..., None]], -1)
    if original.ndim == 2 or original.shape[2] == 1:
        from PIL import Image
        gray = np.asarray(Image.fromarray(out).convert("L"))
        return gray if original.ndim == 2 else gray[..., None]
    return out


def prepare_crop(image: np.ndarray, face: Face, options: PhotoOptions,
                 keep_mask: np.ndarray | None = None) -> FaceCrop:
    """The aligned crop of one face with its anonymization mask (1 = anonymize): kept regions,
    ``options.external_mask`` and ``keep_mask`` (image size, 1 = keep visible) applied."""
    crop = crop_face(image, face, options.crop_size, options.zoom, options.paste_feather)
    mask = crop_anonymize_mask(crop, options.keep, options.grow, options.feather)
    if options.external_mask is not None:
        from ..faces.regions import combine_external, external_to_crop
        mask = combine_external(mask, external_to_crop(options.external_mask, crop), options.external_mask_means)
    if keep_mask is not None:
        from ..faces.regions import combine_external, external_to_crop
        mask = combine_external(mask, external_to_crop(keep_mask, crop), "keep")
    crop.mask = mask
    return crop


def _rounds(boxes: Sequence[Sequence[float]]) -> list[list[int]]:
    """Group faces so that no two faces of one round have overlapping paste regions (largest first).

    Faces of a later round are cropped from the image after the earlier rounds were pasted, so a crop
    never carries a neighbour's original face back into the photo.
    """
    left, rounds = list(range(len(boxes))), []
    while left:
        taken, rest = [], []
        for i in left:
            b = boxes[i]
            if any(not (b[2] <= boxes[j][0] or boxes[j][2] <= b[0] or b[3] <= boxes[j][1] or boxes[j][3] <= b[1])
                   for j in taken):
                rest.append(i)
            else:
                taken.append(i)
        rounds.append(taken)
        left = rest
    return rounds


def select(faces: Sequence[Face], options: PhotoOptions) -> tuple[list[Face], list[Face]]:
    """(faces to anonymize, ignored faces), both largest first (``nullface.faces.detect.select_faces``)."""
    return split_ignored(select_faces(list(faces), options.min_face_size, options.max_faces, options.score_threshold))


def _warn_ignored(name: str, ignored: Sequence[Face]) -> None:
    if ignored:
        log.warning("%s: %d face(s) IGNORED, left as they are: %s", name, len(ignored),
                    "; ".join(f"{[int(v) for v in f.bbox]} {f.ignored}" for f in ignored))


def _nothing_to_anonymize(crop: FaceCrop) -> str | None:
    """Why the crop's mask leaves too little of the face (its landmark region) to anonymize, else None
    (``nullface.privacy.policy.too_little_of_the_face``)."""
    if crop.mask is None:
        return None
    from ..faces.regions import face_landmarks, region_mask
    face = region_mask(crop.to_crop(face_landmarks(crop.face)), (crop.size, crop.size), ["face"]) > 0.5
    return too_little_of_the_face(crop.mask, face) if face.any() else None


def _check_result(res, crop: FaceCrop) -> str | None:
    """None when ``res`` is a usable anonymized crop, else why not."""
    if isinstance(res, BaseException):
        return f"{type(res).__name__}: {res}"
    if not isinstance(res, np.ndarray):
        return f"the anonymizer returned {type(res).__name__}, not an image"
    if res.shape != crop.image.shape or res.dtype != np.uint8:
        return f"the anonymizer returned {res.dtype} {res.shape}, expected uint8 {crop.image.shape}"
    return None


def anonymize_photo(image: np.ndarray, detector, anonymizer: Anonymizer, options: PhotoOptions = PhotoOptions(),
                    name: str = "the image", keep_mask: np.ndarray | None = None,
                    mode: str | None = None) -> PhotoResult:
    """Detect every face, anonymize each with its own identity, paste back.

    Pixels outside the faces' paste regions stay byte-identical. ``keep_mask`` (image size, 1 = keep
    visible) adds to the kept regions. ``image`` is a uint8 array or a PIL image; a 4-channel array needs
    ``mode="RGBA"`` or ``"CMYK"`` (CMYK comes back as RGB). A face whose anonymization fails gets ``options.on_failure``;
    an image without faces ``options.on_no_face``. Faces are pasted smallest first (larger, usually
    nearer, faces end on top).
    """
    options.validate()
    if options.keep is None:                 # the method's own default; an anonymizer without one: the whole face
        options = replace(options, keep=tuple(getattr(anonymizer, "keep", ())))
    image = photo_array(image, mode)
    rgb, alpha = as_rgb(image, "RGBA")
    for what, m in (("keep mask", keep_mask), ("external mask", options.external_mask)):
        if m is not None and np.asarray(m).shape[:2] != rgb.shape[:2]:
            raise InputError(f"the {what} is {np.asarray(m).shape[:2]}, the image {rgb.shape[:2]} ({name})")
    det_name = getattr(detector, "name", type(detector).__name__)
    audited = bool(getattr(anonymizer, "audited", False))   # the anonymizer fails every face its audit rejects
    faces, ignored = select(list(detector.detect(rgb)), options)
    _warn_ignored(name, ignored)
    result = PhotoResult(image=image, detector=det_name, ignored=list(ignored))
    if not faces:
        if not ignored:
            no_face(name, options.on_no_face)
        return result
    log.info("%s: %d face(s) found (%s)", name, len(faces), det_name)
    out = rgb
    crops0 = [prepare_crop(rgb, f, options, keep_mask) for f in faces]
    geometry = [region_weights(c, rgb.shape) for c in crops0]
    outcomes: dict[int, FaceOutcome] = {}
    produced: dict[int, object] = {}
    refused: list[str] = []                  # faces failed under the 'error' policy
    for rnd in _rounds([g[0] for g in geometry]):
        if refused:                          # the file already failed: later rounds are not attempted
            for i in rnd:
                outcomes[i] = FaceOutcome(i, faces[i], "not_attempted")
            continue
        crops = {i: (crops0[i] if out is rgb else prepare_crop(out, faces[i], options, keep_mask)) for i in rnd}
        for i in rnd:
            why = _nothing_to_anonymize(crops[i])
            if why is not None:
                produced[i] = InputError(why)
        todo = [i for i in rnd if i not in produced]
        for start in range(0, len(todo), options.batch):
            ids = todo[start:start + options.batch]
            try:
                results = list(anonymizer(out, [crops[i] for i in ids]))
                if len(results) != len(ids):
                    raise RuntimeError(f"the anonymizer returned {len(results)} results for {len(ids)} faces")
            except Exception as exc:     # the batch failed: every face in it failed (policy below)
                log.warning("anonymizing faces %s of %s failed: %s", ids, name, exc)
                results = [exc] * len(ids)
            produced.update(zip(ids, results))
        for i in sorted(rnd, key=lambda i: faces[i].area):          # larger faces are pasted last, on top
            f, res = faces[i], produced[i]
            where = f"face {i} of {name} at {[int(v) for v in f.bbox]}"
            reason = _check_result(res, crops[i])
            if reason is None:
                out = paste_face(out, crops[i], res)
                outcomes[i] = FaceOutcome(i, f, "anonymized", audit="passed" if audited else NOT_AUDITED)
                continue
            outcomes[i] = FaceOutcome(i, f, "failed", options.on_failure, reason)
            if options.on_failure == "error":       # every face of the round is judged before failing the file
                refused.append(f"{where}: {reason}")
                continue
            box, weight = region_weights(crops[i], out.shape)
            out = apply_failure(out, weight > 0, f.size, options.on_failure, where, reason, box)
    result.faces = [outcomes[i] for i in range(len(faces))]
    if refused:
        exc = FaceFailedError(f"{len(refused)} face(s) could not be anonymized: {'; '.join(refused)}. Nothing was "
                              "returned (policy 'error'); choose blur, pixelate or keep to go on.")
        result.image = None                       # nothing is returned, not even through the exception
        exc.faces_found, exc.faces_failed, exc.result = len(faces), len(refused), result
        raise exc
    result.image = _restore_layout(out, np.asarray(image), alpha)
    return result


@dataclass
class PhotoFaces:
    """The faces detected in each image of a batch (what the Detect Faces node passes on): a container of
    ``Face`` lists, one per image."""

    faces: list[list[Face]]            # the faces to anonymize
    sizes: list[tuple[int, int]]       # (h, w) of each image
    detector: str = ""
    ignored: list[list[Face]] = field(default_factory=list)   # left as they are, with the reason

    def ignored_count(self) -> int:
        return sum(len(f) for f in self.ignored)

    def count(self) -> int:
        return sum(len(f) for f in self.faces)

    def flat(self) -> list[tuple[int, int, Face]]:
        """(image index, face index, face) for every face, image by image, largest face first."""
        return [(i, k, f) for i, fs in enumerate(self.faces) for k, f in enumerate(fs)]


def detect_batch(images: Sequence[np.ndarray], detector, on_no_face: str = "error",
                 options: PhotoOptions | None = None, mode: str | None = None) -> PhotoFaces:
    """Detect faces in every image (``options``: min_face_size, max_faces and score_threshold mark faces
    ignored, kept in ``PhotoFaces.ignored`` and logged); an image without faces follows ``on_no_face``
    (an image whose faces were all ignored is not "without faces")."""
    check_policy(on_no_face, ON_NO_FACE, "no-face")
    options = options or PhotoOptions()
    found, ignored = [], []
    for i, im in enumerate(images):
        kept, left = select(list(detector.detect(as_rgb(im, mode)[0])), options)
        _warn_ignored(f"image {i}", left)
        found.append(kept)
        ignored.append(left)
    missing = [f"image {i}" for i, (faces, left) in enumerate(zip(found, ignored)) if not faces and not left]
    if missing:
        no_face(", ".join(missing) + f" (of {len(found)})", on_no_face)
    return PhotoFaces(found, [tuple(np.asarray(im).shape[:2]) for im in images],
                      getattr(detector, "name", type(detector).__name__), ignored)
