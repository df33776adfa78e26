"""One settings schema: validation, node widgets, CLI flags and README tables all agree with it."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from nullface.commands.flags import dest_of, flag_of, read_settings
from nullface.commands.methods import METHODS, settings_classes
from nullface.errors import InputError
from nullface.methods.inpaint.settings import InpaintSettings
from nullface.methods.nullface.settings import NullFaceSettings
from nullface.methods.revpers.settings import ReversePersonalizationSettings as RS
from nullface.schema import check_value, specs

ROOT = Path(__file__).resolve().parents[1]
CLASSES = (NullFaceSettings, RS, InpaintSettings)


@pytest.fixture(scope="module")
def nodes():
    from tests.conftest import load_pack
    return load_pack().NODE_CLASS_MAPPINGS


def _widgets_module():
    from tests.conftest import pack_module
    return pack_module("nodes.widgets")


# ---------------------------------------------------------------------------------------------- the schema
@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_has_help_a_default_in_range_and_the_defaults_validate(cls):
    cls().validate()
    for name, s in cls.specs().items():
        assert s.help and cls.spec(name)["help"] == s.help, name
        assert isinstance(s.default, s.kind), name
    assert isinstance(cls.KEEP, tuple) and cls.KEEP_SOURCE and cls.METHOD


@pytest.mark.parametrize("cls", CLASSES)
def test_types_finite_numbers_and_ranges_are_checked_for_every_field(cls):
    for name, s in cls.specs().items():
        bad = [None, "1"] if s.kind is not str else [None, 1]
        if s.kind in (int, float):
            bad += [True, math.nan, math.inf, -math.inf] + ([1.5] if s.kind is int else [])
            if s.lo is not None:
                bad.append(s.lo if s.lo_open else s.lo - 1)
            if s.hi is not None:
                bad.append(s.hi if s.hi_open else s.hi + 1)
        if s.kind is bool:
            bad.append(1)
        for value in bad:
            with pytest.raises(InputError, match=name) as err:
                cls(**{name: value}).validate()
            assert "\n" not in str(err.value)


def test_exclusive_bounds_refuse_the_bound_itself():
    with pytest.raises(InputError, match="lambda_cfg must be > 0"):
        NullFaceSettings(lambda_cfg=0.0).validate()
    with pytest.raises(InputError, match="guidance_scale must be >= -30 and < 0"):
        RS(guidance_scale=0.0).validate()
    assert RS(guidance_scale=-0.01).validate() and NullFaceSettings(lambda_cfg=0.01).validate()


# ---------------------------------------------------------------------------------------------- the nodes
def _inputs(node_cls) -> dict:
    spec = node_cls.INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


def test_every_settings_widget_of_every_node_agrees_with_the_schema(nodes):
    """A node's widget for a settings field has the schema's type, default and range (an exclusive bound is the
    nearest allowed step); a node that shows settings widgets names its settings class, so none is hand-made."""
    widget = _widgets_module().widget
    field_names = {n for c in CLASSES for n in c.specs()} - {"crop_size"}   # crop_size: also PhotoOptions'
    checked = 0
    for node_name, node_cls in nodes.items():
        cls = getattr(node_cls, "SETTINGS", None)
        for name, value in _inputs(node_cls).items():
            if cls is None:
                assert name not in field_names, f"{node_name}.{name} is a settings widget without SETTINGS"
                continue
            if name not in cls.specs():
                continue
            s, (kind, opts) = cls.specs()[name], value
            want_kind, want = widget(cls, name)
            assert kind == want_kind, (node_name, name)
            assert opts["default"] == s.default == want["default"], (node_name, name)
            for key in ("min", "max", "step"):
                assert opts.get(key) == want.get(key), (node_name, name, key)
            if s.kind in (int, float):
                lo_ok = s.lo is None or (opts["min"] > s.lo if s.lo_open else opts["min"] == s.lo)
                hi_ok = s.hi is None or (opts["max"] < s.hi if s.hi_open else opts["max"] == s.hi)
                assert lo_ok and hi_ok, (node_name, name, opts)
                check_value(s, opts["min"])                     # the widget's ends are allowed values
                check_value(s, opts["max"])
            checked += 1
    assert checked >= 60


def test_t_skip_has_one_range_in_every_node(nodes):
    ranges = {(o["min"], o["max"]) for n in nodes.values() for k, (_, o) in _inputs(n).items() if k == "t_skip"}
    assert ranges == {(0, 999)}


def test_every_node_explains_itself(nodes):
    assert len(nodes) >= 27
    for name, cls in nodes.items():
        text = getattr(cls, "DESCRIPTION", "")
        assert isinstance(text, str) and len(text) >= 80, f"{name} has no DESCRIPTION (what it does, what it needs)"


def test_native_nodes_and_apply_faceid_refuse_settings_that_anonymize_nothing(nodes):
    """Before: the native guider accepted lambda_cfg = 0 and Apply FaceID an IP-Adapter scale of 0."""
    guider = nodes["NullFaceGuider"]()
    with pytest.raises(InputError, match="lambda_cfg"):
        guider.get_guider(None, [], [], 0.0, 1 / 3, False)
    with pytest.raises(InputError, match="lambda_cfg"):
        guider.get_guider(None, [], [], float("nan"), 1 / 3, False)
    with pytest.raises(InputError, match="ip_adapter_scale"):
        nodes["NullFaceApplyFaceID"]().apply(None, "faceid.bin", None, 0.0, 1.0)
    with pytest.raises(InputError, match="t_skip"):
        nodes["NullFaceNativeInversion"]().invert(None, [], {"samples": torch.zeros(1, 4, 8, 8)}, 50, 50, 0)


@pytest.mark.parametrize("node, args", [
    ("NullFaceNegateIdentity", dict(embeddings=[], lambda_id=0.0, max_angle=0.0, seed=0)),
    ("NullFaceInversion", dict(pipe=None, image=None, steps=10, t_skip=10, seed=0)),
    ("RevPersInversion", dict(pipe=None, image=None, steps=4, skip=0.7, guidance_scale=0.0, ip_adapter_scale=1.0,
                              seed=0)),
    ("RevPersSampler", dict(pipe=None, inversion=None, embeddings=[], guidance_scale=2.0, id_scale=1.0, prompt="")),
    ("RevPersSampler", dict(pipe=None, inversion=None, embeddings=[], guidance_scale=-10.0, id_scale=0.0,
                            prompt="")),
    ("RevPersAnonymize", dict(pipe=None, face_models=None, image=None, steps=4, skip=0.7, guidance_scale=-10.0,
                              id_scale=1.0, ip_adapter_scale=0.0, seed=0, prompt="")),
    ("RevPersAnonymize", dict(pipe=None, face_models=None, image=None, steps=4, skip=0.7,
                              guidance_scale=float("nan"), id_scale=1.0, ip_adapter_scale=1.0, seed=0, prompt="")),
    ("NullFaceInpaintAnonymize", dict(inpaint_pipe=None, image=None, mask=None, target=None, start_t=100)),
])
def test_every_method_node_refuses_settings_that_anonymize_nothing_before_any_model(nodes, node, args):
    cls = nodes[node]
    with pytest.raises(InputError):
        getattr(cls(), cls.FUNCTION)(**args)


# ---------------------------------------------------------------------------------------------- the CLI
LEGACY_FLAGS = ("--steps", "--t-skip", "--lambda-cfg", "--lambda-id", "--ip-scale", "--mask-delay", "--seed",
                "--prompt", "--skip", "--guidance-scale", "--id-scale", "--inpaint-steps", "--start-t",
                "--inpaint-guidance-scale", "--sim-weight", "--dissim-weight")


def _parser():
    from nullface.commands.cli import build_parser
    return build_parser()


def test_every_settings_flag_comes_from_the_schema_and_old_flags_stay():
    parser = _parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["anonymize"]
    options = {o: a for a in sub._actions for o in a.option_strings}
    flags = {flag_of(s) for c in settings_classes().values() for s in specs(c).values()} - {None}
    assert set(LEGACY_FLAGS) <= flags
    for flag in flags:
        assert options[flag].dest == dest_of(flag) and options[flag].default is None, flag


@pytest.mark.parametrize("method", list(METHODS))
def test_flags_read_back_into_the_methods_defaults_and_values(method):
    cls = METHODS[method].settings_cls()
    args = _parser().parse_args(["anonymize", "x", "-o", "y", "--method", method])
    assert read_settings(args, cls) == cls()
    args = _parser().parse_args(["anonymize", "x", "-o", "y", "--method", method, "--seed", "7"])
    assert read_settings(args, cls).seed == 7 and args.seed == 7


# ---------------------------------------------------------------------------------------------- the docs
def _make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "tools" / "make_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_settings_tables_are_the_code():
    docs = _make_docs()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for method in ("nullface", "revpers", "inpaint"):
        assert f"<!-- BEGIN settings:{method} -->" in readme and f"<!-- END settings:{method} -->" in readme
    for path in docs.default_files():
        text = path.read_text(encoding="utf-8")
        assert docs.update(text) == text, f"{path.name}: run python tools/make_docs.py"
    assert docs.main(["--check"]) == 0


def test_a_table_that_disagrees_with_the_code_is_caught(tmp_path):
    docs = _make_docs()
    page = tmp_path / "page.md"
    page.write_text("# x\n<!-- BEGIN settings:revpers -->\n<!-- END settings:revpers -->\ntail\n", encoding="utf-8")
    assert docs.main([str(page), "--check"]) == 1                      # empty table: stale
    assert docs.main([str(page)]) == 0 and docs.main([str(page), "--check"]) == 0
    text = page.read_text(encoding="utf-8")
    assert "`-10`" in text and "`--guidance-scale`" in text and text.endswith("tail\n")
    page.write_text(text.replace("`-10`", "`-5`"), encoding="utf-8")   # a hand edit
    assert docs.main([str(page), "--check"]) == 1
    with pytest.raises(ValueError):
        docs.update("<!-- BEGIN settings:nope -->\n<!-- END settings:nope -->\n")
    with pytest.raises(ValueError):
        docs.update("<!-- BEGIN settings:revpers -->\n")
