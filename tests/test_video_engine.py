"""The real engine on video: per-track seeds and identities in the tiny random-weight NullFace models."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from nullface.diffusion.inversion import sample_noisy_latents  # noqa: E402
from nullface.diffusion.schedule import schedule_from_config  # noqa: E402
from nullface.faces.identity import ArcFace, FaceModels  # noqa: E402
from nullface.methods.nullface.pipeline import crop_anonymizer  # noqa: E402
from nullface.methods.nullface.settings import NullFaceSettings  # noqa: E402
from nullface.privacy.photo import PhotoOptions, prepare_crop  # noqa: E402
from nullface.privacy.video import VideoOptions, anonymize_frames  # noqa: E402
from tests.test_video import Cached  # noqa: E402
from tests.video_clips import slide  # noqa: E402

FEW = NullFaceSettings(steps=3, t_skip=2)          # one UNet call per batch: the plumbing, not the method


def test_per_image_seeds_give_each_image_its_own_noise_whatever_the_batch(pipe):
    schedule = schedule_from_config(pipe.scheduler_config, 10)
    x0 = torch.randn(3, 4, 8, 8)
    batch = sample_noisy_latents(x0, schedule, 7, [5, 9, 5])
    alone = sample_noisy_latents(x0[1:2], schedule, 7, 9)
    for k in alone:
        assert torch.equal(batch[k][1:2], alone[k])
    assert torch.equal(batch[7][0], sample_noisy_latents(x0[:1], schedule, 7, 5)[7][0])
    assert not torch.equal(batch[7][0], sample_noisy_latents(x0[:1], schedule, 7, 6)[7][0])


@pytest.fixture(scope="module")
def engine(pipe, tiny):
    from nullface.faces.detect import DlibDetector
    det = Cached(DlibDetector(score_threshold=0.3))
    return FaceModels(detector=det, arcface=ArcFace(tiny["arcface"])), det


def test_a_face_gets_the_same_result_alone_or_batched_with_its_track_seed(pipe, engine, astronaut):
    models, det = engine
    frame = np.ascontiguousarray(astronaut[::2, ::2])
    face = det.detect(frame)[0]
    crop = prepare_crop(frame, face, PhotoOptions(crop_size=64))
    other = replace(crop, image=np.ascontiguousarray(crop.image[:, ::-1]), seed_offset=4)
    run = crop_anonymizer(pipe, models, FEW)
    e = run.embed(frame, face)
    mine = replace(crop, seed_offset=2, embedding=e)
    alone = run(frame, [mine])[0]
    (_, batched) = run(frame, [other, mine])
    assert np.abs(alone.astype(int) - batched.astype(int)).max() <= 1          # float round-off only
    assert not np.array_equal(run(frame, [replace(mine, seed_offset=3)])[0], alone)   # another track, other noise


def test_tiny_nullface_anonymizes_every_frame_of_a_clip(pipe, engine, astronaut):
    models, det = engine
    frames, _ = slide(astronaut, 3, (256, 192), [0.45, 0.5, 0.55], scale=0.4)
    run = crop_anonymizer(pipe, models, FEW)
    calls = []
    arcface_embed = models.arcface.embed

    def counting(image, kps):
        calls.append(1)
        return arcface_embed(image, kps)

    models.arcface.embed = counting
    try:
        out, state = anonymize_frames(frames, det, run, PhotoOptions(crop_size=64, score_threshold=0.3),
                                      VideoOptions(identity_frames=2))
    finally:
        del models.arcface.embed
    rep = state.report()
    assert rep["tracks_found"] == 1 and rep["tracks"][0]["frames_count"] == 3
    assert len(calls) == 2                                  # the track's identity, once: not once per frame
    for f, o in zip(frames, out):
        assert o.shape == f.shape and not np.array_equal(o, f)
