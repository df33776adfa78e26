"""Generate the example workflows from compact graph descriptions and the LIVE node definitions.

For each workflow this writes

- ``workflows/<name>.json``: the ComfyUI frontend's saved-workflow format (version 0.4), which the
  frontend lists under "Templates" for this pack (ComfyUI serves a custom node's ``workflows/`` folder);
- ``workflows/api/<name>.json``: the same graph in the API format that ``POST /prompt`` accepts;
- ``workflows/<name>.jpg``: the template's thumbnail (the frontend requests
  ``/api/workflow_templates/<pack folder>/<name>.jpg`` for every custom-node template), a drawing of the
  graph itself: no photo, no face.

Widget values follow each node's ``INPUT_TYPES`` order (required, then optional) as the frontend stores
them: an INT input named ``seed`` / ``noise_seed`` (or flagged ``control_after_generate``) is followed by
its "control after generate" value, and LoadImage's upload button stores ``"image"``.
Values not given in a description are the node's defaults, so the workflows carry the paper's settings.
Nothing in an example writes the original face: results go to the metadata-free save node, and a
before/after comparison is a separate, MUTED group (mode 2, left out of the API twin) that the user may
unmute on their own machine; ComfyUI's preview writes its images, with the workflow and the input's file
name, into its temp folder.

Usage: ``python tools/make_workflows.py [--out DIR] [--check]`` (``--check`` compares with the files on
disk and exits 1 when they are stale).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACK_MODULE = "ComfyUI_NullFace"

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
FACEID = "ip-adapter-faceid_sd15.bin"
INSIGHTFACE_PACK = "buffalo_l"
SDXL_CHECKPOINT = "sd_xl_base_1.0.safetensors"
FACEID_SDXL = "ip-adapter-faceid_sdxl.bin"
FACE_IMAGE = "face.png"
GROUP_IMAGE = "group.jpg"
INPAINT_CHECKPOINT = "sd-v1-5-inpainting.ckpt"
FARL = "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"
TARGET_IMAGE = "target_face.png"
VIDEO_FILE = "clip.mp4"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = ("seed", "noise_seed")      # the frontend adds "control after generate" after these INTs

# The core ComfyUI nodes the workflows use, as their INPUT_TYPES / RETURN_TYPES read in ComfyUI's nodes.py.
CORE_NODES: dict[str, dict[str, Any]] = {
    "LoadImage": {"input": {"required": {"image": ([FACE_IMAGE, GROUP_IMAGE, TARGET_IMAGE], {"image_upload": True})}},
                  "output": ("IMAGE", "MASK"), "output_name": ("IMAGE", "MASK"), "display": "Load Image"},
    "PreviewImage": {"input": {"required": {"images": ("IMAGE",)}},
                     "output": (), "output_name": (), "display": "Preview Image"},
    "SaveImage": {"input": {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}},
                  "output": (), "output_name": (), "display": "Save Image"},
    "ImageBatch": {"input": {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}},
                   "output": ("IMAGE",), "output_name": ("IMAGE",), "display": "Batch Images"},
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": ([CHECKPOINT],)}},
                               "output": ("MODEL", "CLIP", "VAE"), "output_name": ("MODEL", "CLIP", "VAE"),
                               "display": "Load Checkpoint"},
    "CLIPTextEncode": {"input": {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                                              "clip": ("CLIP",)}},
                       "output": ("CONDITIONING",), "output_name": ("CONDITIONING",),
                       "display": "CLIP Text Encode (Prompt)"},
    "VAEEncode": {"input": {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}},
                  "output": ("LATENT",), "output_name": ("LATENT",), "display": "VAE Encode"},
    "VAEDecode": {"input": {"required": {"samples": ("LATENT",), "vae": ("VAE",)}},
                  "output": ("IMAGE",), "output_name": ("IMAGE",), "display": "VAE Decode"},
    # comfy_extras/nodes_video.py (V3 schema: io.Video = VIDEO, io.Audio = AUDIO; the upload combo says video_upload)
    "LoadVideo": {"input": {"required": {"file": ([VIDEO_FILE], {"video_upload": True})}},
                  "output": ("VIDEO",), "output_name": ("VIDEO",), "display": "Load Video"},
    "GetVideoComponents": {"input": {"required": {"video": ("VIDEO",)}}, "output": ("IMAGE", "AUDIO", "FLOAT"),
                           "output_name": ("images", "audio", "fps"), "display": "Get Video Components"},
    # comfy_extras/nodes_custom_sampler.py (V3 schema: the node id is the display name)
    "DisableNoise": {"input": {"required": {}}, "output": ("NOISE",), "output_name": ("NOISE",),
                     "display": "DisableNoise"},
    "SamplerCustomAdvanced": {"input": {"required": {"noise": ("NOISE",), "guider": ("GUIDER",),
                                                     "sampler": ("SAMPLER",), "sigmas": ("SIGMAS",),
                                                     "latent_image": ("LATENT",)}},
                              "output": ("LATENT", "LATENT"), "output_name": ("output", "denoised_output"),
                              "display": "SamplerCustomAdvanced"},
}


# ----------------------------------------------------------------------------------------------- node specs
@dataclass(frozen=True)
class Input:
    name: str
    kind: Any            # a type name, or a list of combo options
    opts: dict
    required: bool

    @property
    def is_widget(self) -> bool:
        if self.opts.get("forceInput"):
            return False
        return isinstance(self.kind, list) or self.kind in WIDGET_TYPES

    @property
    def type_name(self) -> str:
        return "COMBO" if isinstance(self.kind, list) else str(self.kind)

    @property
    def has_control(self) -> bool:
        if self.type_name != "INT":
            return False
        return bool(self.opts.get("control_after_generate", self.name in SEED_NAMES))


@dataclass(frozen=True)
class NodeSpec:
    type: str
    display: str
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]
    output_names: tuple[str, ...]

    @property
    def widgets(self) -> list[Input]:
        return [i for i in self.inputs if i.is_widget]

    @property
    def sockets(self) -> list[Input]:
        return [i for i in self.inputs if not i.is_widget]


def _inputs(input_types: dict) -> tuple[Input, ...]:
    out = []
    for section in ("required", "optional"):
        for name, value in (input_types.get(section) or {}).items():
            kind = value[0]
            opts = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
            out.append(Input(name, list(kind) if isinstance(kind, (list, tuple)) else kind, dict(opts),
                             section == "required"))
    return tuple(out)


def load_pack(root: Path = ROOT):
    """Import the pack as ComfyUI does: the repository's ``__init__.py`` as a package."""
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    if str(root) not in sys.path:   # the engine (``nullface``) is importable from the repository root
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(PACK_MODULE, root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = mod
    spec.loader.exec_module(mod)
    return mod


def _unregistered(pack) -> dict[str, tuple[type, str, str]]:
    """Node classes defined in nodes/*.py that the pack does not export (a registration was forgotten)."""
    found = {}
    for path in sorted((Path(pack.__file__).parent / "nodes").glob("[!_]*.py")):
        try:
            mod = importlib.import_module(f"{pack.__name__}.nodes.{path.stem}")
        except Exception as exc:  # noqa: BLE001 - reported, the live mappings stay authoritative
            print(f"warning: nodes/{path.name} does not import: {exc}", file=sys.stderr)
            continue
        for name, cls in getattr(mod, "NODE_CLASS_MAPPINGS", {}).items():
            if name not in pack.NODE_CLASS_MAPPINGS:
                display = getattr(mod, "NODE_DISPLAY_NAME_MAPPINGS", {}).get(name, name)
                found[name] = (cls, path.stem, display)
    return found


def node_specs(pack=None) -> dict[str, NodeSpec]:
    """Specs of the pack's registered nodes (live) and of the core nodes used here."""
    pack = pack or load_pack()
    specs = {}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        outputs = tuple(cls.RETURN_TYPES)
        specs[name] = NodeSpec(name, pack.NODE_DISPLAY_NAME_MAPPINGS.get(name, name), _inputs(cls.INPUT_TYPES()),
                               outputs, tuple(getattr(cls, "RETURN_NAMES", None) or outputs))
    for name, (cls, module, display) in _unregistered(pack).items():
        print(f"warning: {name} (nodes/{module}.py) is not registered in nodes/__init__.py; ComfyUI will not "
              "know it", file=sys.stderr)
        outputs = tuple(cls.RETURN_TYPES)
        specs[name] = NodeSpec(name, display, _inputs(cls.INPUT_TYPES()),
                               outputs, tuple(getattr(cls, "RETURN_NAMES", None) or outputs))
    for name, core in CORE_NODES.items():
        specs[name] = NodeSpec(name, core["display"], _inputs(core["input"]), tuple(core["output"]),
                               tuple(core["output_name"]))
    return specs


# ----------------------------------------------------------------------------------------- graph description
@dataclass(frozen=True)
class Out:
    node: "Node"
    slot: int


@dataclass(eq=False)
class Node:
    id: int
    spec: NodeSpec
    title: str | None
    values: dict[str, Any]
    links: dict[str, Out]
    color: str | None = None
    col: int | None = None          # layout hint: the column to put the node in
    mode: int = 0                   # 0 = runs; 2 = muted ("never"): in the UI only, left out of the API twin

    def __getitem__(self, name: str) -> Out:
        names = self.spec.output_names
        if name in names:
            return Out(self, names.index(name))
        if name in self.spec.outputs and self.spec.outputs.count(name) == 1:
            return Out(self, self.spec.outputs.index(name))
        raise KeyError(f"{self.spec.type} has no output {name!r} (outputs: {', '.join(names)})")


@dataclass
class Graph:
    name: str
    specs: dict[str, NodeSpec]
    nodes: list[Node] = field(default_factory=list)
    groups: list[tuple[str, list[Node], str]] = field(default_factory=list)

    def add(self, type_: str, title: str | None = None, color: str | None = None, col: int | None = None,
            mode: int = 0, **kwargs) -> Node:
        if type_ not in self.specs:
            raise KeyError(f"{self.name}: node type {type_!r} is not registered (not in the pack's "
                           "NODE_CLASS_MAPPINGS nor in CORE_NODES)")
        spec = self.specs[type_]
        known = {i.name: i for i in spec.inputs}
        values, links = {}, {}
        for key, value in kwargs.items():
            if key not in known:
                raise KeyError(f"{self.name}: {type_} has no input {key!r}")
            if isinstance(value, Out):
                if known[key].is_widget:
                    raise ValueError(f"{self.name}: {type_}.{key} is a widget, not a socket")
                links[key] = value
            else:
                if not known[key].is_widget:
                    raise ValueError(f"{self.name}: {type_}.{key} is a socket: connect an output to it")
                values[key] = value
        for inp in spec.sockets:
            if inp.required and inp.name not in links:
                raise ValueError(f"{self.name}: required input {type_}.{inp.name} is not connected")
        if any(src.node.mode for src in links.values()) and not mode:
            raise ValueError(f"{self.name}: {type_} would run on the output of a muted node")
        node = Node(len(self.nodes) + 1, spec, title, values, links, color, col, mode)
        self.nodes.append(node)
        return node

    def group(self, title: str, nodes: list[Node], color: str = "#3f789e") -> None:
        self.groups.append((title, nodes, color))


def widget_value(node: Node, inp: Input) -> Any:
    if inp.name in node.values:
        return node.values[inp.name]
    if "default" in inp.opts:
        return inp.opts["default"]
    if isinstance(inp.kind, list):
        return inp.kind[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[inp.type_name]


def widgets_values(node: Node) -> list:
    values = []
    for inp in node.spec.widgets:
        values.append(widget_value(node, inp))
        if inp.has_control:
            values.append("fixed")            # keep the seed: reproducible examples
        if inp.opts.get("image_upload") or inp.opts.get("video_upload"):
            values.append("image")            # LoadImage's / LoadVideo's upload button
    return values


# ------------------------------------------------------------------------------------------------- layout
SLOT_H, WIDGET_H, TITLE_H = 20, 24, 30
COL_GAP, ROW_GAP, LEFT, TOP = 60, 50, 50, 80


def _depths(nodes: list[Node]) -> dict[int, int]:
    """Column of each node: sources at 0, every other node just before its first consumer, or its hint."""
    depth: dict[int, int] = {}

    def visit(n: Node) -> int:
        if n.id not in depth:
            depth[n.id] = 1 + max((visit(o.node) for o in n.links.values()), default=-1)
        return depth[n.id]
    for n in nodes:
        visit(n)
    consumers: dict[int, list[Node]] = {}
    for n in nodes:
        for o in n.links.values():
            consumers.setdefault(o.node.id, []).append(n)
    for n in nodes:
        if n.col is not None:
            depth[n.id] = n.col
    for n in sorted(nodes, key=lambda n: -depth[n.id]):      # consumers first
        if n.col is None and n.links and n.id in consumers:
            depth[n.id] = max(depth[n.id], min(depth[c.id] for c in consumers[n.id]) - 1)
    return depth


def node_size(node: Node) -> list[int]:
    spec = node.spec
    if spec.type in ("PreviewImage", "SaveImage", "NullFaceSaveAnonymized"):
        width, extra = 400, 380
    elif spec.type == "LoadImage":
        width, extra = 320, 320
    else:
        width, extra = 330, 0
    slots = max(len(spec.sockets), len(spec.outputs))
    widgets = 0
    for inp in spec.widgets:
        widgets += 4 if inp.opts.get("multiline") else 1
        widgets += 1 if inp.has_control or inp.opts.get("image_upload") or inp.opts.get("video_upload") else 0
    return [width, 10 + slots * SLOT_H + widgets * WIDGET_H + extra]


def layout(graph: Graph) -> dict[int, tuple[list[int], list[int]]]:
    """Left-to-right columns by depth (longest path from a source), nodes stacked in description order."""
    depth = _depths(graph.nodes)
    columns: dict[int, list[Node]] = {}
    for n in graph.nodes:
        columns.setdefault(depth[n.id], []).append(n)
    placed, x = {}, LEFT
    for d in sorted(columns):
        y, width = TOP, 0
        for n in columns[d]:
            size = node_size(n)
            placed[n.id] = ([x, y], size)
            y += size[1] + TITLE_H + ROW_GAP
            width = max(width, size[0])
        x += width + COL_GAP
    return placed


def execution_order(nodes: list[Node]) -> dict[int, int]:
    order, seen = {}, set()

    def visit(n: Node):
        if n.id in seen:
            return
        seen.add(n.id)
        for o in sorted(n.links.values(), key=lambda o: o.node.id):
            visit(o.node)
        order[n.id] = len(order)
    for n in sorted(nodes, key=lambda n: (bool(n.links), n.id)):
        visit(n)
    return order


# ---------------------------------------------------------------------------------------------- serializers
def to_ui(graph: Graph) -> dict:
    placed = layout(graph)
    order = execution_order(graph.nodes)
    links, out_links = [], {}
    for n in graph.nodes:                                   # link ids in node order, then input order
        for inp in n.spec.sockets:
            src = n.links.get(inp.name)
            if src is None:
                continue
            link_id = len(links) + 1
            links.append([link_id, src.node.id, src.slot, n.id, n.spec.sockets.index(inp),
                          src.node.spec.outputs[src.slot]])
            out_links.setdefault((src.node.id, src.slot), []).append(link_id)
    link_of = {(l[3], l[4]): l[0] for l in links}
    nodes = []
    for n in graph.nodes:
        pos, size = placed[n.id]
        inputs = []
        for i, inp in enumerate(n.spec.sockets):
            entry = {"name": inp.name, "type": inp.type_name, "link": link_of.get((n.id, i))}
            if not inp.required:
                entry["shape"] = 7                          # how the frontend marks optional sockets
            inputs.append(entry)
        outputs = [{"name": name, "type": t, "links": out_links.get((n.id, i), []), "slot_index": i}
                   for i, (name, t) in enumerate(zip(n.spec.output_names, n.spec.outputs))]
        entry = {"id": n.id, "type": n.spec.type, "pos": pos, "size": size, "flags": {}, "order": order[n.id],
                 "mode": n.mode, "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": n.spec.type}, "widgets_values": widgets_values(n)}
        if n.title:
            entry["title"] = n.title
        if n.color:
            entry["color"], entry["bgcolor"] = n.color, _darker(n.color)
        nodes.append(entry)
    groups = []
    for gid, (title, members, color) in enumerate(graph.groups, start=1):
        boxes = [placed[m.id] for m in members]
        x0 = min(p[0] for p, _ in boxes) - 20
        y0 = min(p[1] for p, _ in boxes) - TITLE_H - 50
        x1 = max(p[0] + s[0] for p, s in boxes) + 20
        y1 = max(p[1] + s[1] for p, s in boxes) + 20
        groups.append({"id": gid, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": color,
                       "font_size": 24, "flags": {}})
    return {"last_node_id": max(n.id for n in graph.nodes), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": groups, "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4}


def to_api(graph: Graph) -> dict:
    api = {}
    for n in graph.nodes:
        if n.mode:                                          # muted: not part of the prompt
            continue
        inputs = {}
        for inp in n.spec.inputs:
            if inp.name in n.links:
                src = n.links[inp.name]
                inputs[inp.name] = [str(src.node.id), src.slot]
            elif inp.is_widget:
                inputs[inp.name] = widget_value(n, inp)
        api[str(n.id)] = {"class_type": n.spec.type, "inputs": inputs, "_meta": {"title": n.title or n.spec.display}}
    return api


def _darker(color: str) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(min(255, int(c * 1.5)) for c in (r, g, b)))


# ---------------------------------------------------------------------------------------------- the workflows
def _models(g: Graph):
    pipe = g.add("NullFacePipeLoader", checkpoint=CHECKPOINT, faceid=FACEID)
    face_models = g.add("NullFaceFaceModelsLoader", model_pack=INSIGHTFACE_PACK)
    return pipe, face_models


def _identity(g: Graph, face_models: Node, image: Out, lambda_id: float | None = None, title: str | None = None):
    emb = g.add("NullFaceEmbedding", face_models=face_models["face_models"], image=image)
    values = {} if lambda_id is None else {"lambda_id": lambda_id}
    return emb, g.add("NullFaceNegateIdentity", title, embeddings=emb["embeddings"], **values)


PREVIEW_WARNING = "Muted: before | after writes the ORIGINAL to temp/"


def _level(n: Node) -> int:
    """The longest path from a source to ``n`` (its layout column when nothing else places it)."""
    return 1 + max((_level(o.node) for o in n.links.values()), default=-1)


def _save_and_compare(g: Graph, original: Out, result: Out, prefix: str | None = None) -> Graph:
    """Save the result without metadata; a before/after preview, muted, in a group that says what it writes."""
    values = {} if prefix is None else {"filename_prefix": prefix}
    save = g.add("NullFaceSaveAnonymized", "Save anonymized (no metadata)", images=result, **values)
    col = _level(save) + 1                                  # to the right of the save node, apart from it
    both = g.add("ImageBatch", "Before | after", col=col, image1=original, image2=result, mode=2)
    preview = g.add("PreviewImage", "Unmute (Ctrl+M) to compare: writes the ORIGINAL face and the input's file "
                    "name into ComfyUI's temp folder", col=col + 1,
                    mode=2, images=both["IMAGE"])
    g.group(PREVIEW_WARNING, [both, preview], color="#a1309b")
    return g


def full_face(specs) -> Graph:
    g = Graph("nullface_full_face", specs)
    img = g.add("LoadImage", "Load aligned face (512x512)", image=FACE_IMAGE)
    pipe, fm = _models(g)
    emb, ident = _identity(g, fm, img["IMAGE"])
    inv = g.add("NullFaceInversion", pipe=pipe["pipe"], image=img["IMAGE"])
    out = g.add("NullFaceSampler", pipe=pipe["pipe"], inversion=inv["inversion"], identity=ident["identity"])
    return _save_and_compare(g, img["IMAGE"], out["image"])


def keep_eyes_mouth(specs) -> Graph:
    """Detect -> aligned crops -> landmark eyes+mouth mask (keep) -> the method on the crops -> paste back."""
    g = Graph("nullface_keep_eyes_mouth", specs)
    img = g.add("LoadImage", "Load a photo (any size; every face is processed)", image=FACE_IMAGE)
    pipe, fm = _models(g)
    faces = g.add("NullFaceDetectFaces", face_models=fm["face_models"], image=img["IMAGE"])
    crops = g.add("NullFaceCropFaces", "Aligned 512x512 crop of each face", image=img["IMAGE"],
                  faces=faces["faces"])
    regions = g.add("NullFaceFaceRegionMask", "Eyes + mouth from the landmarks", crop_info=crops["crop_info"],
                    **{r: r in ("eyes", "mouth") for r in _regions(g)})
    keep = g.add("NullFaceRegionMask", "White = keep: eyes and mouth stay visible", mask=regions["mask"],
                 mask_means="keep")
    emb, ident = _identity(g, fm, crops["crops"])
    inv = g.add("NullFaceInversion", pipe=pipe["pipe"], image=crops["crops"])
    out = g.add("NullFaceSampler", pipe=pipe["pipe"], inversion=inv["inversion"], identity=ident["identity"],
                mask=keep["anonymize_mask"])
    pasted = g.add("NullFacePasteFaces", "Paste the anonymized faces back", image=img["IMAGE"],
                   crop_info=crops["crop_info"], anonymized_crops=out["image"])
    return _save_and_compare(g, img["IMAGE"], pasted["image"], "anonymized_keep_eyes_mouth")


def _regions(g: Graph) -> list[str]:
    """The region checkboxes of NullFaceFaceRegionMask (every BOOLEAN input)."""
    return [i.name for i in g.specs["NullFaceFaceRegionMask"].inputs if i.type_name == "BOOLEAN"]


def lambda_sweep(specs) -> Graph:
    g = Graph("nullface_lambda_sweep", specs)
    img = g.add("LoadImage", "Load aligned face (512x512)", image=FACE_IMAGE)
    pipe, fm = _models(g)
    emb = g.add("NullFaceEmbedding", face_models=fm["face_models"], image=img["IMAGE"])
    id1 = g.add("NullFaceNegateIdentity", "Negate identity (lambda_id 1.0)", embeddings=emb["embeddings"],
                lambda_id=1.0)
    id2 = g.add("NullFaceNegateIdentity", "Negate identity (lambda_id 2.0)", embeddings=emb["embeddings"],
                lambda_id=2.0)
    inv = g.add("NullFaceInversion", "One inversion, shared by every sampler", pipe=pipe["pipe"],
                image=img["IMAGE"])
    outs = [g.add("NullFaceSampler", f"lambda_cfg {cfg:g}, lambda_id 1.0", pipe=pipe["pipe"],
                  inversion=inv["inversion"], identity=id1["identity"], lambda_cfg=float(cfg))
            for cfg in (5, 10, 15)]
    outs.append(g.add("NullFaceSampler", "lambda_cfg 10, lambda_id 2.0", pipe=pipe["pipe"],
                      inversion=inv["inversion"], identity=id2["identity"], lambda_cfg=10.0))
    batch = outs[0]["image"]
    for i, o in enumerate(outs[1:]):
        batch = g.add("ImageBatch", f"Batch {i + 2} results", col=4, image1=batch, image2=o["image"])["IMAGE"]
    g.add("NullFaceSaveAnonymized", "cfg 5 | cfg 10 | cfg 15 | cfg 10 + lambda_id 2 (saved, no metadata)", col=5,
          images=batch, filename_prefix="lambda_sweep")
    return g


def attribute_prompt(specs) -> Graph:
    g = Graph("nullface_attribute_prompt", specs)
    img = g.add("LoadImage", "Load aligned face (512x512)", image=FACE_IMAGE)
    pipe, fm = _models(g)
    emb, ident = _identity(g, fm, img["IMAGE"])
    inv = g.add("NullFaceInversion", pipe=pipe["pipe"], image=img["IMAGE"])
    out = g.add("NullFaceSampler", "Sampler with an attribute prompt", pipe=pipe["pipe"], inversion=inv["inversion"],
                identity=ident["identity"], prompt="an elderly man")
    return _save_and_compare(g, img["IMAGE"], out["image"], "anonymized_elderly")


def group_photo(specs) -> Graph | None:
    if "NullFaceAnonymizePhoto" not in specs:
        return None
    g = Graph("nullface_group_photo", specs)
    img = g.add("LoadImage", "Load a group photo", image=GROUP_IMAGE)
    pipe, fm = _models(g)
    out = g.add("NullFaceAnonymizePhoto", "Anonymize every face, keep each person's eyes and mouth",
                pipe=pipe["pipe"], face_models=fm["face_models"], image=img["IMAGE"], keep="eyes,mouth",
                on_failure="error", on_no_face="error")
    return _save_and_compare(g, img["IMAGE"], out["image"], "anonymized_group")


def revpers_attribute(specs) -> Graph | None:
    """Reverse Personalization step by step: embed, invert (null identity), negative guidance with an attribute."""
    if "RevPersLoader" not in specs:
        return None
    g = Graph("revpers_attribute_prompt", specs)
    img = g.add("LoadImage", "Load aligned face (1024x1024)", image=FACE_IMAGE)
    pipe = g.add("RevPersLoader", checkpoint=SDXL_CHECKPOINT, faceid=FACEID_SDXL)
    fm = g.add("NullFaceFaceModelsLoader", model_pack=INSIGHTFACE_PACK)
    emb = g.add("NullFaceEmbedding", face_models=fm["face_models"], image=img["IMAGE"])
    inv = g.add("RevPersInversion", pipe=pipe["pipe"], image=img["IMAGE"])
    plain = g.add("RevPersSampler", "Negative identity guidance", pipe=pipe["pipe"], inversion=inv["inversion"],
                  embeddings=emb["embeddings"])
    older = g.add("RevPersSampler", "... with an attribute prompt", pipe=pipe["pipe"], inversion=inv["inversion"],
                  embeddings=emb["embeddings"], prompt="an elderly man")
    g.add("NullFaceSaveAnonymized", "Save elderly variant (no metadata)", images=older["image"],
          filename_prefix="anonymized_revpers_elderly")
    return _save_and_compare(g, img["IMAGE"], plain["image"], "anonymized_revpers")


def inpaint_attribute_guidance(specs) -> Graph | None:
    """papers/000: detect -> crops -> landmark face mask -> SD inpainting guided towards a target face -> paste."""
    if "NullFaceInpaintAnonymize" not in specs:
        return None
    g = Graph("nullface_inpaint_attribute_guidance", specs)
    img = g.add("LoadImage", "Load a photo (any size; every face is processed)", image=FACE_IMAGE)
    target = g.add("LoadImage", "Target face (synthesized, e.g. generated upstream)", image=TARGET_IMAGE)
    pipe = g.add("NullFaceInpaintLoader", checkpoint=INPAINT_CHECKPOINT, feature_extractor=FARL)
    fm = g.add("NullFaceFaceModelsLoader", model_pack=INSIGHTFACE_PACK)
    faces = g.add("NullFaceDetectFaces", face_models=fm["face_models"], image=img["IMAGE"])
    crops = g.add("NullFaceCropFaces", "Aligned 512x512 crop of each face", image=img["IMAGE"],
                  faces=faces["faces"])
    region = g.add("NullFaceFaceRegionMask", "Region to repaint: the face (landmarks)", crop_info=crops["crop_info"],
                   **{r: r == "face" for r in _regions(g)})
    out = g.add("NullFaceInpaintAnonymize", "Inpaint with attribute guidance towards the target",
                inpaint_pipe=pipe["inpaint_pipe"], image=crops["crops"], mask=region["mask"], target=target["IMAGE"])
    pasted = g.add("NullFacePasteFaces", "Paste the repainted faces back", image=img["IMAGE"],
                   crop_info=crops["crop_info"], anonymized_crops=out["image"])
    return _save_and_compare(g, img["IMAGE"], pasted["image"], "anonymized_inpaint")


def native_full_face(specs) -> Graph | None:
    """The method on ComfyUI's own models: core checkpoint -> FaceID patch -> inversion (SAMPLER, SIGMAS,
    LATENT) -> SamplerCustomAdvanced with the NullFace guider -> core VAE Decode."""
    if "NullFaceGuider" not in specs:
        return None
    g = Graph("nullface_native_sampler", specs)
    img = g.add("LoadImage", "Load aligned face (512x512)", image=FACE_IMAGE)
    ckpt = g.add("CheckpointLoaderSimple", "Load Checkpoint (SD1.5; add LoRAs / model patches here)",
                 ckpt_name=CHECKPOINT)
    fm = g.add("NullFaceFaceModelsLoader", model_pack=INSIGHTFACE_PACK)
    emb, ident = _identity(g, fm, img["IMAGE"])
    model = g.add("NullFaceApplyFaceID", model=ckpt["MODEL"], faceid=FACEID, identity=ident["identity"])
    empty = g.add("CLIPTextEncode", "Empty prompt (both paths, as the paper)", text="", clip=ckpt["CLIP"])
    latent = g.add("VAEEncode", pixels=img["IMAGE"], vae=ckpt["VAE"])
    inv = g.add("NullFaceNativeInversion", model=model["model"], negative=empty["CONDITIONING"],
                latent=latent["LATENT"])
    guider = g.add("NullFaceGuider", model=model["model"], positive=empty["CONDITIONING"],
                   negative=empty["CONDITIONING"])
    noise = g.add("DisableNoise", "No extra noise: the inversion's noise maps are replayed")
    sampled = g.add("SamplerCustomAdvanced", noise=noise["NOISE"], guider=guider["guider"], sampler=inv["sampler"],
                    sigmas=inv["sigmas"], latent_image=inv["latent"])
    out = g.add("VAEDecode", samples=sampled["output"], vae=ckpt["VAE"])
    return _save_and_compare(g, img["IMAGE"], out["IMAGE"], "anonymized_native")


def video(specs) -> Graph | None:
    """Core Load Video -> Get Video Components -> NullFace Anonymize Video -> Save Anonymized Video (+ audio)."""
    if "NullFaceAnonymizeVideo" not in specs:
        return None
    g = Graph("nullface_video", specs)
    clip = g.add("LoadVideo", "Load a video", file=VIDEO_FILE)
    parts = g.add("GetVideoComponents", video=clip["VIDEO"])
    pipe, fm = _models(g)
    out = g.add("NullFaceAnonymizeVideo", "Anonymize every face of every frame (tracked: one new face per person)",
                pipe=pipe["pipe"], face_models=fm["face_models"], frames=parts["images"], keep="eyes,mouth",
                on_failure="error", on_no_face="error")
    g.add("NullFaceSaveAnonymizedVideo", "Save anonymized video (no metadata, audio kept)", frames=out["frames"],
          fps=parts["fps"], audio=parts["audio"], filename_prefix="anonymized_video")
    return g


WORKFLOWS = (full_face, keep_eyes_mouth, lambda_sweep, attribute_prompt, group_photo, native_full_face,
             revpers_attribute, inpaint_attribute_guidance, video)


def build(specs: dict[str, NodeSpec] | None = None) -> dict[str, tuple[dict, dict]]:
    """{name: (ui, api)} for every workflow the installed nodes allow."""
    specs = specs or node_specs()
    out = {}
    for make in WORKFLOWS:
        graph = make(specs)
        if graph is not None:
            out[graph.name] = (to_ui(graph), to_api(graph))
    return out


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------------------------- thumbnails
THUMB_SIZE = (512, 384)
THUMB_COLORS = {"loaders": (70, 96, 140), "method": (84, 130, 92), "photo": (140, 104, 60),
                "core": (96, 96, 104), "other": (120, 84, 140)}


def _family(node_type: str) -> str:
    if node_type in CORE_NODES:
        return "core"
    cls = load_pack().NODE_CLASS_MAPPINGS.get(node_type)
    category = getattr(cls, "CATEGORY", "") or ""
    for family in ("loaders", "method", "photo"):
        if category.endswith("/" + family):
            return family
    return "other"


def thumbnail(ui: dict, name: str = ""):
    """The template's picture for the frontend's Templates dialog: the graph itself (boxes, links, titles),
    drawn from the workflow. No photo and no face: nothing identifying is shipped."""
    from PIL import Image, ImageDraw, ImageFont
    w, h = THUMB_SIZE
    nodes = ui["nodes"]
    x0 = min(n["pos"][0] for n in nodes) - 40
    y0 = min(n["pos"][1] for n in nodes) - 60
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes) + 40
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes) + 40
    scale = min(w / (x1 - x0), h / (y1 - y0))
    ox, oy = (w - (x1 - x0) * scale) / 2, (h - (y1 - y0) * scale) / 2

    def at(x, y):
        return ox + (x - x0) * scale, oy + (y - y0) * scale

    img = Image.new("RGB", THUMB_SIZE, (32, 33, 36))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default_imagefont() if hasattr(ImageFont, "load_default_imagefont") else \
        ImageFont.load_default()
    for gx in range(0, w, 16):
        draw.line([(gx, 0), (gx, h)], fill=(38, 39, 43))
    for gy in range(0, h, 16):
        draw.line([(0, gy), (w, gy)], fill=(38, 39, 43))
    by_id = {n["id"]: n for n in nodes}
    for link in ui["links"]:
        src, dst = by_id[link[1]], by_id[link[3]]
        a = at(src["pos"][0] + src["size"][0], src["pos"][1] + 30 + 20 * link[2])
        b = at(dst["pos"][0], dst["pos"][1] + 30 + 20 * link[4])
        mid = (a[0] + b[0]) / 2
        draw.line([a, (mid, a[1]), (mid, b[1]), b], fill=(150, 170, 200), width=2)
    for n in nodes:
        left, top = at(*n["pos"])
        right, bottom = at(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        head = at(0, n["pos"][1] + 40)[1]
        color = THUMB_COLORS[_family(n["type"])]
        draw.rounded_rectangle([left, top - 14, right, bottom], radius=5, fill=(53, 53, 58), outline=color, width=2)
        draw.rectangle([left + 2, top - 12, right - 2, min(head, bottom) - 10], fill=color)
        title = n.get("title") or n["type"]
        for prefix in ("NullFace ", "NullFace"):
            title = title[len(prefix):] if title.startswith(prefix) else title
        max_chars = max(3, int((right - left - 8) / 6))
        draw.text((left + 4, top - 11), title[:max_chars], fill=(240, 240, 240), font=font)
    caption = name.removeprefix("nullface_").replace("_", " ")
    draw.text((8, h - 16), f"NullFace: {caption}" if caption else "NullFace", fill=(170, 170, 176), font=font)
    return img


def thumbnail_bytes(ui: dict, name: str = "") -> bytes:
    import io
    buf = io.BytesIO()
    thumbnail(ui, name).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def thumbnail_matches(path: Path, ui: dict) -> bool:
    """The JPEG on disk shows this workflow (same size; pixels equal up to JPEG codec differences)."""
    import numpy as np
    from PIL import Image
    if not path.is_file():
        return False
    with Image.open(path) as im:
        have = np.asarray(im.convert("RGB"), np.float32)
    want = np.asarray(thumbnail(ui, path.stem), np.float32)
    return have.shape == want.shape and float(np.abs(have - want).mean()) < 3.0


def write(out_dir: Path, built: dict[str, tuple[dict, dict]]) -> list[Path]:
    """``<name>.json`` (UI), ``api/<name>.json`` and the template thumbnail ``<name>.jpg`` (the file the
    frontend's Templates dialog requests for a custom node's workflow)."""
    (out_dir / "api").mkdir(parents=True, exist_ok=True)
    written = []
    for name, (ui, api) in built.items():
        for path, data in ((out_dir / f"{name}.json", ui), (out_dir / "api" / f"{name}.json", api)):
            path.write_text(dumps(data), encoding="utf-8")
            written.append(path)
        thumb = out_dir / f"{name}.jpg"
        thumb.write_bytes(thumbnail_bytes(ui, name))
        written.append(thumb)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "workflows", help="output folder (default: workflows/)")
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    built = build()
    if args.check:
        stale = [str(p) for name, (ui, api) in built.items()
                 for p, data in ((args.out / f"{name}.json", ui), (args.out / "api" / f"{name}.json", api))
                 if not p.is_file() or p.read_text(encoding="utf-8") != dumps(data)]
        stale += [str(args.out / f"{name}.jpg") for name, (ui, _) in built.items()
                  if not thumbnail_matches(args.out / f"{name}.jpg", ui)]
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    for path in write(args.out, built):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
