"""NullFace on ComfyUI's own models: the pure math behind the native nodes (no ComfyUI imports).

ComfyUI samples in k-diffusion's variance-exploding form. With ᾱ the cumulative alpha of a training step
and σ² = (1 - ᾱ)/ᾱ, its latent is x = sqrt(1 + σ²) · x_vp, where x_vp = sqrt(ᾱ) x_0 + sqrt(1 - ᾱ) n is the
DDPM latent the engine (``nullface.diffusion.inversion``, ``nullface.methods.nullface.sampler``) works with, and a denoiser returns
D(x, σ) = x - σ ε. Everything here is written against that convention:

- the sigma table of SD1.5 as ComfyUI builds it, and the SIGMAS that reproduce the method's timesteps
  991 … 1 and end at σ(t = 0), not 0, as the reference's last step does;
- k-diffusion's DDPM sampler (the step of ComfyUI's ``sample_ddpm``) and a ``noise_sampler`` that replays
  the inverted noise maps z_t, so that ComfyUI's own sampler replays the inversion;
- the edit-friendly DDPM inversion written with that same step, so the replay is exact;
- the guidance of eqs. 3-4 on two predictions, and the mask delay;
- IP-Adapter FaceID: its identity tokens and the names of its attention layers and LoRA.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ...diffusion.masks import latent_mask
from ...diffusion.schedule import mask_delay_steps, sd15_schedule  # noqa: F401  (mask_delay_steps: re-exported)

# denoise(x [N,C,h,w] in ComfyUI's scaling, sigma [N]) -> D(x, σ) = x - σ ε   (k-diffusion's denoiser)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------ sigmas
def sd15_sigmas(num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """σ_t for t = 0 … 999 exactly as ComfyUI's ``ModelSamplingDiscrete`` builds SD1.5's ("linear" in ldm's
    naming = scaled linear): float64 betas and cumulative product, float32 sigmas."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    abar = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - abar) / abar) ** 0.5).float()


def sigma_to_timestep(sigma: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The training step of each σ: the nearest entry of ``table`` in log σ (ComfyUI's ``timestep``)."""
    dists = sigma.float().log().reshape(1, -1) - table.float().log()[:, None]
    return dists.abs().argmin(dim=0).view(sigma.shape)


def method_timesteps(steps: int, t_skip: int) -> torch.Tensor:
    """The timesteps that run: t_k for k = T_skip … T-1 (991, 981, …, 1 at T = 100), "leading" spacing."""
    return sd15_schedule(steps).timesteps[t_skip:]


def inversion_sigmas(table: torch.Tensor, steps: int, t_skip: int) -> torch.Tensor:
    """SIGMAS for the running steps: σ(t_k) for k = T_skip … T-1, then σ(t = 0).

    The last step of the reference goes from t = 1 to ᾱ_0 (``set_alpha_to_one = False``), so the table
    ends at σ(t = 0) > 0 instead of 0: k-diffusion's DDPM step then is exactly that step.
    """
    t = method_timesteps(steps, t_skip)
    return torch.cat([table[t], table[:1]]).float()


def alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = 1 / (1 + σ²)."""
    return 1.0 / (sigma * sigma + 1.0)


def step_index(sigma: torch.Tensor, sigmas: torch.Tensor) -> int:
    """Index i of the step whose σ_i is ``sigma`` (the first row's) in the sampler's ``sigmas``."""
    s = float(sigma.reshape(-1)[0])
    return int((sigmas[:-1].float().cpu() - s).abs().argmin())


# ComfyUI's prediction types (comfy.model_sampling), most derived first where one extends another.
PREDICTIONS = {"EPS": "ε", "V_PREDICTION": "v", "EDM": "EDM (v)", "X0": "x0", "IMG_TO_IMG": "x0", "CONST": "flow",
               "V_PREDICTION_EDM": "EDM (v)", "COSMOS_RFLOW": "flow", "X0_CONST": "x0"}


def prediction_problem(model_sampling) -> str | None:
    """Why a MODEL's ``model_sampling`` is not the method's, or None: NullFace's inversion and guidance are
    written for an ε-prediction SD1.5 UNet; a v-prediction (e.g. ModelSamplingDiscrete set to v_prediction),
    x0 or flow MODEL would run and return a wrong image without a word."""
    kind = next((c.__name__ for c in type(model_sampling).__mro__ if c.__name__ in PREDICTIONS), None)
    if kind == "EPS":
        return None
    what = f"predicts {PREDICTIONS[kind]} ({kind})" if kind else \
        f"has an unknown prediction type ({type(model_sampling).__name__})"
    return (f"the MODEL {what}; NullFace is an ε-prediction method for Stable Diffusion 1.5: remove the "
            "ModelSamplingDiscrete (or other model sampling) node, or set it to eps")


# ----------------------------------------------------------------------------------- DDPM step and sampler
def ddpm_std(sigma: torch.Tensor, sigma_prev: torch.Tensor) -> torch.Tensor:
    """σ_t of the DDPM posterior from σ to σ_prev: sqrt((1 - α)(1 - ᾱ_prev)/(1 - ᾱ)), α = ᾱ/ᾱ_prev."""
    a, a_prev = alpha_bar(sigma), alpha_bar(sigma_prev)
    alpha = a / a_prev
    return ((1 - alpha) * (1.0 - a_prev) / (1.0 - a)).sqrt()


def ddpm_mean(x_vp: torch.Tensor, sigma: torch.Tensor, sigma_prev: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """μ_t = (x_t - (1 - α) ε / sqrt(1 - ᾱ)) / sqrt(α): the step of k-diffusion's ``DDPMSampler_step``."""
    a, a_prev = alpha_bar(sigma), alpha_bar(sigma_prev)
    alpha = a / a_prev
    return (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - a).sqrt())


@torch.no_grad()
def sample_ddpm(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                callback: Optional[Callable[[dict], None]] = None, disable=None,
                noise_sampler: Optional[Callable] = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) in k-diffusion's form, the algorithm of ComfyUI's ``sample_ddpm``.

    Each step: x_vp = x / sqrt(1 + σ²), ε = (x - D(x, σ))/σ, x_vp ← μ_t(x_vp, ε) + σ_t z with
    z = noise_sampler(σ, σ_next) when σ_next > 0, rescaled by sqrt(1 + σ_next²). Used where ComfyUI is
    absent (tests); inside ComfyUI the native sampler calls ComfyUI's own.
    """
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        raise ValueError("sample_ddpm needs a noise_sampler")
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        eps = (x - denoised) / sigmas[i]
        x = ddpm_mean(x / torch.sqrt(1.0 + sigmas[i] ** 2.0), sigmas[i], sigmas[i + 1], eps)
        if sigmas[i + 1] > 0:
            x = x + ddpm_std(sigmas[i], sigmas[i + 1]) * noise_sampler(sigmas[i], sigmas[i + 1])
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


def replay_noise_sampler(sigmas: torch.Tensor, zs: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor],
                                                                          torch.Tensor]:
    """A k-diffusion ``noise_sampler`` that returns the inverted z_i of the step starting at σ_i.

    The step is found from σ (not from a call count), so it holds for any number of calls per step.
    """
    table = sigmas[:-1].float().cpu()

    def noise_sampler(sigma, sigma_next):
        i = int((table - float(sigma)).abs().argmin())
        return zs[i]
    return noise_sampler


def to_vp(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_vp = x / sqrt(1 + σ²) (ComfyUI's scaling -> the DDPM latent)."""
    return x / torch.sqrt(1.0 + torch.as_tensor(sigma, dtype=x.dtype, device=x.device) ** 2)


def from_vp(x_vp: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x = sqrt(1 + σ²) x_vp."""
    return x_vp * torch.sqrt(1.0 + torch.as_tensor(sigma, dtype=x_vp.dtype, device=x_vp.device) ** 2)


# ------------------------------------------------------------------------------------------------ inversion
@dataclass
class NativeInversion:
    """Start latent and noise maps of an inversion on the steps of ``sigmas`` (ComfyUI's scaling)."""

    x_start: torch.Tensor     # [B,C,h,w] x at σ_0 = sigmas[0], in ComfyUI's (VE) scaling
    zs: torch.Tensor          # [R, B,C,h,w] z_i of step i (σ_i -> σ_{i+1}); the last is 0 (as the reference)
    sigmas: torch.Tensor      # [R + 1]
    seed: int
    unet_evals: int = 0

    @property
    def steps(self) -> int:
        return int(self.sigmas.shape[0]) - 1


def invert_sigmas(denoise: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, seed: int = 0, *, batch: int = 8,
                  exact_last_step: bool = False, callback: Optional[Callable[[dict], None]] = None) -> NativeInversion:
    """Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024) on ``sigmas``, with k-diffusion's step.

    x0: clean latents [B,C,h,w] (scaled, as the model sees them). For each running step i the DDPM latent
    x_i = sqrt(ᾱ_i) x0 + sqrt(1 - ᾱ_i) n_i uses independent noise n_i drawn on the CPU from ``seed`` in
    the engine's order (the step nearest x0 first), so the same seed gives the engine's noise; then
    ε_i = ε(x_i, σ_i, ∅), z_i = (x_{i+1} - μ_t(x_i, ε_i)) / σ_t with x_R = x0. The last z is 0 as in the
    reference (``exact_last_step`` inverts it too). Evaluations are independent and run ``batch`` at a time.
    """
    x0 = x0.float()
    dev = x0.device
    sig = sigmas.float().cpu()
    R = int(sig.shape[0]) - 1
    gen = torch.Generator("cpu").manual_seed(int(seed))
    xs: dict[int, torch.Tensor] = {}
    for i in range(R - 1, -1, -1):
        n = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(dev)
        a = alpha_bar(sig[i])
        xs[i] = a.sqrt() * x0 + (1 - a).sqrt() * n
    xs[R] = x0
    needed = list(range(0, R if exact_last_step else R - 1))
    zs = torch.zeros((R,) + tuple(x0.shape), dtype=torch.float32, device=dev)
    B = x0.shape[0]
    per_call = max(1, batch // B)
    evals = 0
    for start in range(0, len(needed), per_call):
        idx = needed[start:start + per_call]
        s_rows = torch.cat([sig[i].repeat(B) for i in idx]).to(dev)
        x_in = torch.cat([from_vp(xs[i], sig[i]) for i in idx])
        denoised = denoise(x_in, s_rows).float()
        evals += len(idx) * B
        for j, i in enumerate(idx):
            d = denoised[j * B:(j + 1) * B]
            eps = (x_in[j * B:(j + 1) * B] - d) / sig[i]
            mu = ddpm_mean(xs[i], sig[i], sig[i + 1], eps)
            zs[i] = (xs[i + 1] - mu) / ddpm_std(sig[i], sig[i + 1])
        if callback is not None:
            for j in range(len(idx)):
                callback({"phase": "invert", "done": start + j + 1, "total": len(needed)})
    x_start = from_vp(xs[0], sig[0]) if R > 0 else from_vp(x0, sig[0])
    return NativeInversion(x_start=x_start, zs=zs, sigmas=sig, seed=int(seed), unet_evals=evals)


# ------------------------------------------------------------------------------------------------ guidance
def guidance(cond: torch.Tensor, uncond: torch.Tensor, lambda_cfg: float,
             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eqs. 3-4 on the two predictions (ε, or denoised x̂_0: the weights sum to 1, so both give the same step).

    eq. 3: p̂ = λ_cfg p(c_id) + (1 - λ_cfg) p(∅);  eq. 4: p̃ = M p̂ + (1 - M) p(∅)   (M: 1 = anonymize).
    """
    out = lambda_cfg * cond + (1 - lambda_cfg) * uncond
    if mask is not None:
        out = mask * out + (1 - mask) * uncond
    return out


def guidance_mask(mask: torch.Tensor, latent_size: Sequence[int], soft: bool = False) -> torch.Tensor:
    """M [B,1,h,w] at latent size from an image-space MASK [B,H,W] or [H,W] (1 = anonymize).

    A mask of another size is first resized bilinearly to 8 × the latent size (as the engine's nodes do),
    then binarized at 0.5 and downsampled nearest (the reference), or area-averaged with ``soft``.
    """
    m = mask.float()
    if m.ndim == 2:
        m = m[None]
    h, w = int(latent_size[0]), int(latent_size[1])
    if tuple(m.shape[-2:]) != (h * 8, w * 8):
        m = F.interpolate(m[:, None], size=(h * 8, w * 8), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    return latent_mask(m, (h, w), soft=soft)


# --------------------------------------------------------------------------------------------- FaceID parts
def faceid_tokens(image_proj: dict, vectors: torch.Tensor) -> torch.Tensor:
    """IP-Adapter FaceID's identity tokens [N, n_tokens, width] of 512-d vectors [N, 512].

    LayerNorm(W2 · GELU(W1 e + b1) + b2), split into tokens of the cross-attention width (4 × 768 for SD1.5).
    The null identity ∅ is the zero vector through the same projection.
    """
    p = {k: v.float() for k, v in image_proj.items()}
    width = p["norm.weight"].shape[0]
    h = F.gelu(F.linear(vectors.float(), p["proj.0.weight"], p["proj.0.bias"]))
    h = F.linear(h, p["proj.2.weight"], p["proj.2.bias"]).reshape(vectors.shape[0], -1, width)
    return F.layer_norm(h, (width,), p["norm.weight"], p["norm.bias"])


def identity_rows(cond: torch.Tensor, null: torch.Tensor, cond_or_uncond: Sequence[int], rows: int) -> torch.Tensor:
    """Identity tokens for a batch of ``rows`` made of equal chunks, one per entry of ``cond_or_uncond``.

    ComfyUI batches the conditional (0) and unconditional (1) predictions in chunks: conditional rows get
    c_id (one per image, or one for all), unconditional rows the null identity.
    """
    if not cond_or_uncond:
        raise ValueError("the batch does not say which rows are conditional (no cond_or_uncond)")
    chunk = rows // len(cond_or_uncond)
    if chunk * len(cond_or_uncond) != rows:
        raise ValueError(f"{rows} rows do not split into {len(cond_or_uncond)} equal chunks")
    parts = []
    for flag in cond_or_uncond:
        src = cond if flag == 0 else null
        if src.shape[0] == chunk:
            parts.append(src)
        elif src.shape[0] == 1:
            parts.append(src.expand(chunk, *src.shape[1:]))
        else:
            raise ValueError(f"{src.shape[0]} identities for a batch of {chunk} images: give one, or one per image")
    return torch.cat(parts)


def ip_attention(attention: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                 tokens: torch.Tensor, k_ip: torch.Tensor, v_ip: torch.Tensor, scale: float) -> torch.Tensor:
    """IP-Adapter's decoupled cross-attention (before the output projection):
    attention(q, k_text, v_text) + scale · attention(q, W_k' c, W_v' c), c the identity tokens of each row.

    ``attention(q, k, v, heads)`` is the backend (ComfyUI's optimized attention in the node).
    """
    tokens = tokens.to(q.device, q.dtype)
    k_c = F.linear(tokens, k_ip.to(q.device, q.dtype))
    v_c = F.linear(tokens, v_ip.to(q.device, q.dtype))
    return attention(q, k, v, heads) + scale * attention(q, k_c, v_c, heads)


_ATTN = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?attentions\.(\d+)\.transformer_blocks\.(\d+)"
                   r"\.(attn1|attn2)$")
_GROUP = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}


def faceid_layer_order(names) -> list[str]:
    """Attention modules (diffusers names, ``…transformer_blocks.M.attn1|attn2``) in the order of diffusers'
    ``unet.attn_processors``, which numbers IP-Adapter's weights: down blocks, up blocks, then the mid block."""
    def key(name: str):
        m = _ATTN.match(name)
        if m is None:
            raise ValueError(f"not a UNet attention module name: {name!r}")
        group, block, att, tb, which = m.groups()
        return (_GROUP[group], int(block or 0), int(att), int(tb), which)
    return sorted(set(names), key=key)


LORA_TARGETS = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}


def faceid_lora(ip_adapter: dict, layer_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """FaceID's LoRA ``{i}.to_{q,k,v,out}_lora.{down,up}.weight`` as a kohya-style LoRA state dict
    (``lora_unet_<diffusers name>.lora_down/lora_up.weight``, no alpha: scale 1, as diffusers applies it)."""
    out = {}
    for i, name in enumerate(layer_names):
        for short, target in LORA_TARGETS.items():
            down, up = ip_adapter.get(f"{i}.{short}_lora.down.weight"), ip_adapter.get(f"{i}.{short}_lora.up.weight")
            if down is None or up is None:
                continue
            key = "lora_unet_" + f"{name}.{target}".replace(".", "_")
            out[key + ".lora_down.weight"] = down
            out[key + ".lora_up.weight"] = up
    return out


def faceid_layer_count(ip_adapter: dict) -> int:
    """How many attention layers the FaceID file was made for (its largest layer index + 1)."""
    idx = [int(k.split(".", 1)[0]) for k in ip_adapter if k.split(".", 1)[0].isdigit()]
    return max(idx) + 1 if idx else 0


def ldm_block(ldm_key: str) -> tuple[str, int, int]:
    """(block, number, transformer index) of an ldm attention key, as ComfyUI's attn2 replace patches name it.

    ``input_blocks.1.1.transformer_blocks.0.attn2…`` -> ("input", 1, 0); the middle block is ("middle", 0, i).
    """
    m = re.match(r"^(input_blocks|middle_block|output_blocks)\.(\d+)\.(?:\d+\.)?transformer_blocks\.(\d+)\.", ldm_key)
    if m is None:
        raise ValueError(f"not an ldm transformer key: {ldm_key!r}")
    kind, number, tb = m.groups()
    if kind == "middle_block":
        return ("middle", 0, int(tb))
    return ("input" if kind == "input_blocks" else "output", int(number), int(tb))
