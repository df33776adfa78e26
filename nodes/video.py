"""Video nodes: NullFace Anonymize Video (a frame sequence, tracked) and NullFace Save Anonymized Video.

Frames come from ComfyUI's core Load Video -> Get Video Components (IMAGE batch, AUDIO, fps) or from
VideoHelperSuite's loaders. Long videos that VideoHelperSuite's Meta Batch Manager splits into several
queued runs keep their tracks: the node keeps the tracking state between runs (on the node object, which
ComfyUI keeps while the graph is unchanged) when ``sequence`` is ``part of a longer video``.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from ..nullface.methods.nullface.pipeline import crop_anonymizer
from ..nullface.methods.nullface.settings import NullFaceSettings
from ..nullface.privacy.photo import PhotoOptions
from ..nullface.privacy.video import VideoOptions, anonymize_frames

from ._common import CATEGORY, FACE_MODELS, PIPE, Progress, cancellable, check_interrupt, images_to_numpy, \
    numpy_to_images
from .method import IP_SCALE, LAMBDA_CFG, LAMBDA_ID, MASK_DELAY, SEED, STEPS, T_SKIP
from .photo import CROP_SIZE, NO_FACE, ON_FAILURE, photo_audit
from .widgets import keep_widget

CAT = f"{CATEGORY}/video"
V = VideoOptions()
SEQUENCE = ["whole video", "part of a longer video"]


CUT = 30.0          # mean change (0..255) of a 32x32 gray thumbnail above which a run does not continue the last


def _fingerprint(frame: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _thumb(frame: np.ndarray) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(frame).convert("L").resize((32, 32), Image.BILINEAR), np.float32)


class VideoSession:
    """The tracking state of one video across queued runs, and when to start again.

    A run continues the video unless: ``sequence`` is ``whole video`` (every run is a video of its own), the
    ``video_id`` changed, the frame size changed, the run starts with the first frame of the video being
    tracked (the same video queued again from its start), or its first frame does not follow the last run's
    last frame (a mean change over ``CUT``: another video). A cut inside a video that falls exactly between
    two runs starts new tracks too; the faces are anonymized all the same.
    """

    def __init__(self):
        self.state, self.key, self.first, self.last = None, None, None, None

    def begin(self, frames: list[np.ndarray], sequence: str, video_id: str) -> bool:
        """Whether this run starts a new video (the state is then dropped)."""
        first = _fingerprint(frames[0])
        key = (video_id, frames[0].shape)
        cut = self.last is not None and float(np.abs(_thumb(frames[0]) - self.last).mean()) > CUT
        new = sequence == SEQUENCE[0] or self.state is None or key != self.key or first == self.first or cut
        if new:
            self.state, self.key, self.first = None, key, first
        self.last = _thumb(frames[-1])
        return new


class NullFaceAnonymizeVideo:
    """Every face of every frame anonymized, one new identity per tracked person, fail closed in time."""

    DESCRIPTION = ("Anonymizes a sequence of video frames (an IMAGE batch from Load Video -> Get Video Components "
                   "or VideoHelperSuite). Faces are tracked: each person gets one new identity and seed for all "
                   "frames, frames where the detector misses a tracked face are anonymized from the interpolated "
                   "box, and tracks are padded at both ends. With 'part of a longer video' the tracks continue "
                   "across queued runs (Meta Batch Manager) and start again on a new video.")

    @classmethod
    def INPUT_TYPES(cls):
        req = {"pipe": (PIPE, {"tooltip": "From 'NullFace Load SD1.5 + FaceID'."}),
               "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models' (detector + ArcFace)."}),
               "frames": ("IMAGE", {"tooltip": "The video's frames, in order (one size)."}),
               "keep": keep_widget(NullFaceSettings),
               "on_failure": ON_FAILURE, "on_no_face": NO_FACE,
               "sequence": (SEQUENCE, {"default": SEQUENCE[0], "tooltip": "whole video: each run is a video of "
                            "its own. part of a longer video: the tracks continue from the previous run (Meta "
                            "Batch Manager) until a new video starts (new video_id, new size, or its first frame "
                            "again)."}),
               "max_gap": ("INT", {"default": V.max_gap, "min": 0, "max": 300,
                                   "tooltip": "Frames a face may go undetected and still be the same track; those "
                                              "frames are anonymized from the interpolated box."}),
               "pad": ("INT", {"default": V.pad, "min": 0, "max": 60,
                               "tooltip": "Frames anonymized before a track's first and after its last detection."}),
               "smooth": ("INT", {"default": V.smooth, "min": 0, "max": 30,
                                  "tooltip": "Crop geometry averaged over this many frames on either side."}),
               "steps": STEPS, "t_skip": T_SKIP, "lambda_cfg": LAMBDA_CFG, "lambda_id": LAMBDA_ID,
               "ip_adapter_scale": IP_SCALE, "mask_delay": MASK_DELAY, "seed": SEED, "crop_size": CROP_SIZE}
        return {"required": req, "optional": {
            "video_id": ("STRING", {"default": "", "tooltip": "Optional name of the video: a new name starts new "
                                                              "tracks (part of a longer video)."}),
            "audit_tries": ("INT", {"default": 1, "min": 0, "max": 10,
                                    "tooltip": "0: off, faces reported 'not audited'. N (default 1): check each "
                                               "face with dlib's recognizer and retry with stronger settings up to "
                                               "N tries; a face still recognized then fails (on_failure)."})}}

    SETTINGS = NullFaceSettings
    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("frames", "report", "tracks")
    OUTPUT_TOOLTIPS = ("The frames with every face anonymized.",
                       "JSON: every track with its frames, boxes, source (detected, interpolated, padded) and "
                       "status, and faces left out by the face models' minimum size (ignored).",
                       "People tracked so far in this video.")
    FUNCTION = "anonymize"
    CATEGORY = CAT

    @cancellable
    def anonymize(self, pipe, face_models, frames, keep, on_failure, on_no_face, sequence, max_gap, pad, smooth,
                  steps, t_skip, lambda_cfg, lambda_id, ip_adapter_scale, mask_delay, seed, crop_size,
                  video_id="", audit_tries=1):
        from ..nullface.faces.regions import parse_regions
        s = NullFaceSettings(steps=steps, t_skip=t_skip, lambda_cfg=lambda_cfg, lambda_id=lambda_id,
                             ip_adapter_scale=ip_adapter_scale, mask_delay=mask_delay, seed=seed).validate()
        opts = PhotoOptions(crop_size=crop_size, keep=parse_regions(keep), on_failure=on_failure,
                            on_no_face=on_no_face).validate()
        video = VideoOptions(max_gap=max_gap, pad=pad, smooth=smooth).validate()
        arrays = images_to_numpy(frames)
        audit = photo_audit(self, face_models, audit_tries)
        anonymizer = crop_anonymizer(pipe, face_models, s, audit=audit, max_tries=max(1, audit_tries),
                                     callback=lambda info: check_interrupt())
        out, report = run_video(self, arrays, face_models.detector, anonymizer, opts, video, sequence, video_id)
        if not pipe.keep_loaded:
            pipe.release()
        return (numpy_to_images(out), report["text"], report["tracks_found"])


def run_video(node, arrays, detector, anonymizer, opts, video, sequence: str, video_id: str = ""):
    """What the video node does around the engine: the session across runs, progress per frame, the report."""
    session = getattr(node, "_session", None) or VideoSession()
    node._session = session
    session.begin(arrays, sequence, video_id)
    bar = Progress(len(arrays))
    whole = sequence == SEQUENCE[0]
    if whole:
        opts_run = opts
    else:      # a run without faces is no error while the video may show them later (reported per run)
        from dataclasses import replace
        opts_run = replace(opts, on_no_face="pass")
    out, session.state = anonymize_frames(arrays, detector, anonymizer, opts_run, video, state=session.state,
                                          final=whole, progress=lambda done, total: bar({"steps": 1}))
    bar.finish()
    report = session.state.report()
    report["text"] = json.dumps({k: v for k, v in report.items() if k != "text"}, indent=1)
    return out, report


class NullFaceSaveAnonymizedVideo:
    """Saves frames (+ audio) as an H.264 MP4 with no metadata, as ``<prefix>_<counter>.mp4``."""

    CATEGORY = f"{CATEGORY}/save"
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    DESCRIPTION = ("Saves an anonymized video without any metadata: unlike ComfyUI's Save Video it copies no tag "
                   "of the input container (GPS, device, creation time) and embeds no workflow or prompt. Names "
                   "are <prefix>_<counter>.mp4, never derived from the input. The audio (optional) is encoded "
                   "as AAC.")

    @classmethod
    def INPUT_TYPES(cls):
        from ..nullface.privacy.video_io import DEFAULT_CRF
        return {"required": {
            "frames": ("IMAGE", {"tooltip": "The anonymized frames."}),
            "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.001, "forceInput": True,
                              "tooltip": "Frame rate: connect Get Video Components' fps (the input's)."}),
            "filename_prefix": ("STRING", {"default": "anonymized", "tooltip": "Files are <prefix>_00001.mp4, ...; "
                                           "letters, digits, '_' and '-' only."}),
            "crf": ("INT", {"default": DEFAULT_CRF, "min": 0, "max": 51,
                            "tooltip": "H.264 quality: 0 = lossless, 18 = visually lossless, higher = smaller."})},
            "optional": {"audio": ("AUDIO", {"tooltip": "The input's audio (Get Video Components); leave "
                                                        "unconnected to save the video silent."}),
                         "subfolder": ("STRING", {"default": "", "tooltip": "Optional folder in the output folder."})}}

    def save(self, frames, fps, filename_prefix="anonymized", crf=18, audio=None, subfolder=""):
        from ..nullface.privacy.video_io import save_video
        from .save import check_subfolder, output_directory
        sub = check_subfolder(subfolder)
        folder = output_directory() / sub if sub else output_directory()
        waveform = None
        if audio is not None:
            w = audio["waveform"]
            w = w[0] if w.ndim == 3 else w
            waveform = (w.detach().float().cpu().numpy(), int(audio["sample_rate"]))
        path = save_video(images_to_numpy(frames), fps, folder, filename_prefix, waveform, crf)
        return {"ui": {"images": [{"filename": path.name, "subfolder": sub, "type": "output"}], "animated": (True,)}}


NODE_CLASS_MAPPINGS = {"NullFaceAnonymizeVideo": NullFaceAnonymizeVideo,
                       "NullFaceSaveAnonymizedVideo": NullFaceSaveAnonymizedVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"NullFaceAnonymizeVideo": "NullFace Anonymize Video",
                              "NullFaceSaveAnonymizedVideo": "NullFace Save Anonymized Video"}
