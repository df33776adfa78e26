"""The example workflows load and run in ComfyUI: checked against the live node definitions, without ComfyUI.

For every ``workflows/*.json`` (the frontend's saved-workflow format) and its twin ``workflows/api/*.json``
(the ``POST /prompt`` format): node types exist, widget values fit the inputs (count, including the
frontend's "control after generate" value after seeds, type, range, combo options), links join outputs to
inputs of the same type and agree with the nodes' sockets, required inputs are connected, and the API twin
is the same graph. A broken copy must fail the same checks.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))

# The core ComfyUI nodes the workflows may use, as ComfyUI's nodes.py declares them.
CORE_NODES = {
    "LoadImage": {"input": {"required": {"image": (["<files in ComfyUI/input>"], {"image_upload": True})}},
                  "output": ("IMAGE", "MASK"), "output_name": ("IMAGE", "MASK"), "output_node": False,
                  "display": "Load Image"},
    "PreviewImage": {"input": {"required": {"images": ("IMAGE",)}},
                     "output": (), "output_name": (), "output_node": True, "display": "Preview Image"},
    "SaveImage": {"input": {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}},
                  "output": (), "output_name": (), "output_node": True, "display": "Save Image"},
    "ImageBatch": {"input": {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}},
                   "output": ("IMAGE",), "output_name": ("IMAGE",), "output_node": False, "display": "Batch Images"},
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": (["<files in models/checkpoints>"],)}},
                               "output": ("MODEL", "CLIP", "VAE"), "output_name": ("MODEL", "CLIP", "VAE"),
                               "output_node": False, "display": "Load Checkpoint"},
    "CLIPTextEncode": {"input": {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                                              "clip": ("CLIP",)}},
                       "output": ("CONDITIONING",), "output_name": ("CONDITIONING",), "output_node": False,
                       "display": "CLIP Text Encode (Prompt)"},
    "VAEEncode": {"input": {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}},
                  "output": ("LATENT",), "output_name": ("LATENT",), "output_node": False, "display": "VAE Encode"},
    "VAEDecode": {"input": {"required": {"samples": ("LATENT",), "vae": ("VAE",)}},
                  "output": ("IMAGE",), "output_name": ("IMAGE",), "output_node": False, "display": "VAE Decode"},
    # comfy_extras/nodes_custom_sampler.py, V3 schema (io.Noise = NOISE, io.Guider = GUIDER, ...)
    "DisableNoise": {"input": {"required": {}}, "output": ("NOISE",), "output_name": ("NOISE",), "output_node": False,
                     "display": "DisableNoise"},
    "SamplerCustomAdvanced": {"input": {"required": {"noise": ("NOISE",), "guider": ("GUIDER",),
                                                     "sampler": ("SAMPLER",), "sigmas": ("SIGMAS",),
                                                     "latent_image": ("LATENT",)}},
                              "output": ("LATENT", "LATENT"), "output_name": ("output", "denoised_output"),
                              "output_node": False, "display": "SamplerCustomAdvanced"},
}
# Combo inputs whose options are the files installed in ComfyUI: any non-empty string is accepted.
FILE_COMBOS = {("LoadImage", "image"), ("NullFacePipeLoader", "checkpoint"), ("NullFacePipeLoader", "faceid"),
               ("NullFaceFaceModelsLoader", "model_pack"), ("NullFaceInpaintLoader", "checkpoint"),
               ("NullFaceInpaintLoader", "feature_extractor"), ("CheckpointLoaderSimple", "ckpt_name"),
               ("NullFaceApplyFaceID", "faceid")}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


# ------------------------------------------------------------------------------------------------ node specs
def _load_pack():
    from tests.conftest import load_pack
    return load_pack()


def _spec(input_types, outputs, output_names, output_node, display):
    inputs = []
    for section in ("required", "optional"):
        for name, value in (input_types.get(section) or {}).items():
            kind = value[0]
            opts = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
            combo = isinstance(kind, (list, tuple))
            widget = (combo or kind in WIDGET_TYPES or kind == "COMBO") and not opts.get("forceInput")
            inputs.append({"name": name, "type": "COMBO" if combo else kind, "options": list(kind) if combo else None,
                           "opts": opts, "required": section == "required", "widget": widget})
    return {"inputs": inputs, "outputs": list(outputs), "output_names": list(output_names or outputs),
            "output_node": bool(output_node), "display": display}


@pytest.fixture(scope="module")
def specs() -> dict:
    pack = _load_pack()
    out = {}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        out[name] = _spec(cls.INPUT_TYPES(), cls.RETURN_TYPES, getattr(cls, "RETURN_NAMES", None),
                          getattr(cls, "OUTPUT_NODE", False), pack.NODE_DISPLAY_NAME_MAPPINGS.get(name, name))
    for name, core in CORE_NODES.items():
        out[name] = _spec(core["input"], core["output"], core["output_name"], core["output_node"], core["display"])
    return out


def _has_control(inp) -> bool:
    default = inp["name"] in ("seed", "noise_seed")          # the frontend's rule for "control after generate"
    return inp["type"] == "INT" and bool(inp["opts"].get("control_after_generate", default))


# ----------------------------------------------------------------------------------------------- the checks
def check_value(node_type: str, inp: dict, value) -> str | None:
    """Why ``value`` does not fit the widget input, or None."""
    kind, opts, where = inp["type"], inp["opts"], f"{node_type}.{inp['name']}"
    if kind == "COMBO":
        if (node_type, inp["name"]) in FILE_COMBOS:
            return None if isinstance(value, str) and value else f"{where}: file name expected, got {value!r}"
        return None if value in inp["options"] else f"{where}: {value!r} is not one of {inp['options']}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{where}: boolean expected, got {value!r}"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{where}: string expected, got {value!r}"
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{where}: integer expected, got {value!r}"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{where}: number expected, got {value!r}"
    if "min" in opts and value < opts["min"]:
        return f"{where}: {value!r} is below the minimum {opts['min']}"
    if "max" in opts and value > opts["max"]:
        return f"{where}: {value!r} is above the maximum {opts['max']}"
    return None


def ui_widget_values(node: dict, spec: dict, problems: list[str]) -> dict:
    """The node's widget values by input name, checking count and types as the frontend reads them."""
    where = f"node {node.get('id')} ({node.get('type')})"
    values = list(node.get("widgets_values") or [])
    expected = sum(1 + _has_control(i) + bool(i["opts"].get("image_upload")) for i in spec["inputs"] if i["widget"])
    if len(values) != expected:
        problems.append(f"{where}: {len(values)} widget values, the node has {expected} widgets")
        return {}
    by_name, it = {}, iter(values)
    for inp in spec["inputs"]:
        if not inp["widget"]:
            continue
        value = next(it)
        by_name[inp["name"]] = value
        if (why := check_value(node["type"], inp, value)):
            problems.append(f"{where}: {why}")
        if _has_control(inp) and (control := next(it)) not in CONTROL_VALUES:
            problems.append(f"{where}: control_after_generate of {inp['name']} is {control!r}")
        if inp["opts"].get("image_upload") and (upload := next(it)) != "image":
            problems.append(f"{where}: the upload widget of {inp['name']} stores {upload!r}, expected 'image'")
    return by_name


def check_ui(ui: dict, specs: dict) -> tuple[list[str], dict]:
    """Problems of a saved-workflow graph, and {node id: {input name: widget value}}."""
    problems: list[str] = []
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"):
        if key not in ui:
            problems.append(f"missing top-level key {key!r}")
    nodes = {n["id"]: n for n in ui.get("nodes", [])}
    if len(nodes) != len(ui.get("nodes", [])):
        problems.append("duplicate node ids")
    links = {}
    for link in ui.get("links", []):
        if not (isinstance(link, list) and len(link) == 6):
            problems.append(f"malformed link {link!r}")
            continue
        if link[0] in links:
            problems.append(f"duplicate link id {link[0]}")
        links[link[0]] = link
    if nodes and ui.get("last_node_id", 0) < max(nodes):
        problems.append("last_node_id is below the largest node id")
    if links and ui.get("last_link_id", 0) < max(links):
        problems.append("last_link_id is below the largest link id")
    widgets = {}
    for nid, node in nodes.items():
        where = f"node {nid} ({node.get('type')})"
        spec = specs.get(node.get("type"))
        if spec is None:
            problems.append(f"{where}: unknown node type")
            continue
        for key in ("pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties"):
            if key not in node:
                problems.append(f"{where}: missing {key!r}")
        widgets[nid] = ui_widget_values(node, spec, problems)
        by_name = {i["name"]: i for i in spec["inputs"]}
        sockets = [i for i in spec["inputs"] if not i["widget"]]
        names = [i.get("name") for i in node.get("inputs", [])]
        for inp in sockets:
            if inp["name"] not in names:
                problems.append(f"{where}: socket {inp['name']!r} is missing from its inputs")
        for slot, entry in enumerate(node.get("inputs", [])):
            inp = by_name.get(entry.get("name"))
            if inp is None:
                problems.append(f"{where}: input {entry.get('name')!r} does not exist")
                continue
            if inp["widget"] and "widget" not in entry:
                problems.append(f"{where}: widget {inp['name']!r} listed as a socket")
            if entry.get("type") != inp["type"]:
                problems.append(f"{where}: input {inp['name']} has type {entry.get('type')!r}, "
                                f"expected {inp['type']!r}")
            link_id = entry.get("link")
            if link_id is None:
                if inp["required"] and not inp["widget"]:
                    problems.append(f"{where}: required input {inp['name']!r} is not connected")
                continue
            link = links.get(link_id)
            if link is None or link[3] != nid or link[4] != slot:
                problems.append(f"{where}: input {inp['name']} names link {link_id}, which does not end there")
        outputs = node.get("outputs", [])
        if [o.get("type") for o in outputs] != spec["outputs"]:
            problems.append(f"{where}: outputs {[o.get('type') for o in outputs]} != {spec['outputs']}")
        for slot, out in enumerate(outputs):
            for link_id in out.get("links") or []:
                link = links.get(link_id)
                if link is None or link[1] != nid or link[2] != slot:
                    problems.append(f"{where}: output {slot} names link {link_id}, which does not start there")
    for link_id, (lid, src, src_slot, dst, dst_slot, ltype) in links.items():
        where = f"link {lid}"
        if src not in nodes or dst not in nodes:
            problems.append(f"{where}: joins a missing node")
            continue
        outs, ins = nodes[src].get("outputs", []), nodes[dst].get("inputs", [])
        if not 0 <= src_slot < len(outs) or not 0 <= dst_slot < len(ins):
            problems.append(f"{where}: slot out of range")
            continue
        if lid not in (outs[src_slot].get("links") or []):
            problems.append(f"{where}: not listed by node {src}'s output {src_slot}")
        if ins[dst_slot].get("link") != lid:
            problems.append(f"{where}: node {dst}'s input {dst_slot} does not name it")
        if nodes[src].get("mode", 0) and not nodes[dst].get("mode", 0):
            problems.append(f"{where}: node {dst} runs on the output of muted node {src}")
        out_type, in_type = outs[src_slot].get("type"), ins[dst_slot].get("type")
        if not (ltype == out_type == in_type):
            problems.append(f"{where}: joins {out_type} to {in_type} (link type {ltype})")
    problems += _cycles({nid: [links[n["link"]][1] for n in node.get("inputs", []) if n.get("link") in links]
                         for nid, node in nodes.items()})
    return problems, widgets


def _cycles(deps: dict) -> list[str]:
    state = {}

    def visit(n) -> bool:
        if state.get(n) == 1:
            return True
        if state.get(n) == 2:
            return False
        state[n] = 1
        if any(visit(d) for d in deps.get(n, []) if d in deps):
            return True
        state[n] = 2
        return False
    return ["the graph has a cycle"] if any(visit(n) for n in deps) else []


def check_api(api: dict, ui: dict, ui_widgets: dict, specs: dict) -> list[str]:
    """Problems of the API twin, alone and against the UI graph."""
    problems = []
    nodes = {str(n["id"]): n for n in ui.get("nodes", [])}
    active = {k for k, n in nodes.items() if n.get("mode", 0) == 0}      # muted / bypassed nodes do not run
    if set(api) != active:
        problems.append(f"API nodes {sorted(api)} != UI nodes {sorted(active)} (muted ones left out)")
    links = {l[0]: l for l in ui.get("links", []) if isinstance(l, list) and len(l) == 6}
    has_output = False
    for nid, entry in api.items():
        where = f"API node {nid} ({entry.get('class_type')})"
        spec = specs.get(entry.get("class_type"))
        if spec is None:
            problems.append(f"{where}: unknown node type")
            continue
        has_output |= spec["output_node"]
        if "_meta" not in entry or not entry["_meta"].get("title"):
            problems.append(f"{where}: no _meta.title")
        inputs = entry.get("inputs", {})
        known = {i["name"]: i for i in spec["inputs"]}
        for name in inputs:
            if name not in known:
                problems.append(f"{where}: input {name!r} does not exist")
        for inp in spec["inputs"]:
            value = inputs.get(inp["name"])
            if value is None:
                if inp["required"]:
                    problems.append(f"{where}: required input {inp['name']!r} is missing")
                continue
            if isinstance(value, list):
                src = api.get(str(value[0])) if len(value) == 2 else None
                src_spec = specs.get(src.get("class_type")) if src else None
                if not src_spec or not isinstance(value[1], int) or not 0 <= value[1] < len(src_spec["outputs"]):
                    problems.append(f"{where}: input {inp['name']} links to a missing output {value!r}")
                elif src_spec["outputs"][value[1]] != inp["type"]:
                    problems.append(f"{where}: input {inp['name']} ({inp['type']}) gets "
                                    f"{src_spec['outputs'][value[1]]}")
            elif not inp["widget"]:
                problems.append(f"{where}: socket {inp['name']!r} holds a value instead of a link")
            elif (why := check_value(entry["class_type"], inp, value)):
                problems.append(f"{where}: {why}")
        ui_node = nodes.get(nid)
        if ui_node is None:
            continue
        if entry.get("class_type") != ui_node.get("type"):
            problems.append(f"{where}: type differs from the UI's {ui_node.get('type')}")
            continue
        expected_title = ui_node.get("title") or spec["display"]
        if entry.get("_meta", {}).get("title") != expected_title:
            problems.append(f"{where}: title {entry.get('_meta', {}).get('title')!r} != {expected_title!r}")
        for name, value in ui_widgets.get(ui_node["id"], {}).items():
            if inputs.get(name) != value or type(inputs.get(name)) is not type(value):
                problems.append(f"{where}: {name} = {inputs.get(name)!r}, the UI has {value!r}")
        ui_links = {}
        for slot_entry in ui_node.get("inputs", []):
            link = links.get(slot_entry.get("link"))
            if link:
                ui_links[slot_entry["name"]] = [str(link[1]), link[2]]
        api_links = {k: v for k, v in inputs.items() if isinstance(v, list)}
        if api_links != ui_links:
            problems.append(f"{where}: links {api_links} != UI links {ui_links}")
    if not has_output:
        problems.append("no output node: ComfyUI refuses a prompt without one")
    return problems


def check_pair(ui: dict, api: dict, specs: dict) -> list[str]:
    problems, widgets = check_ui(ui, specs)
    return problems + check_api(api, ui, widgets, specs)


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- the tests
def test_the_example_workflows_exist():
    names = {p.stem for p in UI_FILES}
    assert {"nullface_full_face", "nullface_keep_eyes_mouth", "nullface_lambda_sweep",
            "nullface_attribute_prompt", "nullface_group_photo"} <= names
    assert names == {p.stem for p in (WORKFLOWS / "api").glob("*.json")}, "every workflow needs its API twin"


@pytest.mark.parametrize("path", UI_FILES, ids=[p.stem for p in UI_FILES])
def test_workflow_fits_the_live_nodes(path, specs):
    problems = check_pair(_read(path), _read(WORKFLOWS / "api" / path.name), specs)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_workflows_are_generated_from_the_current_nodes(tmp_path):
    """The committed files are what tools/make_workflows.py makes from today's nodes (regenerate if not)."""
    spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "tools" / "make_workflows.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules["make_workflows"] = tool          # dataclasses look their module up while it executes
    spec.loader.exec_module(tool)
    assert tool.main(["--out", str(tmp_path)]) == 0
    for made in sorted(tmp_path.rglob("*.json")):
        rel = made.relative_to(tmp_path)
        assert (WORKFLOWS / rel).is_file(), f"workflows/{rel} is missing: run python tools/make_workflows.py"
        assert (WORKFLOWS / rel).read_text(encoding="utf-8") == made.read_text(encoding="utf-8"), \
            f"workflows/{rel} is stale: run python tools/make_workflows.py"


def test_the_workflows_use_the_paper_defaults():
    from nullface.methods.nullface.settings import NullFaceSettings
    d = NullFaceSettings()
    api = _read(WORKFLOWS / "api" / "nullface_full_face.json")
    by_type = {n["class_type"]: n["inputs"] for n in api.values()}
    assert (by_type["NullFaceInversion"]["steps"], by_type["NullFaceInversion"]["t_skip"]) == (d.steps, d.t_skip)
    assert by_type["NullFaceSampler"]["lambda_cfg"] == d.lambda_cfg
    assert by_type["NullFaceSampler"]["mask_delay"] == d.mask_delay
    assert by_type["NullFaceNegateIdentity"]["lambda_id"] == d.lambda_id
    sweep = _read(WORKFLOWS / "api" / "nullface_lambda_sweep.json")
    inversions = [k for k, n in sweep.items() if n["class_type"] == "NullFaceInversion"]
    samplers = [n["inputs"] for n in sweep.values() if n["class_type"] == "NullFaceSampler"]
    assert len(inversions) == 1 and all(s["inversion"] == [inversions[0], 0] for s in samplers)
    assert {5.0, 10.0, 15.0} <= {s["lambda_cfg"] for s in samplers}
    lambda_ids = {n["inputs"]["lambda_id"] for n in sweep.values() if n["class_type"] == "NullFaceNegateIdentity"}
    assert len(lambda_ids) == 2
    prompt = _read(WORKFLOWS / "api" / "nullface_attribute_prompt.json")
    assert any(n["inputs"].get("prompt") == "an elderly man" for n in prompt.values())


def test_the_localized_workflows_keep_eyes_and_mouth():
    api = _read(WORKFLOWS / "api" / "nullface_keep_eyes_mouth.json")
    sampler = next(n for n in api.values() if n["class_type"] == "NullFaceSampler")
    prepare = api[sampler["inputs"]["mask"][0]]
    assert prepare["class_type"] == "NullFaceRegionMask" and prepare["inputs"]["mask_means"] == "keep"
    source = api[prepare["inputs"]["mask"][0]]
    if source["class_type"] == "NullFaceFaceRegionMask":          # landmarks: exactly eyes and mouth ticked
        ticked = {k for k, v in source["inputs"].items() if v is True}
        assert ticked == {"eyes", "mouth"}
    else:                                                         # a mask painted on the loaded image
        assert source["class_type"] == "LoadImage" and prepare["inputs"]["mask"][1] == 1
    group = _read(WORKFLOWS / "api" / "nullface_group_photo.json")
    photo = next(n for n in group.values() if n["class_type"] == "NullFaceAnonymizePhoto")
    assert photo["inputs"]["keep"] == "eyes,mouth" and photo["inputs"]["on_failure"] == "error"
    saved = [n for n in group.values() if n["class_type"] == "NullFaceSaveAnonymized"]
    assert saved and all(api_src(group, n["inputs"]["images"]) is photo for n in saved)
    for path in (WORKFLOWS / "api").glob("*.json"):              # final outputs are saved without metadata
        assert "SaveImage" not in {n["class_type"] for n in _read(path).values()}, path.name


@pytest.mark.parametrize("path", UI_FILES, ids=[p.stem for p in UI_FILES])
def test_no_example_writes_the_original_unless_the_user_unmutes_it(path):
    """What runs saves only through the metadata-free save node; a preview (which writes its images, the
    workflow and the input's file name into ComfyUI's temp/) is muted, in a group saying so."""
    api = _read(WORKFLOWS / "api" / path.name)
    outputs = {n["class_type"] for n in api.values()} & {"PreviewImage", "SaveImage", "NullFaceSaveAnonymized"}
    assert outputs == {"NullFaceSaveAnonymized"}, path.name
    ui = _read(path)
    for n in ui["nodes"]:
        if n["type"] in ("PreviewImage", "SaveImage"):
            assert n["mode"] == 2 and "ORIGINAL" in n.get("title", ""), (path.name, n["id"])
            x, y = n["pos"]
            assert any("ORIGINAL" in g["title"] and g["bounding"][0] <= x <= g["bounding"][0] + g["bounding"][2]
                       and g["bounding"][1] <= y <= g["bounding"][1] + g["bounding"][3] for g in ui["groups"])


def test_the_inpainting_workflow_repaints_the_face_towards_a_target_at_the_defaults():
    from nullface.methods.inpaint.settings import InpaintSettings
    api = _read(WORKFLOWS / "api" / "nullface_inpaint_attribute_guidance.json")
    node = next(n for n in api.values() if n["class_type"] == "NullFaceInpaintAnonymize")
    d = InpaintSettings()
    assert {k: node["inputs"][k] for k in ("steps", "guidance_scale", "sim_weight", "dissim_weight")} == \
        {"steps": d.steps, "guidance_scale": d.guidance_scale, "sim_weight": d.sim_weight,
         "dissim_weight": d.dissim_weight}
    mask = api_src(api, node["inputs"]["mask"])
    assert mask["class_type"] == "NullFaceFaceRegionMask" and mask["inputs"]["face"] is True
    assert api_src(api, node["inputs"]["target"])["class_type"] == "LoadImage"
    loader = api_src(api, node["inputs"]["inpaint_pipe"])
    assert loader["inputs"]["feature_extractor"].startswith("FaRL")


def api_src(api: dict, link: list) -> dict:
    return api[link[0]]


def _mutations():
    """(name, function(ui, api)) that each break the full-face workflow in one way."""
    def node(graph, type_):
        return next(n for n in graph["nodes"] if n["type"] == type_)

    def api_node(api, type_):
        return next(n for n in api.values() if n["class_type"] == type_)

    def unknown_type(ui, api):
        node(ui, "NullFaceEmbedding")["type"] = "NullFaceNoSuchNode"

    def missing_control_value(ui, api):
        node(ui, "NullFaceInversion")["widgets_values"].remove("fixed")

    def out_of_range(ui, api):
        node(ui, "NullFaceInversion")["widgets_values"][0] = 0          # steps >= 1

    def wrong_value_type(ui, api):
        node(ui, "NullFaceSampler")["widgets_values"][0] = "ten"         # lambda_cfg

    def bad_combo(ui, api):
        node(ui, "NullFacePipeLoader")["widgets_values"][2] = "tpu"      # device

    def file_combo_not_a_string(ui, api):
        node(ui, "NullFacePipeLoader")["widgets_values"][0] = 15          # checkpoint

    def link_type_mismatch(ui, api):
        ui["links"][0][5] = "LATENT"

    def link_to_wrong_socket(ui, api):
        sampler = node(ui, "NullFaceSampler")
        sampler["inputs"][1]["link"], sampler["inputs"][2]["link"] = sampler["inputs"][2]["link"], \
            sampler["inputs"][1]["link"]

    def required_input_unlinked(ui, api):
        sampler = node(ui, "NullFaceSampler")
        lid = sampler["inputs"][2]["link"]
        sampler["inputs"][2]["link"] = None
        ui["links"] = [l for l in ui["links"] if l[0] != lid]
        for n in ui["nodes"]:
            for o in n["outputs"]:
                o["links"] = [x for x in o["links"] if x != lid]

    def api_value_differs(ui, api):
        api_node(api, "NullFaceSampler")["inputs"]["lambda_cfg"] = 12.0

    def api_link_differs(ui, api):
        api_node(api, "NullFaceSampler")["inputs"]["identity"] = [api_node_id(api, "NullFaceEmbedding"), 0]

    def api_node_missing(ui, api):
        del api[api_node_id(api, "NullFaceSaveAnonymized")]

    def api_required_missing(ui, api):
        del api_node(api, "NullFaceInversion")["inputs"]["t_skip"]

    def api_node_id(api, type_):
        return next(k for k, n in api.items() if n["class_type"] == type_)

    def image_into_pipe_socket(ui, api):
        """Rewire consistently (UI links and API) the sampler's pipe input to LoadImage's IMAGE."""
        sampler = node(ui, "NullFaceSampler")
        lid = sampler["inputs"][0]["link"]
        link = next(l for l in ui["links"] if l[0] == lid)
        for n in ui["nodes"]:
            for o in n["outputs"]:
                o["links"] = [x for x in o["links"] if x != lid]
        image = node(ui, "LoadImage")
        image["outputs"][0]["links"].append(lid)
        link[1], link[2], link[5] = image["id"], 0, "IMAGE"
        api_node(api, "NullFaceSampler")["inputs"]["pipe"] = [str(image["id"]), 0]

    return [(unknown_type, "unknown node type"), (missing_control_value, "widget values, the node has"),
            (out_of_range, "below the minimum"), (wrong_value_type, "number expected"), (bad_combo, "is not one of"),
            (file_combo_not_a_string, "file name expected"), (link_type_mismatch, "(link type LATENT)"),
            (link_to_wrong_socket, "does not end there"), (required_input_unlinked, "is not connected"),
            (image_into_pipe_socket, "joins IMAGE to NULLFACE_PIPE"), (api_value_differs, "the UI has 10.0"),
            (api_link_differs, "gets NULLFACE_EMBEDS"), (api_node_missing, "!= UI nodes"),
            (api_required_missing, "required input 't_skip' is missing")]


@pytest.mark.parametrize("mutate,expected", _mutations(), ids=[m.__name__ for m, _ in _mutations()])
def test_a_broken_workflow_fails(mutate, expected, specs, tmp_path):
    name = "nullface_full_face.json"
    (tmp_path / "api").mkdir()
    ui, api = _read(WORKFLOWS / name), _read(WORKFLOWS / "api" / name)
    assert not check_pair(copy.deepcopy(ui), copy.deepcopy(api), specs)
    mutate(ui, api)
    (tmp_path / name).write_text(json.dumps(ui), encoding="utf-8")
    (tmp_path / "api" / name).write_text(json.dumps(api), encoding="utf-8")
    problems = check_pair(_read(tmp_path / name), _read(tmp_path / "api" / name), specs)
    assert any(expected in p for p in problems), f"{mutate.__name__} was not detected: {problems}"
