"""Reverse Personalization's settings (papers/002); the defaults are the authors' reference code's.

The guidance is ε̂ = ε(x_t, ĉ_attr, ∅) + w · (ε(x_t, "", λ_id e) − ε(x_t, ĉ_attr, ∅)): only w < 0 steers away
from the identity e. w = 0 replays the inversion (the input comes back), w > 0 steers towards e, and
λ_id = 0 or an IP-Adapter scale of 0 leave the identity path without the identity: all are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...diffusion.dpmsolver import DPMSchedule, dpm_schedule, linspace_timesteps
from ...errors import InputError
from ...schema import Settings, setting


@dataclass(frozen=True)
class ReversePersonalizationSettings(Settings):
    """Reverse Personalization parameters; the defaults are the authors' (their reference's argument names in
    each field's source)."""

    METHOD = "revpers"
    KEEP = ()
    KEEP_SOURCE = "papers/002: the whole face (the method has no region mask)"

    steps: int = setting(100, "DPM-Solver++ steps of the inversion and of sampling (authors: 100).",
                         source="reference num_inversion_steps=100", min=1, max=1000)
    skip: float = setting(0.7, "Fraction of the diffusion time skipped: the steps run from t = (1 - skip)·1000 - 1 "
                               "down to 1. Higher keeps more of the input (authors: 0.7).",
                          source="reference skip=0.7", min=0.0, max=0.99, step=0.01)
    guidance_scale: float = setting(-10.0, "Identity guidance w, < 0: negative steers away from the face's identity "
                                           "(0 replays the input, > 0 steers towards it). More negative = more "
                                           "anonymous, less faithful (authors: -10).",
                                    source="reference guidance_scale=-10.0; paper 002: negative guidance",
                                    min=-30.0, lt=0.0, step=0.5)
    id_scale: float = setting(1.0, "λ_id, > 0: the identity condition is λ_id × the ArcFace embedding (authors: 1.0).",
                              source="reference id_emb_scale=1.0", gt=0.0, max=5.0, step=0.05)
    ip_adapter_scale: float = setting(1.0, "IP-Adapter scale on both paths, > 0: at 0 the identity never reaches "
                                           "the UNet (authors: 1.0).", source="reference ip_adapter_scale=1.0",
                                      gt=0.0, max=2.0, step=0.05, flag="--ip-scale")
    prompt: str = setting("", "Attribute prompt ĉ_attr that replaces c_attr during reverse diffusion, e.g. "
                              "'an elderly man'. Empty = plain anonymization.",
                          source="reference attribute_prompt=None; paper 002", multiline=True)
    seed: int = setting(0, "Seed of the inversion noise (same seed, same output on the same device).",
                        source="reference seed=0", min=0, max=0xFFFFFFFF)
    crop_size: int = setting(1024, "Face crop size the model works at in whole photos (SDXL's native 1024, "
                                   "the authors' face_image_size).", source="reference face_image_size=1024",
                             min=64, max=2048, step=8, flag="")

    def rules(self) -> None:
        if self.crop_size % 8:
            raise InputError(f"crop_size must be a multiple of 8, got {self.crop_size}")

    @property
    def work_per_face(self) -> int:
        """Progress units one face costs: its inversion steps and its sampling steps."""
        return 2 * self.steps

    def schedule(self) -> DPMSchedule:
        return dpm_schedule(linspace_timesteps(self.steps, self.skip))
