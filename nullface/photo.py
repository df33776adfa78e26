"""Whole photos: find every face, crop, anonymize in batches, paste back; fail closed."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .crop import FaceCrop, crop_face, paste_face, region_in_image
from .detect import DetectedFace
from .errors import FaceFailedError, InputError
from .policy import ON_FAILURE, ON_NO_FACE, apply_failure, check_policy, no_face
from .regions import anonymize_mask, parse_regions

log = logging.getLogger("nullface")

# anonymizer(image, crops) -> one anonymized crop (uint8, same size) or an Exception per crop
Anonymizer = Callable[[np.ndarray, list[FaceCrop]], list["np.ndarray | Exception"]]


@dataclass(frozen=True)
class PhotoOptions:
    """How a photo is processed (the method's own parameters live in NullFaceSettings)."""

    crop_size: int = 512
    zoom: float = 1.3                 # framing: larger shows more around the face
    keep: tuple[str, ...] = ()        # regions kept visible, e.g. ("eyes", "mouth")
    grow: int = 0                     # grow (+) / shrink (-) the kept regions, crop pixels
    feather: float = 0.0              # feather the kept regions, crop pixels
    on_failure: str = "error"         # error | blur | pixelate | keep
    on_no_face: str = "error"         # error | pass
    batch: int = 4                    # faces per anonymizer call
    paste_feather: float = 0.12       # width of the seam, as a fraction of the face ellipse

    def validate(self) -> "PhotoOptions":
        check_policy(self.on_failure, ON_FAILURE, "failure")
        check_policy(self.on_no_face, ON_NO_FACE, "no-face")
        parse_regions(self.keep)
        if self.crop_size < 64 or self.crop_size % 8:
            raise InputError(f"crop_size must be a multiple of 8 and >= 64, got {self.crop_size}")
        if self.batch < 1:
            raise InputError("batch must be >= 1")
        return self


@dataclass
class FaceOutcome:
    index: int
    bbox: list[float]
    score: float
    status: str                       # "anonymized" | "failed"
    policy: str | None = None         # the failure policy applied, if any
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PhotoResult:
    image: np.ndarray                 # same layout as the input (RGB, or RGBA with the alpha kept)
    faces: list[FaceOutcome] = field(default_factory=list)
    detector: str = ""

    @property
    def found(self) -> int:
        return len(self.faces)

    @property
    def anonymized(self) -> int:
        return sum(f.status == "anonymized" for f in self.faces)

    @property
    def failed(self) -> int:
        return sum(f.status == "failed" for f in self.faces)

    def to_dict(self) -> dict:
        return {"faces_found": self.found, "anonymized": self.anonymized, "failed": self.failed,
                "detector": self.detector, "faces": [f.to_dict() for f in self.faces]}


def as_rgb(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Any uint8 grayscale / RGB / RGBA array -> (RGB, alpha or None)."""
    a = np.asarray(image)
    if a.size == 0:
        raise InputError("the image is empty")
    if a.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, -1), None
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, -1), None
    if a.shape[2] == 4:
        return np.ascontiguousarray(a[..., :3]), a[..., 3]
    return a, None


def prepare_crop(image: np.ndarray, face: DetectedFace, options: PhotoOptions,
                 keep_mask: np.ndarray | None = None) -> FaceCrop:
    """The aligned crop of one face with its anonymization mask (1 = anonymize) for the kept regions."""
    crop = crop_face(image, face, options.crop_size, options.zoom, options.paste_feather)
    if options.keep or keep_mask is not None:
        lm = face.landmarks68 if face.landmarks68 is not None else face.kps
        ext = None
        if keep_mask is not None:
            from .crop import _warp
            ext = _warp((np.clip(keep_mask, 0, 1) * 255).astype(np.uint8), crop.matrix,
                        (crop.size, crop.size)).astype(np.float32) / 255.0
        crop.mask = anonymize_mask(crop.to_crop(lm), (crop.size, crop.size), options.keep, options.grow,
                                   options.feather, ext)
    return crop


def _rounds(boxes: Sequence[np.ndarray]) -> list[list[int]]:
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


def _region_box(image_shape, crop: FaceCrop) -> tuple[np.ndarray, np.ndarray]:
    region = region_in_image(image_shape, crop)
    ys, xs = np.nonzero(region)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) if len(xs) else np.zeros(4)
    return region, box


def anonymize_photo(image: np.ndarray, detector, anonymizer: Anonymizer, options: PhotoOptions = PhotoOptions(),
                    name: str = "the image", keep_mask: np.ndarray | None = None) -> PhotoResult:
    """Detect every face, anonymize each with its own identity, paste back; pixels outside the faces'
    regions stay byte-identical. ``keep_mask`` (image size, 1 = keep visible) adds to the kept regions."""
    options.validate()
    rgb, alpha = as_rgb(image)
    if keep_mask is not None and np.asarray(keep_mask).shape[:2] != rgb.shape[:2]:
        raise InputError(f"the keep mask is {np.asarray(keep_mask).shape[:2]}, the image {rgb.shape[:2]}")
    faces = list(detector.detect(rgb))
    result = PhotoResult(image=image, detector=getattr(detector, "name", type(detector).__name__))
    if not faces:
        no_face(name, options.on_no_face)
        return result
    log.info("%s: %d face(s) found (%s)", name, len(faces), result.detector)
    out = rgb
    crops0 = [prepare_crop(rgb, f, options, keep_mask) for f in faces]
    geometry = [_region_box(rgb.shape, c) for c in crops0]
    outcomes: dict[int, FaceOutcome] = {}
    for rnd in _rounds([g[1] for g in geometry]):
        crops = {i: (crops0[i] if out is rgb else prepare_crop(out, faces[i], options, keep_mask)) for i in rnd}
        produced: dict[int, object] = {}
        for start in range(0, len(rnd), options.batch):
            ids = rnd[start:start + options.batch]
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
            if isinstance(res, np.ndarray) and res.shape == crops[i].image.shape and res.dtype == np.uint8:
                out = paste_face(out, crops[i], res)
                outcomes[i] = FaceOutcome(i, f.bbox.tolist(), f.score, "anonymized")
                continue
            reason = str(res) if isinstance(res, Exception) else f"invalid result {type(res).__name__}"
            try:
                out = apply_failure(out, geometry[i][0], f.size, options.on_failure, where, reason)
            except FaceFailedError as exc:
                exc.faces_found, exc.faces_failed = len(faces), 1
                raise
            outcomes[i] = FaceOutcome(i, f.bbox.tolist(), f.score, "failed", options.on_failure, reason)
    result.faces = [outcomes[i] for i in range(len(faces))]
    result.image = out if alpha is None else np.concatenate([out, alpha[..., None]], -1)
    if rgb.ndim == 3 and np.asarray(image).ndim == 2:
        result.image = out[..., 0] if np.array_equal(out[..., 0], out[..., 1]) else out
    return result


@dataclass
class PhotoFaces:
    """The faces detected in each image of a batch (what the Detect Faces node passes on)."""

    faces: list[list[DetectedFace]]
    sizes: list[tuple[int, int]]       # (h, w) of each image
    detector: str = ""

    def count(self) -> int:
        return sum(len(f) for f in self.faces)


def detect_batch(images: Sequence[np.ndarray], detector, on_no_face: str = "error") -> PhotoFaces:
    """Detect faces in every image; an image without faces follows ``on_no_face`` (and is logged)."""
    check_policy(on_no_face, ON_NO_FACE, "no-face")
    found = [list(detector.detect(as_rgb(im)[0])) for im in images]
    missing = [f"image {i}" for i, faces in enumerate(found) if not faces]
    if missing:
        no_face(", ".join(missing) + f" (of {len(found)})", on_no_face)
    return PhotoFaces(found, [tuple(np.asarray(im).shape[:2]) for im in images],
                      getattr(detector, "name", type(detector).__name__))
