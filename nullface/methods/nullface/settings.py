"""NullFace's settings (papers/003); the defaults are the paper's comparison settings (§4.5).

Every field is a ``nullface.schema.setting``: its range, help and source feed the validation, the nodes'
widgets, the CLI's flags and the README's table.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...diffusion.schedule import mask_delay_steps
from ...errors import InputError
from ...schema import Settings, setting


@dataclass(frozen=True)
class NullFaceSettings(Settings):
    """NullFace parameters (paper symbols in the help). Settings that anonymize nothing are refused:
    t_skip >= steps (no step runs), lambda_cfg, lambda_id or ip_adapter_scale <= 0 (eq. 3 is the null path,
    or the identity is the original's, or it never reaches the UNet)."""

    METHOD = "nullface"
    KEEP = ("eyes", "mouth")
    KEEP_SOURCE = "paper 003 §4.5: an eye-and-mouth-revealing mask"

    steps: int = setting(100, "T, the number of DDPM steps (paper: 100).", source="paper 003 §4.1, Fig. 3",
                         min=1, max=1000)
    t_skip: int = setting(70, "T_skip: steps skipped before the identity guidance; the last T - T_skip steps run, at "
                              "least one. Higher keeps more of the input (paper: 70).",
                          source="paper 003 §3.2, §4.5", min=0, max=999)
    lambda_cfg: float = setting(10.0, "λ_cfg, identity guidance (eq. 3), > 0 (0 is the null path: nothing "
                                      "anonymized). Higher = more anonymous, 20+ loses realism (paper: 10).",
                                source="paper 003 eq. 3, §4.3, §4.5", gt=0.0, max=30.0, step=0.5)
    lambda_id: float = setting(1.0, "λ_id: the condition is -λ_id × the face's ArcFace embedding, > 0 (paper: 1.0).",
                               source="paper 003 §3.2, §4.2, §4.5", gt=0.0, max=5.0, step=0.05)
    ip_adapter_scale: float = setting(1.0, "IP-Adapter scale λ_img, > 0: at 0 the identity never reaches the UNet "
                                           "(paper: 1.0).", source="paper 003 eq. 2; reference 1.0",
                                      gt=0.0, max=2.0, step=0.05, flag="--ip-scale")
    mask_delay: float = setting(1 / 3, "Fraction of the T - T_skip running steps before the region mask (eq. 4) "
                                       "applies, 0..1; the mask always applies on the last step (paper: 1/3, i.e. "
                                       "10 of 30, the mask from step 80 of 100).",
                                source="paper 003 §4.5 (mask at timestep 80), supp. §8", min=0.0, max=1.0,
                                step=0.01, round=0.0001)
    seed: int = setting(0, "Seed of the inversion noise and the identity rotation (same seed, same result on the "
                           "same device).", min=0, max=0xFFFFFFFF)
    max_angle: float = setting(0.0, "Rotate the negated identity by a seeded random angle up to this (degrees) for "
                                    "more varied faces; 0 = pure negation (paper).", source="reference code",
                               min=0.0, max=180.0, step=1.0, flag="")
    prompt: str = setting("", "Optional attribute prompt on the identity path, e.g. 'an elderly man'. Empty = the "
                              "paper's method.", source="papers/002 (attribute prompt)", multiline=True)
    soft_mask: bool = setting(False, "Off: binarize the mask at 0.5 and downsample nearest (the reference). On: keep "
                                     "feathered edges (extension).", source="reference code", flag="")
    exact_last_step: bool = setting(False, "Opt-in: also invert the last step (1 more UNet call) so that the null "
                                           "path returns the input latents exactly; the reference zeroes that "
                                           "noise map.", source="reference code (zeroed)", flag="")
    inversion_batch: int = setting(0, "UNet evaluations per inversion call (speed vs memory and progress only; same "
                                      "result); 0 = auto: 1 on the CPU (a call stays short), 8 elsewhere.",
                                   source="speed only", min=0, max=64, flag="")

    def rules(self) -> None:
        if self.t_skip >= self.steps:
            raise InputError(f"t_skip ({self.t_skip}) must be smaller than steps ({self.steps}): with "
                             f"t_skip = steps no step runs and nothing is anonymized")

    @property
    def sample_steps(self) -> int:
        """Number of denoising steps that run: T - T_skip."""
        return self.steps - self.t_skip

    @property
    def mask_delay_steps(self) -> int:
        """Running steps before the mask applies: ``mask_delay`` × (T - T_skip), rounded half up, and at
        most T - T_skip - 1 so that the mask applies on at least the last step (defaults: 10 of 30)."""
        return mask_delay_steps(self.mask_delay, self.sample_steps)

    @property
    def work_per_face(self) -> int:
        """Progress units one face costs: its inversion and denoising steps (one UNet call each per image)."""
        return self.inversion_steps + self.sample_steps

    @property
    def inversion_steps(self) -> int:
        """UNet evaluations per image spent by the inversion: the used steps, less the zeroed last one."""
        return max(0, self.sample_steps - (0 if self.exact_last_step else 1))
