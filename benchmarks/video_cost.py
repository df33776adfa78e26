"""Video: cost per frame and per face-frame, and temporal metrics, on clips made from the real photos.

Clips: scikit-image's astronaut moving across the frame, and insightface's t1.jpg (six faces) under a slow
pan and zoom. Each clip goes through ``nullface.privacy.video.anonymize_frames`` with

* ``engine``: NullFace with the tests' tiny random-weight models (``--engine tiny``, the real code path;
  random weights make noise faces, so its identity figures say nothing about the method), or the real
  SD1.5 architecture with random weights (``--engine sd15``: real UNet cost, slow on a CPU);
* ``stand-in``: an identity stand-in that pastes one fixed real face per track (another person of t1.jpg,
  aligned like the crop), which shows whether the tracking, cropping and pasting flicker.

Figures (per anonymizer and clip):
  seconds per frame and per face-frame, UNet evaluations per frame and per face-frame;
  flicker: mean |out(t+1) - warp(out(t))| inside the faces, the warp from Farneback optical flow computed on
  the INPUT frames, next to the same error of the input itself;
  identity consistency: dlib distance between a track's anonymized faces in consecutive frames (input: same);
  identity removal: dlib distance between the anonymized and the original face, per frame (> 0.6 = another
  person for dlib).

    python benchmarks/video_cost.py --frames 8 --crop-size 64

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nullface.faces.face import Face  # noqa: E402
from nullface.privacy.audit import DlibRecognizer  # noqa: E402
from nullface.privacy.photo import PhotoOptions, prepare_crop  # noqa: E402
from nullface.privacy.video import VideoOptions, anonymize_frames  # noqa: E402
from tests.video_clips import pan_zoom, slide  # noqa: E402


def clips(n: int) -> dict:
    import os

    import insightface
    from PIL import Image
    from skimage.data import astronaut
    t1 = np.asarray(Image.open(os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg"))
                    .convert("RGB"))
    return {"astronaut_moving": slide(astronaut(), n, (320, 240), list(np.linspace(0.4, 0.6, n)), scale=0.45)[0],
            "t1_pan_zoom": pan_zoom(t1, n, (640, 442), (0.0, 0.0, 1.0), (0.035, 0.04, 0.925))[0]}, t1


class StandIn:
    """One fixed real face per track: a donor face (t1.jpg's people, the astronaut) that dlib tells apart from
    the track's own face, chosen on the track's first crop and aligned into each crop's frame."""

    def __init__(self, donors, rec):
        self.rec = rec
        self.donors = [(im, f, rec.describe(im, box_face(f.bbox, None, None))) for im, f in donors]
        self.chosen: dict[int, int] = {}

    def __call__(self, image, crops):
        from nullface.faces.crop import crop_face
        out = []
        for c in crops:
            if c.seed_offset not in self.chosen:
                own = self.rec.describe(image, box_face(c.face.bbox, None, None))
                order = [(c.seed_offset + i) % len(self.donors) for i in range(len(self.donors))]
                self.chosen[c.seed_offset] = next((k for k in order if self.rec.score(own, self.donors[k][2]) > 0.6),
                                                  order[0])
            donor_image, donor_face, _ = self.donors[self.chosen[c.seed_offset]]
            out.append(crop_face(donor_image, donor_face, c.size).image)
        return out


def engine(kind: str, crop: int, detector):
    """NullFace's crop anonymizer on random weights and a UNet evaluation counter."""
    import torch

    from nullface.faces.identity import ArcFace, FaceModels
    from nullface.methods.nullface.pipeline import crop_anonymizer
    from nullface.methods.nullface.settings import NullFaceSettings
    from nullface.models.sd15 import load_pipe
    from tests.tiny_models import build_all
    paths = build_all(Path(tempfile.mkdtemp()))
    if kind == "tiny":
        pipe = load_pipe(paths["sd15"], paths["faceid_bin"], device="cpu", dtype="fp32")
    else:
        from benchmarks.anonymize_cost import faceid_random, sd15_random
        from nullface.models.sd15 import NullFacePipe, attach_faceid
        sd = sd15_random("cpu", torch.float32)
        pipe = NullFacePipe(sd, attach_faceid(sd, faceid_random(sd.unet)))
    count = {"evals": 0}
    pipe.unet.register_forward_pre_hook(lambda m, a: count.__setitem__("evals", count["evals"] + a[0].shape[0]))
    settings = NullFaceSettings(steps=10, t_skip=7)          # 3 running steps: the cost per step is what scales
    return crop_anonymizer(pipe, FaceModels(detector, ArcFace(paths["arcface"])), settings), count, settings


def box_face(bbox, kps=None, landmarks=None) -> Face:
    """A face known by its box only (the recognizer fits its own landmarks)."""
    return Face(np.asarray(bbox, np.float32), 1.0, np.zeros((5, 2), np.float32), landmarks)


def temporal(frames, out, tracks, rec) -> dict:
    """Flicker (output vs input warping error inside the faces), identity consistency and removal."""
    import cv2
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    h, w = gray[0].shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)
    per_frame: dict[int, list] = {}
    for t in tracks:
        for f in t["frames"]:
            per_frame.setdefault(f["frame"], []).append((t["track"], f["bbox"]))
    warp_out, warp_in = [], []
    for k in range(len(frames) - 1):
        flow = cv2.calcOpticalFlowFarneback(gray[k + 1], gray[k], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        m = grid + flow
        region = np.zeros((h, w), bool)
        for _, (x1, y1, x2, y2) in per_frame.get(k + 1, []):
            region[max(0, int(y1)):int(y2), max(0, int(x1)):int(x2)] = True
        if not region.any():
            continue
        for src, acc in ((out, warp_out), (frames, warp_in)):
            warped = cv2.remap(src[k], m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            acc.append(float(np.abs(src[k + 1].astype(np.float32) - warped.astype(np.float32))[region].mean()))
    consistency, consistency_in, removal = [], [], []
    for t in tracks:
        prev = prev_in = None
        for f in t["frames"]:
            geo = box_face(np.array(f["bbox"], np.float32), None, None)
            d_out = rec.describe(out[f["frame"]], geo)
            d_in = rec.describe(frames[f["frame"]], geo)
            removal.append(rec.score(d_out, d_in))
            if prev is not None:
                consistency.append(rec.score(d_out, prev))
                consistency_in.append(rec.score(d_in, prev_in))
            prev, prev_in = d_out, d_in
    mean = lambda v: round(float(np.mean(v)), 3) if v else None      # noqa: E731
    return {"flicker_output": mean(warp_out), "flicker_input": mean(warp_in),
            "identity_consistency": mean(consistency), "identity_consistency_input": mean(consistency_in),
            "identity_removal_mean": mean(removal), "identity_removal_min": round(min(removal), 3) if removal else None}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--crop-size", type=int, default=64)
    ap.add_argument("--engine", choices=("tiny", "sd15", "none"), default="tiny")
    args = ap.parse_args(argv)
    from nullface.faces.detect import DlibDetector
    det = DlibDetector(score_threshold=0.3)
    rec = DlibRecognizer()
    videos, t1 = clips(args.frames)
    from skimage.data import astronaut
    donors = [(t1, f) for f in det.detect(t1)] + [(astronaut(), det.detect(astronaut())[0])]
    anonymizers = {"stand-in": (StandIn(donors, rec), None, None)}
    if args.engine != "none":
        anonymizers["nullface-" + args.engine] = engine(args.engine, args.crop_size, det)
    opts = PhotoOptions(crop_size=args.crop_size, score_threshold=0.3)
    results = {}
    for name, frames in videos.items():
        for label, (anon, count, settings) in anonymizers.items():
            if count is not None:
                count["evals"] = 0
            t = time.perf_counter()
            out, state = anonymize_frames(frames, det, anon, opts, VideoOptions())
            seconds = time.perf_counter() - t
            rep = state.report()
            ff = max(1, rep["face_frames"])
            row = {"frames": len(frames), "tracks": rep["tracks_found"], "face_frames": rep["face_frames"],
                   # seconds include dlib's detection of every frame (CPU)
                   "seconds_per_frame": round(seconds / len(frames), 3), "seconds_per_face_frame": round(seconds / ff, 3)}
            if count is not None:
                row.update({"unet_evals_per_frame": round(count["evals"] / len(frames), 2),
                            "unet_evals_per_face_frame": round(count["evals"] / ff, 2),
                            "steps_inverted_and_sampled_per_face": [settings.inversion_steps, settings.sample_steps]})
            row.update(temporal(frames, out, rep["tracks"], rec))
            results[f"{name}/{label}"] = row
            print(f"{name:18s} {label:15s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
