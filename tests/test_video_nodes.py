"""The video nodes without ComfyUI: tracks survive queued runs and reset on a new video; the save node leaks nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from tests.test_video import Cached, TrackPainter, thumb_embed  # noqa: E402
from tests.video_clips import audio_packets, slide  # noqa: E402


class Painter(TrackPainter):
    embed = staticmethod(thumb_embed)


@pytest.fixture(scope="module")
def video(pack):
    import sys
    return sys.modules[f"{pack.__name__}.nodes.video"]


@pytest.fixture(scope="module")
def clip(astronaut):
    frames, _ = slide(astronaut, 8, (320, 240), list(np.linspace(0.4, 0.6, 8)), scale=0.45)
    return frames


@pytest.fixture(scope="module")
def det():
    from nullface.faces.detect import DlibDetector
    return Cached(DlibDetector(score_threshold=0.3))


def test_nodes_are_registered_with_tooltips(pack, video):
    for name in ("NullFaceAnonymizeVideo", "NullFaceSaveAnonymizedVideo"):
        assert pack.NODE_CLASS_MAPPINGS[name] is video.NODE_CLASS_MAPPINGS[name]
        cls = video.NODE_CLASS_MAPPINGS[name]
        assert cls.DESCRIPTION and video.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("NullFace ")
        for section in ("required", "optional"):
            for inp, value in cls.INPUT_TYPES().get(section, {}).items():
                assert len(value) > 1 and value[1].get("tooltip"), f"{name}.{inp} has no tooltip"


def test_tracks_survive_queued_runs_and_reset_on_a_new_video(video, clip, det):
    from nullface.privacy.photo import PhotoOptions
    from nullface.privacy.video import VideoOptions
    node = video.NullFaceAnonymizeVideo()
    opts, vopts = PhotoOptions(crop_size=64), VideoOptions()
    part = video.SEQUENCE[1]
    painter = Painter()
    video.run_video(node, clip[:4], det, painter, opts, vopts, part)
    first_state = node._session.state
    _, rep = video.run_video(node, clip[4:], det, painter, opts, vopts, part)        # the next queued run
    assert node._session.state is first_state and rep["frames"] == 8
    (track,) = rep["tracks"]
    assert [f["frame"] for f in track["frames"]] == list(range(8)) and {s for s, _ in painter.calls} == {0}
    assert len({e for _, e in painter.calls}) == 1                     # one identity across both runs
    assert json.loads(rep["text"])["tracks_found"] == 1

    other = [np.ascontiguousarray(f[:, ::-1]) for f in clip[:3]]        # another video: tracks start again
    _, rep = video.run_video(node, other, det, Painter(), opts, vopts, part)
    assert node._session.state is not first_state and rep["frames"] == 3 and rep["tracks"][0]["track"] == 0
    video.run_video(node, clip[:4], det, Painter(), opts, vopts, part, video_id="b")     # new id: new video
    _, rep = video.run_video(node, clip[:4], det, Painter(), opts, vopts, part, video_id="b")   # its start again
    assert rep["frames"] == 4
    _, rep = video.run_video(node, clip[4:], det, Painter(), opts, vopts, video.SEQUENCE[0])   # whole: alone
    assert rep["frames"] == 4 and rep["tracks"][0]["frames"][0]["frame"] == 0


def test_save_anonymized_video_writes_frames_and_audio_without_metadata(video, clip, tmp_path, monkeypatch):
    from nullface.privacy.video_io import container_tags, iter_frames, probe_video
    monkeypatch.chdir(tmp_path)
    frames = torch.from_numpy(np.stack(clip).astype(np.float32) / 255)
    audio = {"waveform": torch.sin(torch.arange(16000 * 8 // 24, dtype=torch.float32) / 7)[None, None].repeat(1, 2, 1),
             "sample_rate": 16000}
    node = video.NullFaceSaveAnonymizedVideo()
    ui = node.save(frames, 24.0, "anon", 18, audio=audio)["ui"]
    made = tmp_path / "output" / ui["images"][0]["filename"]
    assert made.name == "anon_00001.mp4" and ui["animated"] == (True,)
    info = probe_video(made)
    assert info.fps == 24 and (info.width, info.height) == (320, 240) and len(list(iter_frames(made))) == 8
    assert audio_packets(made)
    tags = container_tags(made)
    assert set(tags["container"]) <= {"major_brand", "minor_version", "compatible_brands"}
    assert b"Lavf" not in made.read_bytes()
    again = node.save(frames, 24.0, "anon", 18)["ui"]["images"][0]["filename"]
    assert again == "anon_00002.mp4" and not audio_packets(tmp_path / "output" / again)
