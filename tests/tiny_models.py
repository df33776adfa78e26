"""Tiny random-weight models with the real architectures and file layouts, built at test time.

- an SD1.5-architecture diffusers folder (UNet2DConditionModel, AutoencoderKL, CLIP text model,
  the shipped CLIP tokenizer, SD1.5's scheduler config);
- an IP-Adapter FaceID state dict with the real key layout (image_proj.proj.{0,2}, image_proj.norm,
  ip_adapter.{i}.to_{k,v}_ip and the LoRA ip_adapter.{i}.to_{q,k,v,out}_lora.{down,up}), as .bin and .safetensors;
- an ONNX model with w600k_r50's signature (input.1: [N,3,112,112] -> [N,512]) in an insightface-style
  models/buffalo_l folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

CROSS = 32          # cross-attention width (768 in SD1.5)
TOKENS = 4          # FaceID identity tokens
LORA_RANK = 4       # 128 in the real file
CONFIGS = Path(__file__).resolve().parents[1] / "nullface" / "models" / "configs" / "sd15"


def tiny_unet(in_channels: int = 4, seed: int = 0):
    """The SD1.5 UNet's architecture, tiny; ``in_channels`` 9 is the inpainting variant."""
    from diffusers import UNet2DConditionModel
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS, attention_head_dim=8, norm_num_groups=8)


def tiny_vae():
    from diffusers import AutoencoderKL
    torch.manual_seed(1)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=64)


def tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(2)
    cfg = CLIPTextConfig(hidden_size=CROSS, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407)
    return CLIPTextModel(cfg).eval()


def save_sd15_folder(folder: Path) -> Path:
    """A diffusers-format SD1.5-architecture model folder with random weights."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(CONFIGS / "tokenizer"))
    sched = DDIMScheduler.from_pretrained(str(CONFIGS / "scheduler"))
    pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tok, unet=tiny_unet(),
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def faceid_state_dict(unet, seed: int = 3, cross: int = CROSS) -> dict:
    """IP-Adapter FaceID weights with the real nested layout {'image_proj': ..., 'ip_adapter': ...}.

    ``cross`` is the token width (768 for SD1.5, 2048 for SDXL; the tiny models' cross-attention width).
    """
    CROSS = cross  # noqa: N806
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    proj = {"proj.0.weight": rnd(1024, 512), "proj.0.bias": rnd(1024),
            "proj.2.weight": rnd(TOKENS * CROSS, 1024), "proj.2.bias": rnd(TOKENS * CROSS),
            "norm.weight": 1 + rnd(CROSS), "norm.bias": rnd(CROSS)}
    ip = {}
    modules = dict(unet.named_modules())
    for i, name in enumerate(unet.attn_processors.keys()):
        attn = modules[name[: -len(".processor")]]
        hidden = attn.to_q.in_features
        ctx = attn.to_k.in_features
        for p, (fin, fout) in {"to_q": (hidden, hidden), "to_k": (ctx, hidden), "to_v": (ctx, hidden),
                               "to_out": (hidden, hidden)}.items():
            ip[f"{i}.{p}_lora.down.weight"] = rnd(LORA_RANK, fin)
            ip[f"{i}.{p}_lora.up.weight"] = rnd(fout, LORA_RANK)
        if name.endswith("attn2.processor"):
            ip[f"{i}.to_k_ip.weight"] = rnd(hidden, CROSS, scale=0.2)
            ip[f"{i}.to_v_ip.weight"] = rnd(hidden, CROSS, scale=0.2)
    return {"image_proj": proj, "ip_adapter": ip}


def save_faceid(folder: Path, unet) -> tuple[Path, Path]:
    """The FaceID adapter as the real .bin (nested torch pickle) and as flat-key .safetensors."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    sd = faceid_state_dict(unet)
    bin_path = folder / "ip-adapter-faceid_sd15.bin"
    torch.save(sd, bin_path)
    flat = {f"{head}.{k}": v.contiguous() for head, part in sd.items() for k, v in part.items()}
    st_path = folder / "ip-adapter-faceid_sd15.safetensors"
    save_file(flat, str(st_path))
    return bin_path, st_path


def save_arcface_onnx(path: Path, seed: int = 4) -> Path:
    """An ONNX model with ArcFace's signature: 'input.1' [N,3,112,112] -> [N,512] (pool, flatten, matmul)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((3 * 14 * 14, 512)).astype(np.float32), "fc_w")
    nodes = [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "fc_w"], ["683"])]
    graph = helper.make_graph(nodes, "tiny_arcface",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
                              initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_all(root: Path) -> dict:
    """Every tiny model in its real folder layout under ``root``; returns the paths."""
    from diffusers import UNet2DConditionModel
    sd = save_sd15_folder(root / "diffusers" / "tiny-sd15")
    unet = UNet2DConditionModel.from_pretrained(str(sd / "unet"))
    faceid_bin, faceid_st = save_faceid(root / "ipadapter", unet)
    arcface = save_arcface_onnx(root / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx")
    return {"sd15": sd, "faceid_bin": faceid_bin, "faceid_safetensors": faceid_st, "arcface": arcface,
            "insightface_root": root / "insightface", "root": root}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
