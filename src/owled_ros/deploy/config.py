"""Deploy settings, apart from the builder so `owled --help` reads the defaults without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("torch", "onnxruntime", "openvino")
CHOICES = (*BACKENDS, "auto")
VISION_ONNX, LM_ONNX = "vision.onnx", "lm.onnx"  # the exported graphs (deploy/export.py)


@dataclass(frozen=True)
class DeployConfig:
    alpha: float = 0.8  # SmoothQuant's migration strength, chosen on val (BENCHMARKS 5.0.2; the paper's 0.5 lost 2.8 points there)
    calib: str = "scenes"
    calib_samples: int = 32
    down_alpha: float | None = None  # down_proj's own alpha (None: alpha)
    backend: str = "torch"  # torch, onnxruntime, openvino, or auto: the fastest that passes the gate here
    gate_frames: int = 8  # calibration frames every backend answers before it is accepted (and timed)
    max_new_tokens: int = 64  # the node's token budget, for the gate's answers and timings
    keep_all: bool = False  # keep the files of every accepted backend, not only the chosen one's (to compare them)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.down_alpha is not None and not 0.0 <= self.down_alpha <= 1.0:
            raise ValueError(f"--down-alpha must be in [0, 1], got {self.down_alpha}")
        if self.gate_frames < 1:
            raise ValueError(f"--gate-frames must be at least 1, got {self.gate_frames}")
        if self.calib_samples < 1:
            raise ValueError(f"empty calibration set: --calib-samples must be at least 1, got {self.calib_samples}")
