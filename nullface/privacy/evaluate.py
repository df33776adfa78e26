"""The paper's evaluation (Table 1) with tools that install from PyPI: re-identification, attribute
preservation proxies and background preservation, for a folder of originals and their anonymized copies.

Proxies, since the paper's models (AdaFace, 6DRepNet-style pose, L2CS gaze, 3DMM expression) are not
available here:

* **Re-ID %**: faces the recognizer still links to the original (``nullface.privacy.audit``: dlib < 0.6, ArcFace >= 0.35).
* **Expression**: normalized landmark distance (NME): mean distance of the 51 inner-face iBUG points
  (brows, eyes, nose, mouth) after a similarity alignment, in % of the inter-ocular distance.
* **Eye openness** (gaze proxy): |delta eye aspect ratio|, mean of both eyes. **Mouth**: |delta mouth aspect ratio|.
* **Pose**: angle of the relative rotation between the head poses (degrees), from 68 landmarks with
  ``cv2.solvePnP`` against a generic 3-D face model.
* **Background PSNR / SSIM**: outside every region an anonymizer may change: the paste region of each face
  (``nullface.faces.crop``, the region ``anonymize`` actually pastes) and the face box grown by a margin; PSNR capped
  at 100 dB for identical pixels; SSIM is Wang et al.'s (Gaussian window sigma 1.5) on luma, averaged over
  the background pixels whose whole window lies in the background.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..faces.face import Face
from .audit import Recognizer, audit_face, refit_geometry
from .photo import as_rgb
from .saving import write_atomic
from ..errors import InputError, MissingDependencyError
from ..faces.imageio import read_image

log = logging.getLogger("nullface")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PSNR_CAP = 100.0
INNER_FACE = slice(17, 68)   # iBUG-68 brows, nose, eyes and mouth (the jaw line follows the pose)

# A generic 3-D face (mm-like units, x right, y down, z away from the camera) at six iBUG-68 points:
# nose tip 30, chin 8, outer eye corners 36 / 45, mouth corners 48 / 54.
FACE_MODEL_3D = np.array([
    [0.0, 0.0, 0.0],
    [0.0, 330.0, 65.0],
    [-225.0, -170.0, 135.0],
    [225.0, -170.0, 135.0],
    [-150.0, 150.0, 125.0],
    [150.0, 150.0, 125.0],
], np.float64)
FACE_MODEL_POINTS = (30, 8, 36, 45, 48, 54)


# ------------------------------------------------------------------------------------------ landmark proxies

def eye_aspect_ratio(pts: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (Soukupova & Cech): ~0.3 open, ~0 closed."""
    p = np.asarray(pts, np.float64)

    def ear(e):
        return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2.0 * np.linalg.norm(e[0] - e[3]) + 1e-9)
    return float((ear(p[36:42]) + ear(p[42:48])) / 2.0)


def mouth_aspect_ratio(pts: np.ndarray) -> float:
    """Inner-lip opening over mouth width (0 closed)."""
    p = np.asarray(pts, np.float64)
    vertical = np.linalg.norm(p[61] - p[67]) + np.linalg.norm(p[62] - p[66]) + np.linalg.norm(p[63] - p[65])
    return float(vertical / (3.0 * np.linalg.norm(p[60] - p[64]) + 1e-9))


def expression_distance(a: np.ndarray, b: np.ndarray) -> float:
    """NME in %: inner-face landmarks of ``b`` similarity-aligned onto ``a``, over the inter-ocular distance."""
    from ..faces.align import similarity_transform
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = similarity_transform(b, a)
    b_on_a = b @ m[:, :2].T + m[:, 2]
    iod = np.linalg.norm(a[36] - a[45]) + 1e-9
    return float(100.0 * np.linalg.norm(a[INNER_FACE] - b_on_a[INNER_FACE], axis=1).mean() / iod)


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError("head-pose estimation needs OpenCV. Install it with: "
                                     "pip install opencv-python-headless") from exc
    return cv2


@dataclass(frozen=True)
class HeadPose:
    """Head rotation (camera frame) and its yaw / pitch / roll in degrees (0, 0, 0 = frontal, upright)."""

    rotation: np.ndarray
    yaw: float
    pitch: float
    roll: float


def head_pose(pts: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Head pose from iBUG-68 landmarks with ``cv2.solvePnP`` (pinhole, focal = image width)."""
    cv2 = _cv2()
    w, h = image_size
    camera = np.array([[w, 0, w / 2.0], [0, w, h / 2.0], [0, 0, 1]], np.float64)
    image_pts = np.asarray(pts, np.float64)[list(FACE_MODEL_POINTS)]
    # Start from a frontal head at the distance its eye span implies: six points admit several
    # local minima, and starting upright keeps the solver on the plausible one.
    eye_span = np.linalg.norm(image_pts[3] - image_pts[2]) + 1e-6
    z = w * np.linalg.norm(FACE_MODEL_3D[3] - FACE_MODEL_3D[2]) / eye_span
    rvec0 = np.zeros((3, 1))
    tvec0 = np.array([[(image_pts[0, 0] - w / 2.0) * z / w], [(image_pts[0, 1] - h / 2.0) * z / w], [z]])
    ok, rvec, _ = cv2.solvePnP(FACE_MODEL_3D, image_pts, camera, np.zeros(4), rvec0, tvec0,
                               useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise InputError("head pose could not be estimated from the landmarks")
    r, _ = cv2.Rodrigues(rvec)
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return HeadPose(r, yaw, pitch, roll)


def rotation_angle(r1: np.ndarray, r2: np.ndarray) -> float:
    """Geodesic distance between two rotations, in degrees."""
    c = (np.trace(r1.T @ r2) - 1.0) / 2.0
    return float(math.degrees(math.acos(max(-1.0, min(1.0, c)))))


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


# -------------------------------------------------------------------------------------- background metrics

def face_region_mask(shape: tuple[int, int], boxes: Sequence[np.ndarray], margin: float = 0.25) -> np.ndarray:
    """Bool HxW, True inside the face boxes grown by ``margin`` x their size on every side."""
    h, w = shape
    mask = np.zeros((h, w), bool)
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        xa, ya = max(0, int(math.floor(x1 - mx))), max(0, int(math.floor(y1 - my)))
        xb, yb = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
        mask[ya:yb, xa:xb] = True
    return mask


def paste_region_mask(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """Bool HxW, True where pasting any of ``faces`` may change pixels (``nullface.faces.crop.region_in_image``
    of the face's 512 crop: the region the photo path actually pastes)."""
    from ..faces.crop import crop_face, region_in_image
    mask = np.zeros(image.shape[:2], bool)
    for f in faces:
        mask |= region_in_image(image.shape, crop_face(image, f, 512))
    return mask


def masked_psnr(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    """PSNR (dB, 8-bit) over the pixels where ``keep`` is True; identical pixels give ``PSNR_CAP``."""
    if not keep.any():
        return float("nan")
    diff = a.astype(np.float64)[keep] - b.astype(np.float64)[keep]
    mse = float(np.mean(diff ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * math.log10(255.0 ** 2 / mse)))


def _gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2.0 * sigma ** 2))
    k /= k.sum()
    p = np.pad(x, radius, mode="reflect")
    h, w = x.shape
    rows = sum(k[j] * p[:, j:j + w] for j in range(2 * radius + 1))
    return sum(k[j] * rows[j:j + h, :] for j in range(2 * radius + 1))


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two RGB uint8 images on luma (Wang et al. 2004, Gaussian sigma 1.5, K1/K2 = 0.01/0.03)."""
    x, y = _luma(a), _luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gaussian_blur(x), _gaussian_blur(y)
    sxx = _gaussian_blur(x * x) - mx * mx
    syy = _gaussian_blur(y * y) - my * my
    sxy = _gaussian_blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def masked_ssim(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    """Mean SSIM over the pixels where ``keep`` is True whose whole Gaussian window lies where ``keep`` is
    True (so that changed pixels nearby do not count against the background); all of ``keep`` if none does."""
    if not keep.any():
        return float("nan")
    inside = keep & (_gaussian_blur((~keep).astype(np.float64)) <= 0.0)
    return float(ssim_map(a, b)[inside if inside.any() else keep].mean())


# ------------------------------------------------------------------------------------------- per pair / face

@dataclass(frozen=True)
class FaceMetrics:
    """Attribute and identity metrics of one face (detected on the original)."""

    face: Face
    reidentified: dict[str, bool]         # recognizer -> still linked to the original (fail closed)
    scores: dict[str, float]
    expression: float                     # NME % of inter-ocular distance
    eye_openness: float                   # |delta EAR|
    mouth: float                          # |delta MAR|
    pose: float                           # degrees, relative rotation
    yaw: float
    pitch: float
    roll: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in np.asarray(self.face.bbox).reshape(4))  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return {"bbox": self.face.box_list(), "reidentified": self.reidentified,
                "scores": {k: _clean(v) for k, v in self.scores.items()},
                **{k: _clean(getattr(self, k)) for k in ("expression", "eye_openness", "mouth", "pose",
                                                         "yaw", "pitch", "roll")}}


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def face_metrics(original: np.ndarray, anonymized: np.ndarray, face: Face,
                 recognizers: Sequence[Recognizer], landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FaceMetrics:
    """Identity (re-ID per recognizer) and attribute distances for one face."""
    fa = audit_face(original, anonymized, face, recognizers, landmarker=landmarker)
    # both sides are measured the same way (the landmarker inside the same box), so identical images give 0
    try:
        orig_pts = np.asarray(landmarker(original, np.asarray(face.bbox)), np.float32)
    except Exception:
        orig_pts = face.landmarks68
    if orig_pts is None or len(orig_pts) != 68:
        raise InputError("68 landmarks are needed for the attribute metrics")
    geo, _ = refit_geometry(anonymized, face, landmarker)
    anon_pts = geo.landmarks if geo.landmarks is not None and len(geo.landmarks) == 68 else orig_pts
    size = (original.shape[1], original.shape[0])
    p1, p2 = head_pose(orig_pts, size), head_pose(anon_pts, size)
    return FaceMetrics(
        face=fa.face,
        reidentified={r.recognizer: not r.passed for r in fa.results},
        scores={r.recognizer: r.score for r in fa.results},
        expression=expression_distance(orig_pts, anon_pts),
        eye_openness=abs(eye_aspect_ratio(orig_pts) - eye_aspect_ratio(anon_pts)),
        mouth=abs(mouth_aspect_ratio(orig_pts) - mouth_aspect_ratio(anon_pts)),
        pose=rotation_angle(p1.rotation, p2.rotation),
        yaw=_angle_diff(p1.yaw, p2.yaw), pitch=_angle_diff(p1.pitch, p2.pitch), roll=_angle_diff(p1.roll, p2.roll),
    )


@dataclass(frozen=True)
class PairMetrics:
    """Metrics of one original / anonymized pair."""

    key: str
    faces: tuple[FaceMetrics, ...] = ()
    bg_psnr: float = float("nan")
    bg_ssim: float = float("nan")
    error: str | None = None

    def to_dict(self) -> dict:
        return {"key": self.key, "error": self.error, "bg_psnr": _clean(self.bg_psnr),
                "bg_ssim": _clean(self.bg_ssim), "faces": [f.to_dict() for f in self.faces]}


def evaluate_pair(original: np.ndarray, anonymized: np.ndarray, faces: Sequence[Face],
                  recognizers: Sequence[Recognizer], landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  key: str = "", margin: float = 0.25) -> PairMetrics:
    """All metrics for one pair of same-size RGB uint8 images; ``faces`` were detected on the original."""
    if original.shape != anonymized.shape:
        raise InputError(f"{key or 'pair'}: the anonymized image is {anonymized.shape[1]}x{anonymized.shape[0]}, "
                         f"the original {original.shape[1]}x{original.shape[0]}; compare images of one size")
    boxes = face_region_mask(original.shape[:2], [f.bbox for f in faces], margin)
    keep = ~(boxes | paste_region_mask(original, faces))
    per_face = tuple(face_metrics(original, anonymized, f, recognizers, landmarker) for f in faces)
    return PairMetrics(key, per_face, masked_psnr(original, anonymized, keep), masked_ssim(original, anonymized, keep))


# ------------------------------------------------------------------------------------------------- folders

@dataclass(frozen=True)
class Pairing:
    """Files matched by relative path (extension ignored), then by unique file stem."""

    pairs: tuple[tuple[str, Path, Path], ...]
    missing: tuple[str, ...] = ()     # originals without an anonymized copy
    extra: tuple[str, ...] = ()       # anonymized files without an original


def _images(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).with_suffix("").as_posix().lower(): p
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def pair_files(originals: str | Path, anonymized: str | Path) -> Pairing:
    """Pair images of two folders by relative path without extension, falling back to a unique file stem."""
    roots = Path(originals), Path(anonymized)
    for name, root in zip(("originals", "anonymized"), roots):
        if not root.is_dir():
            raise InputError(f"the {name} folder '{root}' does not exist")
    orig, anon = _images(roots[0]), _images(roots[1])
    by_stem: dict[str, list[str]] = {}
    for k in anon:
        by_stem.setdefault(k.rsplit("/", 1)[-1], []).append(k)
    pairs, missing, used = [], [], set()
    for key, path in orig.items():
        match = key if key in anon else None
        if match is None:
            cands = [c for c in by_stem.get(key.rsplit("/", 1)[-1], []) if c not in orig]
            match = cands[0] if len(cands) == 1 else None
        if match is None or match in used:
            missing.append(key)
            continue
        used.add(match)
        pairs.append((path.relative_to(roots[0]).as_posix(), path, anon[match]))
    extra = tuple(k for k in anon if k not in used)
    return Pairing(tuple(pairs), tuple(missing), extra)


@dataclass(frozen=True)
class Summary:
    """One row of the table: rates in %, means over faces (attributes) or pairs (background)."""

    label: str
    pairs: int
    faces: int
    reid: dict[str, float]
    expression: float
    eye_openness: float
    mouth: float
    pose: float
    bg_psnr: float
    bg_ssim: float
    errors: int = 0

    def to_dict(self) -> dict:
        return {"label": self.label, "pairs": self.pairs, "faces": self.faces, "errors": self.errors,
                "reid_pct": {k: _clean(v) for k, v in self.reid.items()},
                **{k: _clean(getattr(self, k)) for k in ("expression", "eye_openness", "mouth", "pose",
                                                         "bg_psnr", "bg_ssim")}}


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(results: Sequence[PairMetrics], recognizers: Sequence[str], label: str) -> Summary:
    """Folder-level figures: Re-ID % over all faces, attribute means over faces, background means over pairs."""
    ok = [r for r in results if r.error is None]
    faces = [f for r in ok for f in r.faces]
    reid = {n: (100.0 * sum(f.reidentified.get(n, True) for f in faces) / len(faces)) if faces else float("nan")
            for n in recognizers}
    return Summary(label, len(ok), len(faces), reid,
                   _mean([f.expression for f in faces]), _mean([f.eye_openness for f in faces]),
                   _mean([f.mouth for f in faces]), _mean([f.pose for f in faces]),
                   _mean([r.bg_psnr for r in ok]), _mean([r.bg_ssim for r in ok]), len(results) - len(ok))


def _fmt(v: float, nd: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def format_table(summary: Summary) -> str:
    """The summary in the layout of the paper's Table 1 (identity | attributes | background)."""
    cols = [(f"Re-ID {n} (%)", _fmt(v, 2)) for n, v in summary.reid.items()]
    cols += [("Expression (NME %)", _fmt(summary.expression, 3)), ("Eye open. |dEAR|", _fmt(summary.eye_openness, 4)),
             ("Mouth |dMAR|", _fmt(summary.mouth, 4)), ("Pose (deg)", _fmt(summary.pose, 2)),
             ("BG PSNR (dB)", _fmt(summary.bg_psnr, 2)), ("BG SSIM", _fmt(summary.bg_ssim, 4))]
    n_id = len(summary.reid)
    label_w = max(len(summary.label), 12)
    widths = [max(len(h), len(v)) for h, v in cols]
    groups = [("Identity", widths[:n_id]), ("Attribute distance (lower is better)", widths[n_id:n_id + 4]),
              ("Background (higher is better)", widths[n_id + 4:])]
    top = " " * label_w + " | " + " | ".join(g.center(sum(w) + 3 * (len(w) - 1)) for g, w in groups if w)
    head = "".ljust(label_w) + " | " + " | ".join(h.rjust(w) for (h, _), w in zip(cols, widths))
    row = summary.label.ljust(label_w) + " | " + " | ".join(v.rjust(w) for (_, v), w in zip(cols, widths))
    foot = (f"{summary.pairs} pair(s), {summary.faces} face(s)"
            + (f", {summary.errors} pair(s) with errors (see eval.csv)" if summary.errors else ""))
    return "\n".join([top, head, "-" * len(head), row, foot])


# ---------------------------------------------------------------------------------------------- outputs

CSV_FIELDS = ("key", "faces", "expression", "eye_openness", "mouth", "pose_deg", "yaw_diff", "pitch_diff",
              "roll_diff", "bg_psnr", "bg_ssim", "error")


def write_csv(path: str | Path, results: Sequence[PairMetrics], summary: Summary) -> Path:
    """``eval.csv``: one row per pair (face metrics averaged over its faces) and a final ``SUMMARY`` row."""
    names = list(summary.reid)
    fields = ["key", "faces"] + [f"reid_{n}_pct" for n in names] + list(CSV_FIELDS[2:])
    path = Path(path)
    with io.StringIO(newline="") as fh:                  # written whole or not at all (write_atomic)
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in results:
            row: dict[str, Any] = {"key": r.key, "faces": len(r.faces), "error": r.error or ""}
            for n in names:
                row[f"reid_{n}_pct"] = _csv(100.0 * sum(f.reidentified.get(n, True) for f in r.faces) / len(r.faces)
                                            if r.faces else float("nan"))
            for col, attr in (("expression", "expression"), ("eye_openness", "eye_openness"), ("mouth", "mouth"),
                              ("pose_deg", "pose"), ("yaw_diff", "yaw"), ("pitch_diff", "pitch"), ("roll_diff", "roll")):
                row[col] = _csv(_mean([getattr(f, attr) for f in r.faces]))
            row["bg_psnr"], row["bg_ssim"] = _csv(r.bg_psnr), _csv(r.bg_ssim)
            w.writerow(row)
        s = summary
        faces = [f for r in results if r.error is None for f in r.faces]
        row = {"key": "SUMMARY", "faces": s.faces, "expression": _csv(s.expression), "eye_openness": _csv(s.eye_openness),
               "mouth": _csv(s.mouth), "pose_deg": _csv(s.pose), "bg_psnr": _csv(s.bg_psnr), "bg_ssim": _csv(s.bg_ssim),
               "error": f"{s.errors} pair(s) failed" if s.errors else ""}
        row.update({f"{a}_diff": _csv(_mean([getattr(f, a) for f in faces])) for a in ("yaw", "pitch", "roll")})
        row.update({f"reid_{n}_pct": _csv(v) for n, v in s.reid.items()})
        w.writerow(row)
        write_atomic(path, fh.getvalue().encode("utf-8"))
    return path


def _csv(v: float) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.6g}"


def thumbnail_row(original: np.ndarray, anonymized: np.ndarray, size: int = 160, amplify: float = 8.0) -> np.ndarray:
    """original | anonymized | amplified |difference|, each fitted into a ``size`` square cell (uint8)."""
    diff = np.clip(np.abs(original.astype(np.int16) - anonymized.astype(np.int16)) * amplify, 0, 255).astype(np.uint8)
    cells = []
    for img in (original, anonymized, diff):
        pil = Image.fromarray(img)
        pil.thumbnail((size, size), Image.BILINEAR)
        cell = Image.new("RGB", (size, size), (32, 32, 32))
        cell.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
        cells.append(np.asarray(cell))
    return np.concatenate(cells, axis=1)


def contact_sheet(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack thumbnail rows with a gap (uint8 RGB)."""
    if not rows:
        return np.zeros((8, 8, 3), np.uint8)
    w = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        out.append(np.pad(r, ((0, gap), (0, w - r.shape[1]), (0, 0)), constant_values=255))
    return np.concatenate(out, axis=0)[:-gap]


@dataclass
class EvalReport:
    """Everything ``evaluate_folders`` found."""

    results: list[PairMetrics]
    summary: Summary
    pairing: Pairing
    sheet_rows: list[np.ndarray] = field(default_factory=list)


def evaluate_folders(originals: str | Path, anonymized: str | Path, detector: Any,
                     recognizers: Sequence[Recognizer], landmarker: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     *, margin: float = 0.25, largest_only: bool = False, thumb: int = 160,
                     max_rows: int = 24, amplify: float = 8.0) -> EvalReport:
    """Evaluate every pair of the two folders; a pair that cannot be read or compared is reported, not fatal."""
    _cv2()   # fail early with the install hint rather than on the first face
    pairing = pair_files(originals, anonymized)
    results: list[PairMetrics] = []
    rows: list[np.ndarray] = []
    for key, o_path, a_path in pairing.pairs:
        try:
            o, a = (as_rgb(read_image(p), "RGBA")[0] for p in (o_path, a_path))   # RGB, alpha dropped
            faces = list(detector.detect(o))
            if largest_only:
                faces = faces[:1]
            results.append(evaluate_pair(o, a, faces, recognizers, landmarker, key=key, margin=margin))
            if len(rows) < max_rows:
                rows.append(thumbnail_row(o, a, thumb, amplify))
        except (InputError, OSError, ValueError) as exc:
            log.warning("%s: %s", key, exc)
            results.append(PairMetrics(key, error=str(exc)))
    label = Path(anonymized).name or str(anonymized)
    summary = summarize(results, [r.name for r in recognizers], label)
    return EvalReport(results, summary, pairing, rows)

