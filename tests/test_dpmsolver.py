"""DPM-Solver++(2M) SDE and its inversion, on a fake noise predictor (pure tensor math)."""
from __future__ import annotations

import pytest
import torch

from nullface.diffusion.dpmsolver import (dpm_schedule, invert_dpmpp_2m_sde, linspace_timesteps, noised_latents,
                                sample_dpmpp_2m_sde)


def fake_model(schedule):
    """A nonlinear noise predictor that depends on x and on the step, as a UNet does."""
    def model(x, i):
        t = schedule.timesteps[i].float().view(-1, 1, 1, 1) / 1000.0
        return torch.tanh(0.7 * x + t) + 0.1 * x.roll(1, dims=-1) * t
    return model


def test_timesteps_are_the_references_linspace():
    ts = linspace_timesteps(100, 0.7)
    assert ts[0] == 299 and ts[-1] == 1 and len(ts) == 100 and len(set(ts.tolist())) == 100
    assert (ts[:-1] > ts[1:]).all()
    assert linspace_timesteps(50, 0.0)[0] == 999


@pytest.mark.parametrize("steps", [6, 20, 50])
def test_inversion_noise_maps_replay_the_input_exactly(steps):
    sched = dpm_schedule(linspace_timesteps(steps, 0.7))
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    model = fake_model(sched)
    walked, seen = [], []
    inv = invert_dpmpp_2m_sde(model, x0, sched, seed=3, callback=lambda d: walked.append(d["x"]))
    out = sample_dpmpp_2m_sde(model, inv.x_start, inv.zs, sched, callback=lambda d: seen.append(d["x"]))
    for a, b in zip(walked, seen):                   # every latent of the replay is the inversion's, bit for bit
        assert torch.equal(a, b)
    assert len(walked) == len(seen) == steps
    assert torch.allclose(out, x0, atol=1e-6, rtol=0), (out - x0).abs().max()   # one float rounding away
    xs = noised_latents(x0, sched, 3)
    for i in range(sched.steps - 1):                  # the corrected latents are the noised ones, up to rounding
        assert torch.allclose(seen[i], xs[i + 1], atol=1e-5)
    assert torch.equal(inv.x_start, xs[0]) and inv.unet_evals == 2 * steps


def test_another_model_at_sampling_changes_the_result():
    sched = dpm_schedule(linspace_timesteps(10, 0.7))
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    model = fake_model(sched)
    inv = invert_dpmpp_2m_sde(model, x0, sched, seed=0)
    out = sample_dpmpp_2m_sde(lambda x, i: model(x, i) + 0.05, inv.x_start, inv.zs, sched)
    assert (out - x0).abs().max() > 1e-2


def test_replay_calls_the_model_with_the_inversions_inputs():
    """The inversion evaluates the model where the replay will: same latents, same steps, same batch rows."""
    sched = dpm_schedule(linspace_timesteps(9, 0.5))
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    model, calls = fake_model(sched), {"invert": [], "sample": []}

    def recording(phase):
        def m(x, i):
            calls[phase].append((x.clone(), i.clone()))
            return model(x, i)
        return m
    inv = invert_dpmpp_2m_sde(recording("invert"), x0, sched, seed=5)
    sample_dpmpp_2m_sde(recording("sample"), inv.x_start, inv.zs, sched)
    assert len(calls["invert"]) == len(calls["sample"]) == 9
    for (xa, ia), (xb, ib) in zip(calls["invert"], calls["sample"]):
        assert xa.shape[0] == 2 and torch.equal(xa, xb) and torch.equal(ia, ib)


def test_sampler_equals_diffusers_sde_dpmsolver_pp_2m():
    """The sampler is DPM-Solver++(2M) SDE as diffusers implements it, fed the same noise maps."""
    from diffusers import DPMSolverMultistepScheduler
    ts = linspace_timesteps(16, 0.7)
    sched = dpm_schedule(ts)
    ref = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                      algorithm_type="sde-dpmsolver++", solver_order=2, lower_order_final=False,
                                      final_sigmas_type="sigma_min")
    ref.set_timesteps(timesteps=ts.tolist())
    model = fake_model(sched)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 8, 8, generator=g)
    zs = torch.randn(16, 1, 4, 8, 8, generator=g)
    ours = sample_dpmpp_2m_sde(model, x, zs, sched)
    y = x.clone()
    for i, t in enumerate(ref.timesteps):
        eps = model(y, torch.tensor([i]))
        y = ref.step(eps, t, y, variance_noise=zs[i]).prev_sample
    assert torch.allclose(ours, y, atol=1e-4), (ours - y).abs().max()
