"""``anonymize --ray``: the same outputs and report as a plain run; a worker that dies loses nothing.

One local Ray instance (2 CPUs) for the module; Ray's start-up is the slow part, so the tests are few.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'comfyui-nullface[ray]'")

from nullface.commands import anonymize as cmd  # noqa: E402
from nullface.commands import ray_run  # noqa: E402
from nullface.commands.cli import build_parser  # noqa: E402
from tests import faces_data as fd  # noqa: E402
from tests.test_scale import comparable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    # workers import this checkout; pytest may name this module after the checkout's folder (it holds the
    # pack's __init__.py), so its parent goes on the path too
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT.parent)])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Eight files: five with faces, a corrupt one, one without a face, one too small for a face."""
    src = tmp_path_factory.mktemp("dataset")
    a = fd.image("astronaut")
    for k, im in enumerate([a, a[:, ::-1], a[:400, :400], a[50:, 30:], a[::-1, ::-1][::-1]]):
        Image.fromarray(np.ascontiguousarray(im)).save(src / f"face{k}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.full((90, 120, 3), 70, np.uint8)).save(src / "wall.png")
    Image.fromarray(a).resize((16, 16)).save(src / "tiny.png")
    return src


def invert_many(images, crops):
    return [255 - c.image for c in crops]


invert_many.many_images = True


def stand_in():
    """(anonymizer, detector) as a worker loads them: inverts each face crop, faces of several files per call."""
    return invert_many, fd.detector()


def dying(marker: str, always: bool = False):
    """A stand-in whose worker process dies on its first call while ``marker`` exists (once, unless ``always``)."""
    def engine():
        def run(images, crops):
            if os.path.exists(marker):
                if not always:
                    os.remove(marker)
                os._exit(1)                    # a killed worker: no exception, no clean-up
            return invert_many(images, crops)
        run.many_images = True
        return run, fd.detector()
    return engine


def args(src, out, *extra):
    return build_parser().parse_args(["anonymize", str(src), "-o", str(out), "--batch", "4", *map(str, extra)])


def plain(src, out):
    assert cmd.run(args(src, out), anonymizer=fd.invert, detector=fd.detector()) == 1   # broken, wall, tiny
    return json.loads((out / "report.json").read_text())


def same_outputs(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert names == sorted(p.relative_to(b) for p in b.rglob("*.png")) and names
    for n in names:
        assert np.array_equal(np.asarray(Image.open(a / n)), np.asarray(Image.open(b / n))), n
    assert not [p for p in b.rglob("*") if p.name.startswith(".")]            # nothing half-written


def test_ray_run_equals_the_plain_run_and_survives_a_killed_worker(cluster, folder, tmp_path):
    want = plain(folder, tmp_path / "plain")
    out = tmp_path / "ray"
    marker = tmp_path / "kill-once"
    marker.write_text("")
    code = cmd.run(args(folder, out, "--ray"), engine=dying(str(marker)))
    assert not marker.exists()                                                 # a worker died mid-run
    assert code == 1
    got = json.loads((out / "report.json").read_text())
    assert comparable(got) == comparable(want) and len(got["files"]) == 8
    assert {e["status"] for e in got["files"].values()} == {"done", "error", "no_face"}
    same_outputs(tmp_path / "plain", out)


def test_a_run_stopped_by_dying_workers_resumes_from_its_report(cluster, folder, tmp_path, monkeypatch):
    want = plain(folder, tmp_path / "plain")
    out = tmp_path / "ray"
    marker = tmp_path / "kill-always"
    marker.write_text("")
    monkeypatch.setattr(ray_run, "WORKER_RETRIES", 0)
    assert cmd.run(args(folder, out, "--ray"), engine=dying(str(marker), always=True)) == 130
    stopped = json.loads((out / "report.json").read_text())
    assert stopped["interrupted"] and not [p for p in out.rglob("*") if p.name.startswith(".")]
    for e in stopped["files"].values():                                       # nothing written unreported
        assert e.get("output") is None or Path(e["output"]).is_file()
    written = {p.name for p in out.rglob("*.png")}
    assert written <= {Path(e["output"]).name for e in stopped["files"].values() if e.get("output")}
    marker.unlink()
    assert cmd.run(args(folder, out, "--ray"), engine=stand_in) == 1          # resume finishes the job
    got = json.loads((out / "report.json").read_text())
    assert comparable(got) == comparable(want) and not got["interrupted"]
    same_outputs(tmp_path / "plain", out)


def test_ray_run_with_the_tiny_models_equals_the_plain_run(cluster, tiny, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    a = fd.image("astronaut")
    Image.fromarray(a).save(src / "a.png")
    Image.fromarray(np.ascontiguousarray(a[:, ::-1])).save(src / "b.png")
    flags = ["--checkpoint", tiny["sd15"], "--faceid", tiny["faceid_bin"], "--insightface-root",
             tiny["insightface_root"], "--detector", "dlib", "--steps", "6", "--t-skip", "4", "--crop-size", "64",
             "--device", "cpu", "--dtype", "fp32",
             "--no-audit"]    # not about the audit: the tiny random models barely change dlib's mission-patch "face"
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # as a Ray worker on one CPU: the same float summation order, the same pixels
    try:
        assert cmd.run(args(src, tmp_path / "plain", *flags)) == 0
    finally:
        torch.set_num_threads(threads)
    assert cmd.run(args(src, tmp_path / "ray", *flags, "--ray")) == 0
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("plain", "ray")]
    assert comparable(reports[0]) == comparable(reports[1]) and reports[1]["totals"]["faces_anonymized"] >= 2
    same_outputs(tmp_path / "plain", tmp_path / "ray")
