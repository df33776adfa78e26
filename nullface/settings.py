"""The method's settings in one dataclass; defaults are the paper's comparison settings."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import InputError


@dataclass(frozen=True)
class NullFaceSettings:
    """NullFace parameters (paper symbols in brackets). Defaults reproduce the paper's Table 1 setup."""

    steps: int = 100               # T, DDIM inference steps (1000 training steps, "leading" spacing)
    t_skip: int = 70               # T_skip: the first T_skip of the T steps are skipped; the last T - T_skip run
    lambda_cfg: float = 10.0       # λ_cfg, identity guidance scale (eq. 3)
    lambda_id: float = 1.0         # λ_id, c_id = -λ_id · e
    ip_adapter_scale: float = 1.0  # λ_img of IP-Adapter (eq. 2), on both paths as in the reference
    mask_delay: int = 10           # running steps before the mask (eq. 4) is applied
    seed: int = 0                  # seeds the inversion noise and the identity rotation
    max_angle: float = 0.0         # random rotation of -e up to this many degrees (0 = pure negation)
    prompt: str = ""               # optional attribute prompt on the conditional path (papers/002)
    soft_mask: bool = False        # False: binarize at 0.5 + nearest resize (the reference); True: area-averaged
    exact_last_step: bool = False  # opt-in: also invert the last step (1 more UNet call) so the null path
                                   # returns the input latents exactly; the reference zeroes that noise map
    inversion_batch: int = 0       # UNet evaluations per inversion call (speed vs memory and progress only;
                                   # same result); 0 = auto: 1 on the CPU (a call stays short), 8 elsewhere

    @property
    def sample_steps(self) -> int:
        """Number of denoising steps that run: T - T_skip."""
        return self.steps - self.t_skip

    @property
    def inversion_steps(self) -> int:
        """UNet evaluations per image spent by the inversion: the used steps, less the zeroed last one."""
        return max(0, self.sample_steps - (0 if self.exact_last_step else 1))

    def validate(self) -> "NullFaceSettings":
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise InputError(f"steps must be an integer in 1..1000, got {self.steps!r}")
        if not isinstance(self.t_skip, int) or not 0 <= self.t_skip <= self.steps:
            raise InputError(f"t_skip must be an integer in 0..steps ({self.steps}), got {self.t_skip!r}")
        if not 0 <= self.mask_delay:
            raise InputError(f"mask_delay must be >= 0, got {self.mask_delay!r}")
        if self.lambda_id < 0:
            raise InputError(f"lambda_id must be >= 0 (the identity is negated for you), got {self.lambda_id!r}")
        if not 0 <= self.max_angle <= 180:
            raise InputError(f"max_angle must be in 0..180 degrees, got {self.max_angle!r}")
        if self.inversion_batch < 0:
            raise InputError(f"inversion_batch must be >= 0 (0 = auto), got {self.inversion_batch!r}")
        for name in ("lambda_cfg", "ip_adapter_scale", "lambda_id"):
            value = getattr(self, name)
            if value != value or value in (float("inf"), float("-inf")):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)
