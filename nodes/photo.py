"""Whole-photo nodes: detect every face, crop, region masks, paste back, and Anonymize Photo in one node."""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from ..nullface.faces.crop import paste_face
from ..nullface.privacy.photo import (PhotoOptions, anonymize_photos, as_rgb, detect_batch, photo_report, prepare_crop,
                                      select)
from ..nullface.privacy.policy import no_face
from ..nullface.methods.anonymizer import crop_audit
from ..nullface.methods.nullface.pipeline import crop_anonymizer
from ..nullface.faces.regions import REGIONS, face_landmarks, image_region_mask, region_mask
from ..nullface.methods.nullface.settings import NullFaceSettings

from ._common import (CATEGORY, FACE_MODELS, FACES, PIPE, Progress, cancellable, images_to_numpy,
                      masks_to_numpy, numpy_to_images, release_pipe)
from .method import IP_SCALE, LAMBDA_CFG, LAMBDA_ID, MASK_DELAY, SEED, STEPS, T_SKIP
from .widgets import keep_widget

log = logging.getLogger("nullface")
CROPS = "NULLFACE_CROPS"
CAT = f"{CATEGORY}/photo"
NO_FACE = (["error", "pass"], {"default": "error", "tooltip": "An image without faces: stop with an error naming "
                                                                "it, or pass it through (reported)."})
ON_FAILURE = (["error", "blur", "pixelate", "keep"], {
    "default": "error", "tooltip": "A face found but not anonymized: stop with an error (nothing is output), "
                                   "blur or pixelate that face, or keep it unchanged with a loud warning."})
REGION_TIPS = {
    "eyes": "Include both eyes (with the lids), from the landmarks.",
    "brows": "Include both eyebrows.",
    "nose": "Include the nose (bridge to nostrils).",
    "mouth": "Include the lips.",
    "skin": "Include the skin: the face without eyes, brows and mouth (the nose is skin).",
    "face": "Include the whole face, forehead to chin.",
}
CROP_SIZE = ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                     "tooltip": "Size of the aligned face crops (512 = what SD1.5 and the paper use)."})


class NullFaceDetectFaces:
    """Every face in each image (boxes, landmarks), with the detector of the face models."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models'."}),
                             "image": ("IMAGE", {"tooltip": "Photos of any size, one or a batch."}),
                             "on_no_face": NO_FACE}}

    RETURN_TYPES = (FACES, "INT", "INT")
    RETURN_NAMES = ("faces", "count", "ignored")
    OUTPUT_TOOLTIPS = ("The faces to anonymize.", "How many faces are to be anonymized.",
                       "Faces left out by the minimum face size of 'Load Face Models' (not cropped, not "
                       "anonymized: they stay as they are; listed in the log with box and reason).")
    FUNCTION = "detect"
    CATEGORY = CAT
    DESCRIPTION = ("Finds every face in each image with the detector of 'NullFace Load Face Models' (its score "
                   "threshold and minimum size apply; smaller faces are counted as ignored and listed in the log). "
                   "Feeds 'NullFace Crop Faces'.")

    def detect(self, face_models, image, on_no_face):
        faces = detect_batch(images_to_numpy(image), face_models.detector, on_no_face)
        return (faces, faces.count(), faces.ignored_count())


class NullFaceCropFaces:
    """Aligned square crops of every detected face (a batch of all faces of all images)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "The images the faces were detected in."}),
                             "faces": (FACES, {"tooltip": "From 'NullFace Detect Faces'."}),
                             "crop_size": CROP_SIZE,
                             "zoom": ("FLOAT", {"default": 1.0, "min": 0.5, "max": 3.0, "step": 0.05,
                                                "tooltip": "Framing: 1.0 = FFHQ/CelebA-HQ alignment (the paper's "
                                                           "inputs); larger shows more around the face."})}}

    RETURN_TYPES = ("IMAGE", CROPS)
    RETURN_NAMES = ("crops", "crop_info")
    FUNCTION = "crop"
    CATEGORY = CAT
    DESCRIPTION = ("Aligned square crops (FFHQ framing at zoom 1.0) of every face found by 'NullFace Detect Faces', "
                   "as one batch, largest face first. Anonymize the crops with any method's aligned-face node, then "
                   "'NullFace Paste Faces' puts them back using crop_info.")

    def crop(self, image, faces, crop_size, zoom):
        arrays = images_to_numpy(image)
        if len(arrays) != len(faces.faces):
            raise ValueError(f"{len(arrays)} images but faces for {len(faces.faces)}: use the same batch")
        opts = PhotoOptions(crop_size=crop_size, zoom=zoom, keep=()).validate()   # masks come from Region Mask
        crops = [replace(prepare_crop(a, f, opts), image_index=i)
                 for i, (a, fs) in enumerate(zip(arrays, faces.faces)) for f in fs]
        if not crops:
            raise ValueError("no faces to crop: every image was passed through without a face")
        return (numpy_to_images([c.image for c in crops]), crops)


class NullFaceFaceRegionMask:
    """Masks of facial regions (from landmarks) for each crop, or for each image: white = the ticked regions."""

    @classmethod
    def INPUT_TYPES(cls):
        req = {"crop_info": (CROPS, {"tooltip": "From 'NullFace Crop Faces'."})}
        req.update({r: ("BOOLEAN", {"default": r in NullFaceSettings.KEEP, "tooltip": REGION_TIPS[r]})
                    for r in REGIONS})
        req["grow"] = ("INT", {"default": 0, "min": -128, "max": 128,
                               "tooltip": "Grow (+) / shrink (-) the regions all around, pixels."})
        req["feather"] = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 128.0, "step": 0.5,
                                    "tooltip": "Width of the soft edge, pixels (0 = hard mask, as the paper)."})
        return {"required": req, "optional": {
            "space": (["crop", "image"], {"default": "crop", "tooltip": "crop: one mask per face crop (for the "
                                          "method on the crops); image: one mask per photo, all faces together."}),
            "image": ("IMAGE", {"tooltip": "With space = image: the photos (their count and size). Without it "
                                           "the sizes recorded by Crop Faces are used."})}}

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "mask"
    CATEGORY = CAT
    DESCRIPTION = ("Masks of the ticked facial regions from each face's landmarks (white = the regions), per crop "
                   "or per photo. Needs crop_info from 'NullFace Crop Faces'. Feed it to 'NullFace Region Mask' "
                   "with mask_means = keep to keep these regions visible.")

    def mask(self, crop_info, grow, feather, space="crop", image=None, **regions):
        names = [r for r in REGIONS if regions.get(r)]
        if not names:
            raise ValueError("tick at least one region")
        if space == "crop":
            out = [region_mask(c.to_crop(face_landmarks(c.face)), (c.size, c.size), names, grow, feather)
                   for c in crop_info]
            if not out:
                raise ValueError("no face crops: nothing to make a mask for")
            return (torch.from_numpy(np.stack(out)),)
        shapes = {c.image_index: c.image_shape for c in crop_info}
        if image is not None:
            count, shape = image.shape[0], tuple(image.shape[1:3])
        elif shapes:
            count, shape = max(shapes) + 1, next(iter(shapes.values()))
        else:
            raise ValueError("no face crops and no image: connect the image to size the masks")
        faces = [[c.face for c in crop_info if c.image_index == k] for k in range(count)]
        return (torch.from_numpy(np.stack([image_region_mask(shape, f, names, grow, feather) for f in faces])),)


class NullFacePasteFaces:
    """Pastes anonymized crops back with a feathered seam; pixels outside the faces stay identical."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "The original images."}),
                             "crop_info": (CROPS, {"tooltip": "From 'NullFace Crop Faces'."}),
                             "anonymized_crops": ("IMAGE", {"tooltip": "The crops after anonymization, same order."})}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "paste"
    CATEGORY = CAT
    DESCRIPTION = ("Pastes the anonymized crops back into the original images with a feathered seam inside each "
                   "face region; every pixel outside the faces stays identical. Needs the images and crop_info "
                   "of 'NullFace Crop Faces', and the crops in the same order.")

    def paste(self, image, crop_info, anonymized_crops):
        arrays = images_to_numpy(image)
        results = images_to_numpy(anonymized_crops)
        if len(results) != len(crop_info):
            raise ValueError(f"{len(results)} anonymized crops for {len(crop_info)} faces")
        for c, r in sorted(zip(crop_info, results), key=lambda x: x[0].face.area):
            if r.shape != c.image.shape:
                raise ValueError(f"an anonymized crop is {r.shape[1]}x{r.shape[0]}, expected {c.size}x{c.size}")
            arrays[c.image_index] = paste_face(arrays[c.image_index], c, r)
        return (numpy_to_images(arrays),)


class NullFaceAnonymizePhoto:
    """Every face of each photo anonymized with its own identity, pasted back; fails closed."""

    @classmethod
    def INPUT_TYPES(cls):
        req = {"pipe": (PIPE, {"tooltip": "From 'NullFace Load SD1.5 + FaceID'."}),
               "face_models": (FACE_MODELS, {"tooltip": "From 'NullFace Load Face Models' (detector + ArcFace)."}),
               "image": ("IMAGE", {"tooltip": "Photos of any size with any number of faces."}),
               "keep": keep_widget(NullFaceSettings),
               "on_failure": ON_FAILURE, "on_no_face": NO_FACE,
               "steps": STEPS, "t_skip": T_SKIP, "lambda_cfg": LAMBDA_CFG, "lambda_id": LAMBDA_ID,
               "ip_adapter_scale": IP_SCALE, "mask_delay": MASK_DELAY, "seed": SEED, "crop_size": CROP_SIZE}
        return {"required": req,
                "optional": {"keep_mask": ("MASK", {"tooltip": "Extra areas to keep visible (white), image size."}),
                             "audit_tries": ("INT", {"default": 1, "min": 0, "max": 10,
                                                     "tooltip": "0: off, faces reported 'not audited'. "
                                                                "N (default 1): check each face with dlib's "
                                                                "recognizer and retry with stronger settings up to "
                                                                "N tries; a face still recognized then fails."}),
                             "grow": ("INT", {"default": 0, "min": -64, "max": 64,
                                              "tooltip": "Grow (+) / shrink (-) the kept regions, crop pixels."}),
                             "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 64.0, "step": 0.5,
                                                   "tooltip": "Feather the kept regions (crop pixels)."})}}

    RETURN_TYPES = ("IMAGE", "STRING", "INT", "INT")
    RETURN_NAMES = ("image", "report", "faces_anonymized", "faces_ignored")
    OUTPUT_TOOLTIPS = ("The photos with every face anonymized.", "Per image: faces found, anonymized, failed and "
                       "ignored (with box and reason).", "Faces anonymized.",
                       "Faces left as they are by the minimum face size of 'Load Face Models' (listed in the "
                       "report); 0 when every detected face was handled.")
    FUNCTION = "anonymize"
    CATEGORY = CATEGORY
    SETTINGS = NullFaceSettings
    DESCRIPTION = ("NullFace on whole photos: detects every face, anonymizes each with its own identity (keeping the "
                   "chosen regions), pastes it back, and fails closed (on_failure). Needs 'NullFace Load SD1.5 + "
                   "FaceID' and 'NullFace Load Face Models'. Outputs a text report of every face.")

    @cancellable
    def anonymize(self, pipe, face_models, image, keep, on_failure, on_no_face, steps, t_skip, lambda_cfg,
                  lambda_id, ip_adapter_scale, mask_delay, seed, crop_size, keep_mask=None, audit_tries=1, grow=0,
                  feather=0.0):
        from ..nullface.faces.regions import parse_regions
        s = NullFaceSettings(steps=steps, t_skip=t_skip, lambda_cfg=lambda_cfg, lambda_id=lambda_id,
                             ip_adapter_scale=ip_adapter_scale, mask_delay=mask_delay, seed=seed).validate()
        opts = PhotoOptions(crop_size=crop_size, keep=parse_regions(keep), grow=grow, feather=feather,
                            on_failure=on_failure, on_no_face=on_no_face).validate()
        arrays = images_to_numpy(image)
        keeps = masks_to_numpy(keep_mask, len(arrays))
        audit = photo_audit(self, face_models, audit_tries)
        outs, report, total, ignored = photo_batch(
            arrays, keeps, face_models.detector, opts, s.work_per_face,
            lambda progress: crop_anonymizer(pipe, face_models, s, audit=audit, max_tries=max(1, audit_tries),
                                             callback=progress))
        release_pipe(pipe)
        return (numpy_to_images(outs), report, total, ignored)


def photo_batch(arrays, keeps, detector, opts, work_per_face: int, make_anonymizer):
    """What every whole-photo node does: detect all images first, so that the progress total covers every
    face (``work_per_face`` units each; audit retries add theirs when they start), then all photos through the
    engine's multi-image driver (``anonymize_photos``) with the anonymizer ``make_anonymizer(progress)``.
    Returns (images, text report, faces anonymized, faces ignored); a photo's error is raised.
    """
    found = detect_all(arrays, detector)
    for i, faces in enumerate(found):          # no face under policy 'error': before any diffusion
        kept, left = select(faces, opts)
        if not kept and not left:
            no_face(f"image {i}", opts.on_no_face)
    progress = Progress(work_per_face * faces_to_process(found, opts))
    results = anonymize_photos(arrays, detector, make_anonymizer(progress), opts, keep_masks=keeps, found=found)
    progress.finish()
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise failed
    return ([r.image for r in results], photo_report(results), sum(r.anonymized for r in results),
            sum(len(r.ignored) for r in results))


def photo_audit(node, face_models, audit_tries: int):
    """The re-ID audit of a whole-photo node: dlib's recognizer (``make_recognizers``; loaded once per node and
    kept on it), plus ArcFace as a second opinion when buffalo_l is loaded. None, with a warning, when
    ``audit_tries`` is 0 or dlib is not installed: each face is then reported 'not audited'."""
    from ..nullface.privacy.audit import audit_unavailable, make_recognizers
    why = "audit_tries = 0" if not audit_tries else audit_unavailable()
    if why is not None:
        log.warning("the anonymized faces are NOT audited (%s)", why)
        return None
    recognizers = make_recognizers(face_models.arcface, dlib=getattr(node, "_dlib", None))
    node._dlib = recognizers[0]
    return crop_audit(recognizers)


def detect_all(arrays, detector) -> list[list]:
    """The faces of every image, detected once and up front (so that a progress total can cover them all)."""
    return [list(detector.detect(as_rgb(a)[0])) for a in arrays]


def faces_to_process(found: list[list], opts: PhotoOptions) -> int:
    """How many of the detected faces will be anonymized (the others are ignored by ``opts``)."""
    return sum(len(select(faces, opts)[0]) for faces in found)


NODE_CLASS_MAPPINGS = {
    "NullFaceDetectFaces": NullFaceDetectFaces,
    "NullFaceCropFaces": NullFaceCropFaces,
    "NullFaceFaceRegionMask": NullFaceFaceRegionMask,
    "NullFacePasteFaces": NullFacePasteFaces,
    "NullFaceAnonymizePhoto": NullFaceAnonymizePhoto,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NullFaceDetectFaces": "NullFace Detect Faces",
    "NullFaceCropFaces": "NullFace Crop Faces",
    "NullFaceFaceRegionMask": "NullFace Face Region Mask (landmarks)",
    "NullFacePasteFaces": "NullFace Paste Faces",
    "NullFaceAnonymizePhoto": "NullFace Anonymize Photo (all faces)",
}
