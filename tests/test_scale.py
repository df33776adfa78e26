"""Throughput features: faces of many photos in shared batches, the GPU path's options, the CLI's grouping."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nullface.privacy.photo import PhotoOptions, anonymize_photo, anonymize_photos
from tests import faces_data as fd

FAST = dict(steps=10, t_skip=7)


def many(fn):
    """``fn`` (one photo per call) as an anonymizer that takes faces of several photos per call."""
    def run(images, crops):
        run.calls.append(len({id(im) for im in images}))
        return [fn(im, [c])[0] for im, c in zip(images, crops)]
    run.calls, run.many_images = [], True
    return run


def photos():
    """Three photos (the astronaut, t1 with 6 faces, the astronaut mirrored) and their dlib faces."""
    flipped = np.ascontiguousarray(fd.image("astronaut")[:, ::-1])
    images = [fd.image("astronaut"), fd.image("t1"), flipped]
    return images, [list(fd.detector().detect(im)) for im in images]


# ------------------------------------------------------------------ the multi-image driver (fast stand-ins)
def test_faces_of_several_photos_share_calls_and_results_equal_one_photo_at_a_time():
    images, found = photos()
    run = many(fd.invert)
    got = anonymize_photos(images, fd.detector(), run, PhotoOptions(batch=4), found=found)
    assert max(run.calls) >= 2                                  # a call held faces of two photos
    for im, res in zip(images, got):
        alone = anonymize_photo(im, fd.detector(), fd.invert, PhotoOptions(batch=1))
        assert np.array_equal(res.image, alone.image)
        assert res.to_dict() == alone.to_dict()


def test_a_face_that_fails_fails_only_itself_and_its_photo_policy_applies():
    images, found = photos()
    bad = found[1][2].bbox.tolist()                              # one face of t1

    def flaky(images_, crops):                                  # the whole call raises when that face is in it
        if any(c.face.bbox.tolist() == bad for c in crops):
            raise RuntimeError("CUDA out of memory")
        return [255 - c.image for c in crops]
    flaky.many_images = True
    got = anonymize_photos(images, fd.detector(), flaky, PhotoOptions(batch=8), found=found)
    from nullface.errors import FaceFailedError
    assert isinstance(got[1], FaceFailedError) and got[1].faces_failed == 1      # policy 'error': t1 fails
    assert [f.status for f in got[1].result.faces].count("anonymized") == 5
    for k in (0, 2):                                            # the other photos of its batches are done
        assert got[k].anonymized == len(found[k]) and np.array_equal(
            got[k].image, anonymize_photo(images[k], fd.detector(), fd.invert).image)
    blurred = anonymize_photos(images, fd.detector(), flaky, PhotoOptions(batch=8, on_failure="blur"), found=found)
    assert blurred[1].failed == 1 and blurred[1].anonymized == 5 and blurred[1].image is not None


def test_audits_go_to_the_photo_of_their_face():
    images, found = photos()

    class Audit:
        def __init__(self, crop):
            self.crop, self.passed, self.tries = crop, True, ()

    def audited(images_, crops):
        audited.audits += [Audit(c) for c in crops]
        return [255 - c.image for c in crops]
    audited.audits, audited.many_images = [], True
    got = anonymize_photos(images, fd.detector(), audited, PhotoOptions(batch=3), found=found)
    assert [len(r.audits) for r in got] == [len(f) for f in found] and audited.audits == []
    for r, faces in zip(got, found):
        assert {id(a.crop.face) for a in r.audits} <= {id(f) for f in faces}


def test_cli_groups_files_for_an_anonymizer_of_many_photos(tmp_path):
    from nullface.commands import anonymize as cmd
    from nullface.commands.cli import build_parser
    src = tmp_path / "in"
    src.mkdir()
    images, _ = photos()
    for k, im in enumerate(images):
        Image.fromarray(im).save(src / f"{k}.png")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.full((80, 80, 3), 60, np.uint8)).save(src / "wall.png")
    reports = {}
    for name, anonymizer, batch in (("one", fd.invert, "1"), ("many", many(fd.invert), "4")):
        out = tmp_path / name
        args = build_parser().parse_args(["anonymize", str(src), "-o", str(out), "--batch", batch])
        assert cmd.run(args, anonymizer=anonymizer, detector=fd.detector()) == 1     # broken + wall
        reports[name] = comparable(json.loads((out / "report.json").read_text()))
        if name == "many":
            assert max(anonymizer.calls) >= 2
    assert reports["one"] == reports["many"]
    for k in range(3):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / f"{k}.png")),
                              np.asarray(Image.open(tmp_path / "many" / f"{k}.png")))


def comparable(report: dict) -> dict:
    """A report without what differs between equal runs (times, the output folder, the options given)."""
    files = {}
    for key, e in report["files"].items():
        e = {k: v for k, v in e.items() if k not in ("seconds", "output")}
        files[key] = e
    return {"files": files, "totals": report["totals"]}


# ------------------------------------------------------------------ tiny models: the engine itself
@pytest.fixture(scope="module")
def face_models(tiny):
    from nullface.faces.identity import load_face_models
    return load_face_models(tiny["insightface_root"], detector="dlib")


def test_batched_across_photos_equals_one_face_at_a_time_on_tiny_models(pipe, face_models):
    from nullface.methods.nullface.pipeline import crop_anonymizer
    from nullface.methods.nullface.settings import NullFaceSettings
    images, found = photos()
    images, found = [images[0], images[2]] + [images[1]], [found[0], found[2]] + [found[1][:2]]
    s = NullFaceSettings(**FAST)
    opts = dict(crop_size=64, keep=("eyes", "mouth"))
    run = crop_anonymizer(pipe, face_models, s)
    calls = []
    original = run

    def spy(image, crops):
        calls.append(len(crops))
        return original(image, crops)
    spy.many_images, spy.audits = True, run.audits
    batched = anonymize_photos(images, face_models.detector, spy, PhotoOptions(batch=4, **opts), found=found)
    assert calls[0] == min(4, sum(map(len, found)))              # faces of the three photos in one call
    for im, faces, res in zip(images, found, batched):
        for f in faces:                                          # one face at a time
            alone = anonymize_photos([im], face_models.detector, crop_anonymizer(pipe, face_models, s),
                                     PhotoOptions(batch=1, **opts), found=[[f]])[0]
            box = [int(v) for v in f.bbox]
            y0, y1, x0, x1 = max(0, box[1]), box[3], max(0, box[0]), box[2]
            diff = np.abs(res.image[y0:y1, x0:x1].astype(int) - alone.image[y0:y1, x0:x1].astype(int))
            assert diff.max() <= 1, diff.max()                   # float rounding of another batch size only
        assert res.anonymized == len(faces)


def test_attention_runs_through_sdpa(pipe):
    from nullface.models.devices import sdpa_attention
    assert sdpa_attention(pipe.unet) == {} and sdpa_attention(pipe.vae) == {}
    assert any(type(p).__name__ == "IPAdapterAttnProcessor2_0" for p in pipe.unet.attn_processors.values())


def test_dtype_defaults_and_options():
    from nullface.models.devices import pick_dtype
    assert pick_dtype(torch.device("cuda"), "auto") == torch.float16          # the GPU path's default
    assert pick_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    assert pick_dtype(torch.device("cuda"), "fp32") == torch.float32
    assert pick_dtype(torch.device("cpu"), "auto") == torch.float32


def test_compile_is_opt_in_and_keeps_the_result(tiny, monkeypatch):
    from nullface.models import devices
    from nullface.models.sd15 import load_pipe
    from nullface.methods.nullface.pipeline import anonymize_face
    from nullface.methods.nullface.settings import NullFaceSettings
    monkeypatch.setattr(devices, "COMPILE_BACKEND", "eager")   # dynamo's graph capture without a C++ build
    plain = load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="fp32")
    assert not plain.compile and getattr(plain.ready().unet, "_compiled_call_impl", None) is None
    compiled = load_pipe(tiny["sd15"], tiny["faceid_bin"], device="cpu", dtype="fp32", compile=True)
    assert compiled.ready().unet._compiled_call_impl is not None
    face = np.random.RandomState(0).randint(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    e = np.random.RandomState(1).randn(1, 512).astype(np.float32)
    s = NullFaceSettings(steps=4, t_skip=2)
    a = anonymize_face(plain, face, s, embeddings=[e[0]])
    b = anonymize_face(compiled, face, s, embeddings=[e[0]])
    assert torch.allclose(a, b, atol=1e-4)


def test_compile_flag_and_batch_reach_the_engine():
    from nullface.commands import anonymize as cmd
    from nullface.commands.cli import build_parser
    args = build_parser().parse_args(["anonymize", "x", "-o", "y", "--compile", "--batch", "16"])
    assert args.compile and cmd._options(args).batch == 16
    args = build_parser().parse_args(["anonymize", "x", "-o", "y"])
    assert not args.compile and args.ray is None
    assert build_parser().parse_args(["anonymize", "x", "-o", "y", "--ray"]).ray == "local"
    assert build_parser().parse_args(["anonymize", "x", "-o", "y", "--ray", "auto"]).ray == "auto"
