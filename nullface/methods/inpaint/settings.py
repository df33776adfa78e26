"""Inpainting with attribute guidance's settings (papers/000); the defaults are the authors' code's
(github parham1998/Face-Anonymization).

What "anonymizes nothing" means for this method: it anonymizes by *erasing* the region m and repainting it;
the UNet sees the face only through the start latent x_T = √ᾱ·E(y) + √(1−ᾱ)·n at t = ``start_t``. No choice
of ρ, w_sim or w_dis brings the face back (ρ = 0 is plain SD inpainting, NullFace's Table 1 baseline, which
repaints the face too), so they are allowed. What keeps the face is (1) a repaint region that leaves too
little of the face (the photo pipeline's mask rule) and (2) a start less noisy than the sampler's first
timestep (991 for S = 45): the sampler then treats a latent that still holds the face as noise, so
``start_t`` below the first timestep is refused. Non-finite values are refused like everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError
from ...schema import Settings, setting

TRAIN_STEPS = 1000


def ldm_timestep_count(steps: int, train_steps: int = TRAIN_STEPS) -> int:
    """Timesteps of ldm's "uniform" DDIM schedule: 1, 1 + c, 1 + 2c, ... below ``train_steps`` (c = 1000 // S)."""
    return len(range(1, train_steps, train_steps // steps))


def first_timestep(steps: int, train_steps: int = TRAIN_STEPS) -> int:
    """The schedule's first (noisiest) timestep: 991 for S = 45."""
    return range(1, train_steps, train_steps // steps)[-1]


@dataclass(frozen=True)
class InpaintSettings(Settings):
    """Parameters of the inpainting method (paper symbols in the help); defaults = the authors' code."""

    METHOD = "inpaint"
    KEEP = ()
    KEEP_SOURCE = "authors' code: the parsed face is repainted (skin, nose, eyes, brows, mouth)"

    steps: int = setting(45, "DDIM steps S (ldm 'uniform' spacing: 1000 // S apart, so 45 gives 46 timesteps "
                             "991..1, as the authors run it).", source="authors' code (ddim_steps=45)",
                         min=1, max=1000, flag="--inpaint-steps")
    start_t: int = setting(999, "The image latent is noised to this training timestep to start (999 = almost pure "
                                "noise: the masked region is repainted from scratch, as the paper); at least the "
                                "schedule's first timestep (991 for 45 steps).", source="authors' code (t = 999)",
                           min=1, max=999)
    guidance_scale: float = setting(0.8, "ρ, the attribute guidance step: x_{t-1} -= σ_t ρ ∇ L (authors: 0.8; 0 = "
                                         "plain SD inpainting, no feature extractor needed).",
                                    source="paper 000 (attribute guidance); authors' code ρ = 0.8",
                                    min=0.0, max=1000.0, step=0.05, flag="--inpaint-guidance-scale")
    sim_weight: float = setting(1.0, "w_sim: pull the attributes towards the target image (authors: 1).",
                                source="authors' code", min=0.0, max=100.0, step=0.05)
    dissim_weight: float = setting(0.0, "w_dis: push the attributes away from the source face (authors: 0).",
                                   source="authors' code", min=0.0, max=100.0, step=0.05)
    seed: int = setting(0, "Seed of the start noise, the DDPM noise and the VAE posterior samples (drawn on the "
                           "CPU: same seed, same output on the same device).", min=0, max=0xFFFFFFFF)
    prompt: str = setting("", "Text prompt of the inpainting UNet (authors: empty).", source="authors' code")
    keep_unmasked: bool = setting(True, "Paste the original back outside the mask, so kept pixels are exactly the "
                                        "input's (the authors return the whole decoded image).",
                                  source="extension", flag="")

    def rules(self) -> None:
        first = first_timestep(self.steps)
        if self.start_t < first:
            raise InputError(f"start_t ({self.start_t}) must be at least the schedule's first timestep ({first} for "
                             f"{self.steps} steps): a start less noisy than the sampler assumes keeps the input's "
                             f"face in the repainted region")

    @property
    def sample_steps(self) -> int:
        """UNet evaluations per face: the ldm schedule's timesteps (46 for S = 45)."""
        return ldm_timestep_count(self.steps)

    @property
    def work_per_face(self) -> int:
        """Progress units one face costs: its denoising steps."""
        return self.sample_steps

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 0 and (self.sim_weight != 0 or self.dissim_weight != 0)
