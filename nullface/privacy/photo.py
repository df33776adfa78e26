"""Whole photos: find every face, crop, anonymize in batches, paste back; fail closed.

``anonymize_photos(images, detector, anonymizer, options)`` is the one driver (``anonymize_photo`` runs it on one
image). The anonymizer is any ``f(image_rgb, crops) -> [anonymized crop | Exception, ...]`` (the diffusion engine's
is ``nullface.methods.nullface.pipeline.crop_anonymizer``); it receives the faces of a round in one call
(``options.batch`` at most) and each ``FaceCrop`` carries its anonymization mask (``crop.mask``, 1 = anonymize).
One with ``many_images = True`` takes faces of several photos in one call: ``f([image per crop], crops)``.
An anonymizer with ``audited = True`` checks every face with the re-identification audit and fails those it
rejects, so each anonymized face is reported ``audit: "passed"``; with any other anonymizer ``"not audited"``.
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

# anonymizer(image, crops) -> one anonymized crop (uint8, same size) or an Exception per crop; ``image`` is a
# list (one photo per crop) for anonymizers with ``many_images = True``
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
    audits: list = field(default_factory=list)          # the re-ID audits of its faces (every try), call order

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
    """Detect every face, anonymize each with its own identity, paste back (``anonymize_photos`` for one image).

    Pixels outside the faces' paste regions stay byte-identical. ``keep_mask`` (image size, 1 = keep
    visible) adds to the kept regions. ``image`` is a uint8 array or a PIL image; a 4-channel array needs
    ``mode="RGBA"`` or ``"CMYK"`` (CMYK comes back as RGB). A face whose anonymization fails gets ``options.on_failure``;
    an image without faces ``options.on_no_face``; the error of the photo is raised.
    """
    res = anonymize_photos([image], detector, anonymizer, options, names=[name], keep_masks=[keep_mask], mode=mode)[0]
    if isinstance(res, BaseException):
        raise res
    return res


class _Photo:
    """One photo's state in ``anonymize_photos``: its faces, crops, paste rounds and outcomes so far."""

    def __init__(self, image, name: str, keep_mask, mode, detector, faces, options: PhotoOptions):
        self.name, self.keep_mask = name, keep_mask
        self.image = photo_array(image, mode)
        self.rgb, self.alpha = as_rgb(self.image, "RGBA")
        for what, m in (("keep mask", keep_mask), ("external mask", options.external_mask)):
            if m is not None and np.asarray(m).shape[:2] != self.rgb.shape[:2]:
                raise InputError(f"the {what} is {np.asarray(m).shape[:2]}, the image {self.rgb.shape[:2]} ({name})")
        det_name = getattr(detector, "name", type(detector).__name__)
        found = list(detector.detect(self.rgb)) if faces is None else list(faces)
        self.faces, ignored = select(found, options)
        _warn_ignored(name, ignored)
        self.result = PhotoResult(image=self.image, detector=det_name, ignored=list(ignored))
        if not self.faces:
            if not ignored:
                no_face(name, options.on_no_face)
            self.rounds = []
            return
        log.info("%s: %d face(s) found (%s)", name, len(self.faces), det_name)
        self.out = self.rgb
        self.crops0 = [prepare_crop(self.rgb, f, options, keep_mask) for f in self.faces]
        self.rounds = _rounds([region_weights(c, self.rgb.shape)[0] for c in self.crops0])
        self.outcomes: dict[int, FaceOutcome] = {}
        self.produced: dict[int, object] = {}
        self.refused: list[str] = []           # faces failed under the 'error' policy
        self.crops: dict[int, FaceCrop] = {}

    def start_round(self, r: int, options: PhotoOptions) -> list[int]:
        """Crop the faces of round ``r`` (from the image as pasted so far); the faces to anonymize."""
        rnd = self.rounds[r]
        if self.refused:                        # the file already failed: later rounds are not attempted
            for i in rnd:
                self.outcomes[i] = FaceOutcome(i, self.faces[i], "not_attempted")
            return []
        self.crops = {i: (self.crops0[i] if self.out is self.rgb else
                          prepare_crop(self.out, self.faces[i], options, self.keep_mask)) for i in rnd}
        for i in rnd:
            why = _nothing_to_anonymize(self.crops[i])
            if why is not None:
                self.produced[i] = InputError(why)
        return [i for i in rnd if i not in self.produced]

    def finish_round(self, r: int, options: PhotoOptions, audited: bool = False) -> None:
        """Paste the round's results (larger faces last, on top) or apply the failure policy; ``audited``: the
        anonymizer fails every face its re-identification audit rejects, so a pasted face passed it."""
        if self.refused and not any(i in self.produced for i in self.rounds[r]):
            return
        for i in sorted(self.rounds[r], key=lambda i: self.faces[i].area):
            f, res, crop = self.faces[i], self.produced[i], self.crops[i]
            where = f"face {i} of {self.name} at {[int(v) for v in f.bbox]}"
            reason = _check_result(res, crop)
            if reason is None:
                self.out = paste_face(self.out, crop, res)
                self.outcomes[i] = FaceOutcome(i, f, "anonymized", audit="passed" if audited else NOT_AUDITED)
                continue
            self.outcomes[i] = FaceOutcome(i, f, "failed", options.on_failure, reason)
            if options.on_failure == "error":       # every face of the round is judged before failing the file
                self.refused.append(f"{where}: {reason}")
                continue
            box, weight = region_weights(crop, self.out.shape)
            self.out = apply_failure(self.out, weight > 0, f.size, options.on_failure, where, reason, box)

    def finish(self) -> "PhotoResult | FaceFailedError":
        result = self.result
        if not self.faces:
            return result
        result.faces = [self.outcomes[i] for i in range(len(self.faces))]
        if self.refused:
            exc = FaceFailedError(f"{len(self.refused)} face(s) could not be anonymized: {'; '.join(self.refused)}. "
                                  "Nothing was returned (policy 'error'); choose blur, pixelate or keep to go on.")
            result.image = None                   # nothing is returned, not even through the exception
            exc.faces_found, exc.faces_failed, exc.result = len(self.faces), len(self.refused), result
            return exc
        result.image = _restore_layout(self.out, np.asarray(self.image), self.alpha)
        return result


def _anonymize_chunk(anonymizer, jobs: list[tuple[_Photo, int]], many: bool) -> None:
    """One anonymizer call for ``jobs`` (photo, face); results land in each photo's ``produced`` and the
    audits the call recorded in its ``result.audits``. A call that raises is split in halves and retried,
    down to single faces, so that only the faces that fail, fail (an out-of-memory batch also goes on in
    smaller calls)."""
    audits = getattr(anonymizer, "audits", None)
    before = len(audits) if audits is not None else 0
    crops = [p.crops[i] for p, i in jobs]
    images = [p.out for p, _ in jobs] if many else jobs[0][0].out
    try:
        results = list(anonymizer(images, crops))
        if len(results) != len(jobs):
            raise RuntimeError(f"the anonymizer returned {len(results)} results for {len(jobs)} faces")
    except Exception as exc:
        if audits is not None:
            del audits[before:]
        if len(jobs) > 1:
            half = len(jobs) // 2
            log.warning("anonymizing %d faces in one call failed (%s): trying them in smaller calls", len(jobs), exc)
            _anonymize_chunk(anonymizer, jobs[:half], many)
            _anonymize_chunk(anonymizer, jobs[half:], many)
            return
        p, i = jobs[0]
        log.warning("anonymizing face %d of %s failed: %s", i, p.name, exc)
        results = [exc]
    for (p, i), res in zip(jobs, results):
        p.produced[i] = res
    if audits is not None:                      # each audit to its photo (by its crop in a call of many)
        owner = {id(p.crops[i]): p for p, i in jobs}
        for a in audits[before:]:
            owner.get(id(getattr(a, "crop", None)), jobs[0][0]).result.audits.append(a)
        del audits[before:]


def anonymize_photos(images: Sequence, detector, anonymizer: Anonymizer, options: PhotoOptions = PhotoOptions(), *,
                     names: Sequence[str] | None = None, keep_masks: Sequence | None = None, mode: str | None = None,
                     found: Sequence[Sequence[Face]] | None = None) -> list:
    """Many photos at once: every face anonymized with its own identity, pasted back; fails closed per photo.

    Returns one ``PhotoResult`` or exception per image (never raises, except ``KeyboardInterrupt`` and
    ``Cancelled``): ``NoFaceError`` (``options.on_no_face``), ``FaceFailedError`` (a face failed under the
    'error' policy; ``.result`` holds what was found, no image), ``InputError``... ``found``: faces already
    detected per image (else ``detector.detect``). Faces of all photos go to the anonymizer together, up to
    ``options.batch`` per call, when it accepts several photos (``anonymizer.many_images``: it is called with
    one image per crop); other anonymizers get one photo's faces per call. Each photo's result equals its
    ``anonymize_photo`` alone: faces that overlap another's paste region wait for a later round, cropped from
    the photo as pasted so far, and each face's result does not depend on the others of its call. The
    audits recorded in ``anonymizer.audits`` move to each photo's ``PhotoResult.audits``.
    """
    options.validate()
    if options.keep is None:                 # the method's own default; an anonymizer without one: the whole face
        options = replace(options, keep=tuple(getattr(anonymizer, "keep", ())))
    n = len(images)
    names = list(names) if names is not None else [f"image {i}" for i in range(n)]
    keep_masks = list(keep_masks) if keep_masks is not None else [None] * n
    photos: list = []
    for k in range(n):
        try:
            photos.append(_Photo(images[k], names[k], keep_masks[k], mode, detector,
                                 None if found is None else found[k], options))
        except Exception as exc:                # this photo fails (no face, bad mask, unreadable layout)
            photos.append(exc)
    many = bool(getattr(anonymizer, "many_images", False))
    audited = bool(getattr(anonymizer, "audited", False))   # the anonymizer fails every face its audit rejects
    live = [p for p in photos if isinstance(p, _Photo)]
    for r in range(max((len(p.rounds) for p in live), default=0)):
        active = [p for p in live if r < len(p.rounds)]
        jobs = [(p, i) for p in active for i in p.start_round(r, options)]
        groups = [jobs] if many else [[j for j in jobs if j[0] is p] for p in active]
        for group in groups:
            for start in range(0, len(group), options.batch):
                _anonymize_chunk(anonymizer, group[start:start + options.batch], many)
        for p in active:
            p.finish_round(r, options, audited)
    return [p.finish() if isinstance(p, _Photo) else p for p in photos]


def photo_report(results: Sequence, names: Sequence[str] | None = None) -> str:
    """The text report of ``anonymize_photos``' results: per image its faces, ignored faces and audits."""
    lines = []
    for k, res in enumerate(results):
        name = names[k] if names is not None else f"image {k}"
        if isinstance(res, BaseException):
            lines.append(f"{name}: {type(res).__name__}: {res}")
            res = getattr(res, "result", None)
            if res is None:
                continue
        else:
            lines.append(f"{name}: {res.found} face(s) found, {res.anonymized} anonymized, {res.failed} failed"
                         + (f", {len(res.ignored)} IGNORED (left as they are)" if res.ignored else "")
                         + (" (no face: passed through)" if res.found == 0 and not res.ignored else ""))
        lines += [f"  face {f.index} {[int(v) for v in f.bbox]}: {f.status}" + (f" ({f.audit})" if f.audit else "")
                  + (f" -> {f.policy} ({f.error})" if f.policy else "") for f in res.faces]
        lines += [f"  ignored face {[int(v) for v in g.bbox]}: {g.ignored}" for g in res.ignored]
        for j, checked in enumerate(res.audits):
            last = checked.tries[-1].audit if getattr(checked, "tries", None) else None
            lines.append(f"  audit {j}: {'pass' if checked.passed else 'FAIL'} after {len(checked.tries)} "
                         f"try(s)" + (f": {last.summary()}" if last is not None else ""))
    return "\n".join(lines)


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
