"""Where a torch model runs: `auto` is the GPU where torch sees one, else the CPU.

On CUDA the model runs in fp16 (half the memory traffic of fp32, and the GPU's fast path), on the
CPU in fp32. The int8 runtimes that `owled deploy` builds (torch int8, ONNX Runtime, OpenVINO)
are CPU kernels; on a GPU the directory's weights run de-quantized in fp16 instead.
"""
from __future__ import annotations

import torch
from torch import nn

from owled_ros.errors import OwledError

def resolve_device(spec: str) -> torch.device:
    """The torch device of `spec`, or one line saying why it cannot run here."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise OwledError(f"device {spec!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise OwledError(f"device {spec}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OwledError(f"device {spec}: torch sees no CUDA device here (this torch is {torch.__version__}); use cpu or auto")
    return device


def run_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` moved to `device` in the dtype it runs in there."""
    return model.to(device=device, dtype=run_dtype(device))
