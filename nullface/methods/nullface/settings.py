"""The method's settings in one dataclass; defaults are the paper's comparison settings.

Each numeric field carries its range and help (``FIELDS``): the validation, the nodes' widgets and the
CLI's flags all read them from here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ...errors import InputError
from ...diffusion.schedule import mask_delay_steps


def _p(default, help: str, lo: float | None = None, hi: float | None = None, positive: bool = False):
    """A field with its range: ``lo <= v <= hi``, or ``lo < v`` when ``positive``."""
    return field(default=default, metadata={"help": help, "min": lo, "max": hi, "positive": positive})


@dataclass(frozen=True)
class NullFaceSettings:
    """NullFace parameters (paper symbols in brackets). Defaults reproduce the paper's Table 1 setup."""

    steps: int = _p(100, "T, the number of DDPM steps (paper: 100).", 1, 1000)
    t_skip: int = _p(70, "T_skip: steps skipped before the identity guidance; the last T - T_skip steps run, at "
                         "least one. Higher keeps more of the input (paper: 70).", 0, 999)
    lambda_cfg: float = _p(10.0, "λ_cfg, identity guidance (eq. 3), > 0 (0 is the null path: nothing anonymized). "
                                 "Higher = more anonymous, 20+ loses realism (paper: 10).", 0.0, 30.0, True)
    lambda_id: float = _p(1.0, "λ_id: the condition is -λ_id × the face's ArcFace embedding, > 0 (paper: 1.0).",
                          0.0, 5.0, True)
    ip_adapter_scale: float = _p(1.0, "IP-Adapter scale λ_img, > 0: at 0 the identity never reaches the UNet "
                                      "(paper: 1.0).", 0.0, 2.0, True)
    mask_delay: float = _p(1 / 3, "Fraction of the T - T_skip running steps before the region mask (eq. 4) "
                                  "applies, 0..1; the mask always applies on the last step (paper: 1/3, i.e. "
                                  "10 of 30, the mask from step 80 of 100).", 0.0, 1.0)
    seed: int = _p(0, "Seed of the inversion noise and the identity rotation (same seed, same result on the "
                      "same device).", 0, 0xFFFFFFFF)
    max_angle: float = _p(0.0, "Rotate the negated identity by a seeded random angle up to this (degrees) for "
                               "more varied faces; 0 = pure negation (paper).", 0.0, 180.0)
    prompt: str = ""               # optional attribute prompt on the conditional path (papers/002)
    soft_mask: bool = False        # False: binarize at 0.5 + nearest resize (the reference); True: area-averaged
    exact_last_step: bool = False  # opt-in: also invert the last step (1 more UNet call) so the null path
                                   # returns the input latents exactly; the reference zeroes that noise map
    inversion_batch: int = _p(0, "UNet evaluations per inversion call (speed vs memory and progress only; same "
                                 "result); 0 = auto: 1 on the CPU (a call stays short), 8 elsewhere.", 0, None)

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

    def validate(self) -> "NullFaceSettings":
        """Check every range; settings that would anonymize nothing are refused (fail closed)."""
        for f in fields(self):
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is None and hi is None:
                continue
            v = getattr(self, f.name)
            integer = isinstance(f.default, int)
            if integer and (not isinstance(v, int) or isinstance(v, bool)):
                raise InputError(f"{f.name} must be an integer, got {v!r}")
            if not integer and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise InputError(f"{f.name} must be a finite number, got {v!r}")
            if f.metadata.get("positive") and not v > lo:
                raise InputError(f"{f.name} must be > {lo:g}, got {v!r}: {f.metadata['help']}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
                raise InputError(f"{f.name} must be in {rng}, got {v!r}: {f.metadata['help']}")
        if self.t_skip >= self.steps:
            raise InputError(f"t_skip ({self.t_skip}) must be smaller than steps ({self.steps}): with "
                             f"t_skip = steps no step runs and nothing is anonymized")
        return self

    @classmethod
    def spec(cls, name: str) -> dict:
        """``{"default", "min", "max", "positive", "help"}`` of a field (for widgets and CLI flags)."""
        f = next(f for f in fields(cls) if f.name == name)
        return {"default": f.default, **f.metadata}

    def to_dict(self) -> dict:
        return asdict(self)
