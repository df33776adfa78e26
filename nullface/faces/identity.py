"""Identity: ArcFace embeddings, their negation c_id = -λ_id·e, and the null identity."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .align import arcface_crop
from ..errors import InputError, ModelFileError, NoFaceError
from .imageio import to_nhwc, to_uint8
from ..models.insightface import BUFFALO_HINT, find_buffalo

log = logging.getLogger("nullface")

EMBED_DIM = 512


class ArcFace:
    """ArcFace recognizer (insightface ``w600k_r50.onnx``): aligned 112x112 face -> unit 512-d vector."""

    def __init__(self, model_file: str | Path, providers: Sequence[str] | str | None = None):
        from ..models.onnx import open_session
        self.model_file = Path(model_file)
        self.session = open_session(self.model_file, providers, what="ArcFace model", hint=BUFFALO_HINT)
        inp = self.session.get_inputs()[0]
        outs = self.session.get_outputs()
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3] or not isinstance(shape[2], int):
            raise ModelFileError(f"'{self.model_file.name}' is not an ArcFace recognizer: its input is {shape}, "
                                 "expected [N, 3, 112, 112]. " + BUFFALO_HINT)
        if len(outs) != 1 or outs[0].shape[-1] != EMBED_DIM:
            raise ModelFileError(f"'{self.model_file.name}' is not an ArcFace recognizer: it has outputs "
                                 f"{[o.shape for o in outs]}, expected one [N, 512]. " + BUFFALO_HINT)
        self.input_name = inp.name
        self.input_size = int(shape[2])

    def embed_aligned(self, faces: np.ndarray) -> np.ndarray:
        """Unit embeddings [N,512] of aligned RGB uint8 crops [N,S,S,3] (S = 112)."""
        x = (faces.astype(np.float32) - 127.5) / 127.5           # insightface's (x - 127.5) / 127.5, RGB
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        out = np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if not np.all(np.isfinite(out)) or np.any(norms == 0):
            raise InputError("ArcFace returned an invalid embedding (NaN or zero); the face crop may be blank")
        return (out / norms).astype(np.float32)

    def embed(self, image: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Unit embedding (512,) of the face with five landmarks ``kps`` in an RGB uint8 image."""
        crop = arcface_crop(image, np.asarray(kps, np.float64), self.input_size)
        return self.embed_aligned(crop[None])[0]


@dataclass
class FaceModels:
    """A face detector (``detect(image) -> list[DetectedFace]``) and the ArcFace recognizer."""

    detector: Any
    arcface: Optional[ArcFace]
    source: str = ""


@dataclass(frozen=True)
class FaceEmbedding:
    """The ArcFace identity of one face: unit vector e plus where the face was."""

    vector: np.ndarray                 # (512,) float32, unit norm
    bbox: Optional[np.ndarray] = None  # (4,) x1, y1, x2, y2
    kps: Optional[np.ndarray] = None   # (5, 2)
    score: float = 1.0


@dataclass(frozen=True)
class IdentityCondition:
    """Conditioning identities c_id, one row per image (paper: c_id = -λ_id · e)."""

    vectors: np.ndarray                # [B, 512] float32
    lambda_id: float = 1.0
    max_angle: float = 0.0
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def embed_faces(face_models: FaceModels, image: np.ndarray, *, pick: str | int = "largest",
                image_index: int = 0) -> FaceEmbedding:
    """Detect faces in ``image`` and embed one: the largest (the reference's choice) or the one at ``pick``."""
    if face_models.arcface is None:
        raise ModelFileError("no ArcFace model is loaded: load buffalo_l (w600k_r50.onnx). " + BUFFALO_HINT)
    faces = face_models.detector.detect(image)
    if not faces:
        raise NoFaceError(f"no face found in image {image_index} ({image.shape[1]}x{image.shape[0]})")
    if pick == "largest":
        face = faces[0]
    else:
        if not 0 <= int(pick) < len(faces):
            raise NoFaceError(f"image {image_index} has {len(faces)} face(s); face index {pick} does not exist")
        face = faces[int(pick)]
    vec = face_models.arcface.embed(image, face.kps)
    return FaceEmbedding(vector=vec, bbox=np.asarray(face.bbox), kps=np.asarray(face.kps), score=float(face.score))


def embed_images(face_models: FaceModels, images, pick: str | int = "largest") -> list[FaceEmbedding]:
    """ArcFace embedding e of the chosen face of each image (an image without one is named in the error).

    ``images``: anything ``nullface.faces.imageio.to_nhwc`` accepts (a ComfyUI IMAGE, arrays, PIL images)."""
    arrays = [to_uint8(im[..., :3]) for im in to_nhwc(images)]
    return [embed_faces(face_models, a, pick=pick, image_index=i) for i, a in enumerate(arrays)]


def rotate_within_angle(v: np.ndarray, max_angle: float, seed: int) -> np.ndarray:
    """Rotate ``v`` by a seeded random angle in [0, max_angle] degrees towards a random direction.

    Same draws as the reference: angle ~ U(0, max_angle), then a Gaussian direction made
    orthogonal to v; the norm of v is kept.
    """
    rng = np.random.RandomState(seed)
    norm = np.linalg.norm(v)
    u = v / norm
    angle = rng.uniform(0, np.radians(max_angle))
    d = rng.randn(len(u))
    d -= d.dot(u) * u
    d /= np.linalg.norm(d)
    return ((np.cos(angle) * u + np.sin(angle) * d) * norm).astype(np.float32)


def negate_identity(embedding: np.ndarray, lambda_id: float = 1.0, max_angle: float = 0.0,
                    seed: int = 0) -> np.ndarray:
    """c_id = -λ_id · e, with -e optionally rotated by up to ``max_angle`` degrees first (reference order)."""
    e = np.asarray(embedding, np.float32).reshape(-1)
    if e.shape[0] != EMBED_DIM or not np.all(np.isfinite(e)):
        raise InputError(f"an identity embedding must be 512 finite numbers, got shape {e.shape}")
    c = -e
    if max_angle > 0:
        c = rotate_within_angle(c, max_angle, seed)
    return (lambda_id * c).astype(np.float32)


def negate_identities(embeddings: Sequence[FaceEmbedding | np.ndarray], lambda_id: float = 1.0,
                      max_angle: float = 0.0, seed: int = 0, seeds: Sequence[int] | None = None) -> IdentityCondition:
    """c_id for each image's embedding (image i uses seed + i for its rotation, or ``seeds[i]`` when given)."""
    if len(embeddings) == 0:
        raise InputError("no identity embeddings were given")
    if seeds is not None and len(seeds) != len(embeddings):
        raise InputError(f"{len(seeds)} seeds for {len(embeddings)} embeddings")
    rows = [negate_identity(e.vector if isinstance(e, FaceEmbedding) else e, lambda_id, max_angle,
                            seed + i if seeds is None else int(seeds[i]))
            for i, e in enumerate(embeddings)]
    return IdentityCondition(np.stack(rows), lambda_id, max_angle, seed)


def null_identity(batch: int) -> np.ndarray:
    """∅: the reference's null identity, a zero 512-vector (still passed through the adapter)."""
    return np.zeros((batch, EMBED_DIM), np.float32)


def load_face_models(insightface_root: str | Path | None = None, name: str = "buffalo_l", *,
                     detector: str = "auto", providers: Sequence[str] | str | None = None,
                     score_threshold: float = 0.5, min_size: int = 0) -> FaceModels:
    """The face detector and ArcFace from an insightface root (``root/models/buffalo_l``).

    ``detector``: ``insightface`` (SCRFD, det_10g.onnx), ``dlib`` (offline fallback), or ``auto``
    (SCRFD when buffalo_l is there, else dlib). Without buffalo_l there is no ArcFace: detection works,
    identity embedding does not, and says so.
    """
    from .detect import make_detector
    folder = None
    if insightface_root is not None:
        try:
            folder = find_buffalo(insightface_root, name)
        except ModelFileError:
            if detector == "insightface":
                raise
    det = make_detector(detector, model_dir=folder, providers=providers, score_threshold=score_threshold,
                        min_size=min_size)
    arcface = None
    if folder is not None and (folder / "w600k_r50.onnx").is_file():
        arcface = ArcFace(folder / "w600k_r50.onnx", providers)
    elif folder is None:
        log.warning("no '%s' pack under %s: faces can be detected (%s) but not embedded. %s",
                    name, insightface_root, det.name, BUFFALO_HINT)
    return FaceModels(detector=det, arcface=arcface, source=str(folder or ""))
