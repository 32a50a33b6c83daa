"""Runtimes a deployed model can run on, each behind the same two calls: `vision` and `lm_step`.

- `torch`: the model directory itself (SmoothQuant int8 LM through `Int8Linear`, model/int8.py).
- `onnxruntime`: the exported graphs (deploy/export.py), the LM's MatMul weights quantized to
  int8 per output channel by ONNX Runtime's own `quantize_dynamic` (int8 activations scaled
  per call, MatMulInteger kernels). The vision graph stays fp32: the encoder is the more
  sensitive part, and a frame runs it once.
- `openvino`: the same graphs read by OpenVINO, the LM's weights compressed to int8 by NNCF
  (`nncf.compress_weights`, symmetric per channel); OpenVINO's CPU plugin picks its own kernels
  for this CPU. `CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE` is passed for pruned models, but the
  plugin packs sparse weights only for int8 x int8 matrix products on CPUs with AMX, so on
  weight-only int8 it changes nothing (docs/deploy.md).

Libraries, not hand-written kernels: both runtimes are maintained, ship cp311 manylinux wheels
and pick kernels from the CPU's features at run time. A backend whose package is missing is
unavailable; `available()` says why in one line.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from owled_ros.deploy.config import BACKENDS, CHOICES, LM_ONNX, VISION_ONNX
from owled_ros.errors import OwledError

_PACKAGES = {"torch": ("torch",), "onnxruntime": ("onnx", "onnxruntime"), "openvino": ("openvino", "nncf")}


def unavailable(backend: str) -> str | None:
    """None when the backend can run here, else one line saying why not."""
    if backend not in BACKENDS:
        raise OwledError(f"unknown backend {backend!r} (choose from {', '.join(CHOICES)})")
    missing = [p for p in _PACKAGES[backend] if importlib.util.find_spec(p) is None]
    return f"backend {backend}: package {', '.join(missing)} not installed (see requirements.txt)" if missing else None


class Graphs(Protocol):
    """The two calls a runtime answers; numpy in, numpy out."""

    def vision(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(visual tokens in LM space, the encoder's grid-averaged feature or None for a graph exported without it)."""

    def lm_step(
        self, embeds: np.ndarray, positions: np.ndarray, keys: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def build(backend: str, onnx_dir: Path, out_dir: Path, sparsity: float) -> dict:
    """Write the backend's files from the fp32 graphs in `onnx_dir` into `out_dir`; returns what was done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if backend == "onnxruntime":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = onnx_dir / f"int8-{LM_ONNX}"
        quantize_dynamic(onnx_dir / LM_ONNX, quantized, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        _save_weights_apart(onnx_dir / VISION_ONNX, out_dir / VISION_ONNX)
        _save_weights_apart(quantized, out_dir / LM_ONNX)
        return {"lm": "int8 MatMul weights per channel (onnxruntime quantize_dynamic)", "vision": "fp32", "weights": "external data files"}
    if backend == "openvino":
        import nncf
        import openvino as ov

        core = ov.Core()
        ov.save_model(core.read_model(onnx_dir / VISION_ONNX), out_dir / "vision.xml")
        lm = nncf.compress_weights(core.read_model(onnx_dir / LM_ONNX), mode=nncf.CompressWeightsMode.INT8_SYM)
        ov.save_model(lm, out_dir / "lm.xml")
        return {"lm": "int8 weights per channel (nncf.compress_weights INT8_SYM)", "vision": "fp32", "sparse_rate": round(sparsity, 3)}
    raise OwledError(f"backend {backend!r} has no exported files to build")


def _save_weights_apart(graph: Path, out: Path) -> None:
    """The graph with its weights in `<name>.data` beside it: from an inline graph ONNX Runtime
    keeps the parsed copy of every weight as well as its own while it loads (measured: 163
    against 122 MB resident for an 85 MB int8 LM), and that peak is the node's."""
    import onnx

    onnx.save_model(onnx.load(str(graph)), str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{out.name}.data", size_threshold=1024)


@dataclass
class OrtGraphs:
    vision_session: object
    lm_session: object

    @classmethod
    def load(cls, folder: Path, threads: int) -> OrtGraphs:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        make = lambda name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])  # noqa: E731
        return cls(make(VISION_ONNX), make(LM_ONNX))

    def vision(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.vision_session.run(None, {"pixels": pixels})
        return out[0], out[1] if len(out) > 1 else None

    def lm_step(self, embeds, positions, keys, values):
        feed = {"inputs_embeds": embeds, "position_ids": positions, "past_keys": keys, "past_values": values}
        return tuple(self.lm_session.run(None, feed))


@dataclass
class OpenVinoGraphs:
    vision_model: object
    lm_model: object

    @classmethod
    def load(cls, folder: Path, threads: int, sparse_rate: float) -> OpenVinoGraphs:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        lm_config = {**config, "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": sparse_rate} if sparse_rate > 0 else config
        return cls(core.compile_model(folder / "vision.xml", "CPU", config), core.compile_model(folder / "lm.xml", "CPU", lm_config))

    def vision(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.vision_model([pixels])
        return out[0], out[1] if len(out) > 1 else None

    def lm_step(self, embeds, positions, keys, values):
        out = self.lm_model([embeds, positions, keys, values])
        return out[0], out[1], out[2]


def load_graphs(backend: str, folder: Path, threads: int, info: dict) -> Graphs:
    reason = unavailable(backend)
    if reason is not None:
        raise OwledError(f"{folder}: deployed for {backend}, which cannot load here ({reason})")
    if not folder.is_dir():
        raise OwledError(f"{folder}: missing: the directory names backend {backend} but holds no files for it (deploy again)")
    if backend == "onnxruntime":
        return OrtGraphs.load(folder, threads)
    if backend == "openvino":
        return OpenVinoGraphs.load(folder, threads, float(info.get("sparse_rate", 0.0)))
    raise OwledError(f"backend {backend!r} runs the model directory itself, not exported graphs")
