"""Device and dtype choice: CUDA fp16, Apple MPS and CPU fp32, picked automatically or by name."""
from __future__ import annotations

import logging

import torch

from ..errors import InputError

log = logging.getLogger("nullface")


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; a named device must exist."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {name!r}: use auto, cuda, cuda:N, mps or cpu") from None
    if device.type not in ("cuda", "mps", "cpu"):
        raise InputError(f"device {name!r} is not supported: use auto, cuda, cuda:N, mps or cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was requested but this torch build sees no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} was requested but only {torch.cuda.device_count()} CUDA GPU(s) exist "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was requested but Apple MPS is not available")
    return device


def pick_dtype(device: torch.device, name: str | torch.dtype | None = "auto") -> torch.dtype:
    """``auto``: float16 on CUDA (as the reference), float32 on MPS and CPU."""
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}
    if name not in table:
        raise InputError(f"unknown dtype '{name}', expected one of auto, fp16, bf16, fp32")
    return table[name]


def give_back_host_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``; Linux only, else nothing).

    Freed weights are not returned by the allocator on their own: tensors read from a checkpoint and
    converted are many heap blocks, which glibc keeps for reuse after they are freed, so the process
    still holds gigabytes after an unload. True when the heap was trimmed."""
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):       # musl and other C libraries: nothing to call
        return False


def pick_inversion_batch(device: torch.device, requested: int = 0) -> int:
    """UNet evaluations per inversion call: ``requested``, or for 0 (auto) 1 on the CPU, where a batch
    gains little and a call of 8 would leave progress and Cancel waiting for a minute, and 8 elsewhere."""
    if requested:
        return int(requested)
    return 1 if torch.device(device).type == "cpu" else 8
