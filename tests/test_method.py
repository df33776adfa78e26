"""The method's math on a fake denoiser: properties that hold for any network."""
from __future__ import annotations

import json

import pytest
import torch

from nullface.diffusion.inversion import invert, sample_noisy_latents
from nullface.methods.nullface.sampler import sample_nullface
from nullface.diffusion.schedule import posterior_mean, schedule_from_config, sd15_schedule

CONFIG = json.load(open("nullface/models/configs/sd15/scheduler/scheduler_config.json"))


class FakeUNet:
    """A deterministic, non-linear stand-in for ε(x_t, t, c): identity changes the output."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(4, 4, generator=g) * 0.3
        self.calls = 0
        self.evals = 0

    def eps(self, x, t, c):
        self.calls += 1
        self.evals += x.shape[0]
        tt = t.float().view(-1, 1, 1, 1) / 1000.0
        y = torch.einsum("ij,bjhw->bihw", self.w, x)
        return torch.tanh(y + tt) + 0.1 * c.view(-1, 1, 1, 1) * torch.sin(x)

    def null(self, x, t):
        return self.eps(x, t, torch.zeros(x.shape[0]))

    def dual(self, x, t, c=1.0):
        both = self.eps(torch.cat([x, x]), torch.cat([t, t]),
                        torch.cat([torch.full((x.shape[0],), c), torch.zeros(x.shape[0])]))
        return both[: x.shape[0]], both[x.shape[0]:]


@pytest.fixture
def x0():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def test_schedule_matches_diffusers_ddim_at_eta_one():
    from diffusers import DDIMScheduler
    s = schedule_from_config(CONFIG, 100)
    ref = DDIMScheduler.from_config(CONFIG)
    ref.set_timesteps(100)
    assert torch.equal(ref.timesteps, s.timesteps)
    assert s.timesteps[0] == 991 and s.timesteps[-1] == 1
    assert torch.equal(s.abar_prev[-1], ref.final_alpha_cumprod)
    g = torch.Generator().manual_seed(0)
    x, e, z = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(3))
    for k in (0, 37, 70, 99):
        want = ref.step(e, int(s.timesteps[k]), x, eta=1.0, variance_noise=z).prev_sample
        got = posterior_mean(x, e, s.abar[k], s.abar_prev[k], s.sigma[k]) + s.sigma[k] * z
        assert torch.allclose(got, want, atol=1e-6)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="v_prediction|unsupported"):
        schedule_from_config({**CONFIG, "prediction_type": "v_prediction"}, 100)


@pytest.mark.parametrize("t_skip", [70, 0, 95, 99])
def test_null_path_replays_the_inverted_trajectory(x0, t_skip):
    """λ_cfg = 0: every sampled x_t equals the inverted x_t; the last step is the reference's (z = 0)."""
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, t_skip, seed=3, batch=5)
    xs = sample_noisy_latents(x0, s, t_skip, seed=3)
    seen = []
    out = sample_nullface(net.dual, inv.x_start, inv.zs, s, t_skip, 0.0, callback=lambda d: seen.append(d["x"]))
    tol = 1e-5 if t_skip >= 70 else 1e-4          # float32 round-off grows over 100 replayed steps
    for i, x in enumerate(seen[:-1]):
        assert torch.allclose(x, xs[t_skip + i + 1], atol=tol)
    last = posterior_mean(xs[99], net.null(xs[99], s.timesteps[99].repeat(2)), s.abar[99], s.abar_prev[99], s.sigma[99])
    assert torch.allclose(out, last, atol=tol)
    assert torch.count_nonzero(inv.zs[-1]) == 0


def test_exact_last_step_returns_the_input_latents(x0):
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, 70, seed=0, exact_last_step=True)
    out = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 0.0)
    assert torch.allclose(out, x0, atol=1e-5)
    assert inv.unet_evals == 30 * 2


def test_zero_mask_equals_null_path(x0):
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, 70, seed=0, exact_last_step=True)
    zero = torch.zeros(2, 1, 8, 8)
    out = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 10.0, mask=zero, mask_delay=0)
    assert torch.allclose(out, x0, atol=1e-5)


def test_t_skip_equal_to_steps_changes_nothing(x0):
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, 100, seed=0)
    out = sample_nullface(net.dual, inv.x_start, inv.zs, s, 100, 10.0)
    assert torch.equal(out, x0) and net.calls == 0


def test_guidance_with_full_mask_changes_the_result(x0):
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, 70, seed=0)
    null = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 0.0)
    full = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 10.0, mask=torch.ones(2, 1, 8, 8), mask_delay=10)
    nomask = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 10.0)
    assert (full - null).abs().max() > 1e-2
    assert torch.allclose(full, nomask, atol=1e-6)


def test_mask_keeps_unmasked_latents_on_the_null_path(x0):
    """With mask delay 0, latents where M = 0 follow the null path exactly (the fake net is per-pixel)."""
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0, s, 70, seed=0)
    m = torch.zeros(2, 1, 8, 8)
    m[..., :4] = 1
    null = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 0.0)
    out = sample_nullface(net.dual, inv.x_start, inv.zs, s, 70, 10.0, mask=m, mask_delay=0)
    assert torch.allclose(out[..., 4:], null[..., 4:], atol=1e-6)
    assert (out[..., :4] - null[..., :4]).abs().max() > 1e-2


def test_inversion_spends_only_the_used_steps(x0):
    s = sd15_schedule(100)
    net = FakeUNet()
    inv = invert(net.null, x0[:1], s, 70, seed=0, batch=8)
    assert inv.unet_evals == 29 and net.evals == 29
    assert net.calls == 4                           # ceil(29 / 8) batched calls
    assert inv.zs.shape[0] == 30


def test_same_seed_same_noise_other_seed_other_noise(x0):
    s = sd15_schedule(100)
    a = sample_noisy_latents(x0, s, 70, seed=5)
    b = sample_noisy_latents(x0, s, 70, seed=5)
    c = sample_noisy_latents(x0, s, 70, seed=6)
    assert torch.equal(a[70], b[70]) and not torch.equal(a[70], c[70])
