"""Clean errors: every missing file in one message for every method, one-line messages (no torch advice),
a malicious pickle never runs, and Ctrl-C is clean from the first instant.

Each test here failed on the code before (one file named at a time, 5-6 line messages, a 38-line traceback).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from nullface.commands.cli import main
from nullface.errors import ModelFileError

ROOT = Path(__file__).resolve().parents[1]


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# ------------------------------------------------------------------------------ every missing file, one message
def test_inpaint_cli_names_checkpoint_features_and_target_in_one_line(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    gone = tmp_path / "nowhere"
    code = main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--method", "inpaint",
                 "--checkpoint", str(gone / "sd-v1-5-inpainting.ckpt"),
                 "--features", str(gone / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"),
                 "--target", str(gone / "target.png"), "--device", "cpu"])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: 3 model files are missing")
    for name in ("sd-v1-5-inpainting.ckpt", "FaRL-Base-Patch16-LAIONFace20M-ep64.pth", "target.png"):
        assert f"'{name}'" in line, line


def test_inpaint_cli_missing_flag_and_missing_file_in_one_message(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    code = main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--method", "inpaint",
                 "--checkpoint", str(tmp_path / "sd-v1-5-inpainting.ckpt"), "--target", str(tmp_path / "t.png"),
                 "--device", "cpu"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "--features" in line and "'sd-v1-5-inpainting.ckpt'" in line and "'t.png'" in line


@pytest.mark.parametrize("method, files", [
    ("inpaint", ("sd-v1-5-inpainting.ckpt", "FaRL-Base-Patch16-LAIONFace20M-ep64.pth")),
    ("revpers", ("sd_xl_base_1.0.safetensors", "ip-adapter-faceid_sdxl.bin")),
])
def test_api_and_node_loaders_name_every_missing_file(tmp_path, method, files):
    a, b = (tmp_path / "models" / f for f in files)
    with pytest.raises(ModelFileError) as err:
        if method == "inpaint":
            from nullface.methods.inpaint.pipeline import load_inpaint_pipe
            load_inpaint_pipe(a, b, device="cpu")
        else:
            from nullface.models.sdxl import load_revpers_pipe
            load_revpers_pipe(a, b, device="cpu")
    msg = one_line(str(err.value))
    assert msg.startswith("2 model files are missing") and all(f"'{f}'" in msg for f in files), msg


def test_nodes_name_every_missing_file(pack, tmp_path, monkeypatch):
    """The loader nodes resolve names in ComfyUI's folders; two missing files are both named."""
    from tests.conftest import pack_module
    paths = pack_module("nodes._paths")
    monkeypatch.setattr(paths, "resolve", lambda kind, name: str(tmp_path / kind / name))
    for cls, args in (("NullFaceInpaintLoader", ("sd-v1-5-inpainting.ckpt", "farl.pth", "cpu", "fp32", True)),
                      ("RevPersLoader", ("sd_xl_base_1.0.safetensors", "ip-adapter-faceid_sdxl.bin", "cpu", "fp32",
                                         True)),
                      ("NullFacePipeLoader", ("v1-5.safetensors", "ip-adapter-faceid_sd15.bin", "cpu", "fp32", True))):
        node = pack.NODE_CLASS_MAPPINGS[cls]()
        with pytest.raises(ModelFileError) as err:
            getattr(node, node.FUNCTION)(*args)
        msg = one_line(str(err.value))
        assert msg.startswith("2 model files are missing") and f"'{args[0]}'" in msg and f"'{args[1]}'" in msg


# ------------------------------------------------------------------------------ one line, code never runs
class Payload:
    """A pickle whose loading would run code (``__reduce__`` -> a function call)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"image_proj": {"norm.weight": Payload(marker)}, "ip_adapter": {}}, path)
    return path


@pytest.mark.parametrize("kind", ["faceid", "farl"])
def test_malicious_pickle_is_one_line_and_never_runs(tmp_path, kind):
    marker = tmp_path / "code-ran"
    path = _malicious(tmp_path / ("ip-adapter-faceid_sd15.bin" if kind == "faceid" else "farl.pth"), marker)
    with pytest.raises(ModelFileError) as err:
        if kind == "faceid":
            from nullface.models.sd15 import read_faceid
            read_faceid(path)
        else:
            from nullface.models.farl import load_farl
            load_farl(path)
    msg = one_line(str(err.value))
    assert path.name in msg and "weights_only" not in msg and "never run" in msg
    assert not marker.exists()


@pytest.mark.parametrize("drop, component", [("first_stage_model.", "AutoencoderKL"),
                                             ("cond_stage_model.", "CLIPTextModel")])
def test_single_file_missing_a_component_is_one_line(tmp_path, tiny, drop, component):
    import tests.ldm_checkpoint as ldm
    from nullface.models.sd15 import load_sd15
    sd = {k: v for k, v in ldm.ldm_state_dict(tiny["sd15"]).items() if not k.startswith(drop)}
    path = ldm.write_checkpoint(sd, tmp_path / "partial.safetensors")
    with pytest.raises(ModelFileError) as err:
        load_sd15(path, torch.device("cpu"), torch.float32, config_dir=tiny["sd15"])
    msg = one_line(str(err.value))
    assert "partial.safetensors" in msg and component in msg and "from_single_file" not in msg


# ------------------------------------------------------------------------------ Ctrl-C from the first instant
def test_ctrl_c_while_the_parser_imports_is_one_line(monkeypatch, capsys):
    import importlib

    from nullface.commands import cli
    real = importlib.import_module

    def interrupted(name, package=None):
        if package == cli.__package__:
            raise KeyboardInterrupt
        return real(name, package)

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    assert main(["anonymize", "x", "-o", "y"]) == 130
    assert one_line(capsys.readouterr().err) == "interrupted"


def test_ctrl_c_in_the_first_second_of_python_m_nullface(tmp_path):
    """A real SIGINT while ``python -m nullface`` is still importing (torch, diffusers ...)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "nullface", "anonymize", str(tmp_path / "x.png"), "-o",
                             str(tmp_path / "out")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)                            # the interpreter is up; the imports take seconds
    assert proc.poll() is None, "the command ended before the interrupt"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert one_line(err) == "interrupted"
