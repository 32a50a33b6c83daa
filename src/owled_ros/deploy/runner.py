"""A deployed model run by an exported runtime: the same `generate` as DrivingVLM, no torch LM.

What stays in Python: the tokenizer, the prompt assembly (model.vlm.assemble_lm_inputs, the
very function DrivingVLM uses), the image resize, the token embedding table (int8 rows, one
scale each, de-quantized per looked-up token: a quarter of its fp32 memory) and the greedy
loop. The encoder + projector and the LM steps run in the backend (deploy/backends.py).
Batch 1, as the node runs; a batch is answered frame by frame.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerFast

from owled_ros.deploy.backends import Graphs, load_graphs
from owled_ros.errors import OwledError
from owled_ros.model.encoders import EncoderConfig, VisionEncoder
from owled_ros.model.int8 import pack, unpack
from owled_ros.model.ood import OodStats
from owled_ros.model.vlm import DrivingVLM, Generation, assemble_lm_inputs, to_generation
from owled_ros.schema import VehicleState

RUNTIME_DIR = "runtime"
BACKEND_FILE = "backend.json"
EMBED_FILE = "embed.int8.safetensors"


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows (model/int8.py's format), de-quantized on lookup."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.q, self.scale = q, scale

    @classmethod
    def of(cls, weight: torch.Tensor) -> Int8Embedding:
        return cls(*pack(weight.detach().float()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return unpack(self.q[ids], self.scale[ids])


class RuntimeVLM:
    """Duck-types DrivingVLM where the pipeline and evaluation use it: `generate`, `tokenizer`,
    `meta`, `ood`, `register_encoded_hook`."""

    def __init__(
        self, graphs: Graphs, tokenizer, embed: nn.Module, encoder_config: EncoderConfig, geometry: tuple[int, int, int], meta: dict,
        ood: OodStats | None = None,
    ) -> None:
        self.graphs, self.tokenizer, self.embed, self.meta, self.ood = graphs, tokenizer, embed, meta, ood
        self.preprocessor = VisionEncoder(encoder_config)  # resize + normalize only: no weights
        self.geometry = geometry  # (layers, kv heads, head dim) of the KV cache
        self._encoded_hooks: list[Callable[[torch.Tensor | None], None]] = []
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def register_encoded_hook(self, hook: Callable[[torch.Tensor | None], None]) -> None:
        """As DrivingVLM's: hook(the encoder's feature as (1, 1, C) tokens, or None for a vision
        graph exported without it) after each vision call."""
        self._encoded_hooks.append(hook)

    @property
    def prompt_cues(self) -> bool:
        return bool(self.meta.get("prompt_cues", False))

    def _prompt(self, image: np.ndarray, state: VehicleState | None, question: str, answer: str | None = None):
        pixels = self.preprocessor.preprocess([image]).numpy()
        visual, feature = self.graphs.vision(pixels)
        for hook in self._encoded_hooks:
            hook(None if feature is None else torch.from_numpy(feature)[:, None, :])
        visual = torch.from_numpy(visual)
        answers = None if answer is None else [answer]
        embeds, _mask, spans = assemble_lm_inputs(self.tokenizer, self.embed, visual, [state], [question], answers, False, self.prompt_cues)
        return embeds.numpy(), spans[0]

    def _empty_cache(self) -> tuple[np.ndarray, np.ndarray]:
        layers, heads, dim = self.geometry
        empty = np.zeros((layers, 1, heads, 0, dim), np.float32)
        return empty, empty

    def generate_one(self, image: np.ndarray, state: VehicleState | None, question: str, max_new_tokens: int = 48) -> Generation:
        embeds, _ = self._prompt(image, state, question)
        keys, values = self._empty_cache()
        positions = np.arange(embeds.shape[1], dtype=np.int64)[None]
        ids, probs = [], []
        for _ in range(max_new_tokens):
            logits, keys, values = self.graphs.lm_step(embeds, positions, keys, values)
            p = _softmax(logits[0])
            token = int(p.argmax())
            ids.append(token)
            probs.append(float(p[token]))
            if token == self.tokenizer.eos_token_id:
                break
            embeds = self.embed(torch.tensor([token])).numpy()[None]
            positions = positions[:, -1:] + 1
        return to_generation(self.tokenizer, ids, probs)

    def generate(self, images, states, questions, max_new_tokens: int = 48) -> list[Generation]:
        return [self.generate_one(i, s, q, max_new_tokens) for i, s, q in zip(images, states, questions)]

    def answer_log_probs(self, image: np.ndarray, state: VehicleState | None, question: str, answer: str) -> np.ndarray:
        """Log-probabilities of the next token at each answer position, teacher-forced: (answer tokens, vocab)."""
        embeds, (start, ans) = self._prompt(image, state, question, answer)
        keys, values = self._empty_cache()
        rows = []
        for end in range(start, start + len(ans)):  # the prompt, then one answer token a step
            begin = 0 if end == start else end - 1
            logits, keys, values = self.graphs.lm_step(
                embeds[:, begin:end], np.arange(begin, end, dtype=np.int64)[None], keys, values
            )
            rows.append(_log_softmax(logits[0]))
        return np.stack(rows)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64) - x.max()
    return x - np.log(np.exp(x).sum())


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(x))


def read_backend(model_dir: Path) -> dict | None:
    """The model directory's backend record (written by `owled deploy`), or None for a plain torch directory."""
    file = Path(model_dir) / RUNTIME_DIR / BACKEND_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise OwledError(f"{file}: invalid JSON ({err.msg} at line {err.lineno})") from None


def kv_geometry_of(model_dir: Path) -> tuple[int, int, int]:
    """(layers, cache heads, head dim) of a model directory's LM, from its config and weights'
    shapes: as export.kv_geometry, the most KV heads any layer keeps."""
    from safetensors import safe_open

    from owled_ros.model.int8 import INT8_WEIGHTS

    config = json.loads((model_dir / "lm" / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    layers = config["num_hidden_layers"]
    with safe_open(str(model_dir / "lm" / INT8_WEIGHTS), "pt") as f:
        rows = max(f.get_slice(f"model.layers.{i}.self_attn.k_proj.weight.int8").get_shape()[0] for i in range(layers))
    return layers, rows // head_dim, head_dim


def open_runtime(model_dir: Path, backend: str, build_info: dict, threads: int) -> RuntimeVLM:
    """The RuntimeVLM of a model directory's `runtime/<backend>` files."""
    from safetensors.torch import load_file

    from owled_ros.model.checkpoint import load_ood, read_model_config

    graphs = load_graphs(backend, model_dir / RUNTIME_DIR / backend, threads, build_info)
    config = read_model_config(model_dir)
    table = load_file(str(model_dir / RUNTIME_DIR / EMBED_FILE))
    # the fast tokenizer class itself, the one AutoTokenizer returns for every LM we save: the
    # lookup through AutoTokenizer imports PIL and accelerate, about 90 MB more resident memory
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir / config["lm"], local_files_only=True)
    meta = {**config.get("meta", {}), "backend": backend, "precision": "int8"}
    embed = Int8Embedding(table["q"], table["scale"])
    return RuntimeVLM(graphs, tokenizer, embed, EncoderConfig.from_dict(config["encoder"]), kv_geometry_of(model_dir), meta, load_ood(model_dir))


def load_runtime(model_dir: Path, threads: int | None = None, backend: str | None = None) -> RuntimeVLM:
    """A RuntimeVLM for a directory deployed for onnxruntime or openvino (`backend`: another one
    it kept with `owled deploy --keep-all`)."""
    model_dir = Path(model_dir)
    record = read_backend(model_dir)
    if record is None:
        raise OwledError(f"{model_dir}: not deployed for an exported runtime (no {RUNTIME_DIR}/{BACKEND_FILE})")
    if backend is not None and backend != record.get("backend"):
        if backend not in record.get("kept", {}):
            raise OwledError(f"{model_dir}: holds no files for backend {backend} (kept: {', '.join(record.get('kept', {})) or 'none'})")
        record = {**record, "backend": backend, "build": record["kept"][backend]}
    if record.get("backend") in (None, "torch"):
        raise OwledError(f"{model_dir}: runs on torch (load it with load_vlm); no exported runtime was chosen")
    warning = machine_warning(record)
    if warning is not None:
        print(f"[owled] warning: {warning}", file=sys.stderr)
    return open_runtime(model_dir, record["backend"], record.get("build", {}), threads or torch.get_num_threads())


def machine_warning(record: dict) -> str | None:
    """One line when this CPU is not the one the backend was chosen on (the choice may not hold here)."""
    from owled_ros.machine import machine_info

    here, there = machine_info(), record.get("machine", {})
    if (here["cpu"], here["cpu_features"]) == (there.get("cpu"), there.get("cpu_features")):
        return None
    return (f"backend {record.get('backend')} was chosen on {there.get('cpu', '?')} ({', '.join(there.get('cpu_features', []))}); "
            f"this is {here['cpu']} ({', '.join(here['cpu_features'])}): deploy again here with --backend auto to re-measure")


def load_driving_model(model_spec: str | Path, precision: str = "auto", backend: str | None = None,
                       device: str = "cpu") -> DrivingVLM | RuntimeVLM:
    """What the node runs for `model_spec`: the backend `owled deploy` chose for the directory
    (runtime/backend.json), or `backend` (torch, or another one it kept with --keep-all);
    a directory never deployed runs on torch. `precision` applies to torch only. On a CUDA
    `device` (model/device.py) it runs on torch in fp16, an int8 directory de-quantized."""
    from owled_ros.deploy.config import BACKENDS
    from owled_ros.model.checkpoint import load_vlm, resolve_model_dir
    from owled_ros.model.device import place, resolve_device, run_dtype

    if backend is not None and backend not in BACKENDS:
        raise OwledError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    target = resolve_device(device)
    if target.type == "cuda":
        if backend not in (None, "torch"):
            raise OwledError(f"backend {backend} runs on the CPU; on device {device} the model runs on torch (backend deployed or torch)")
        if precision == "int8":
            raise OwledError(f"precision int8 runs on the CPU (its kernels are CPU kernels); on device {device} use precision auto or fp32")
        vlm = place(load_vlm(model_spec, "fp32"), target)
        vlm.meta["backend"] = f"torch {target} {str(run_dtype(target)).removeprefix('torch.')}"
        return vlm
    model_dir = resolve_model_dir(model_spec)
    record = read_backend(model_dir)
    chosen = backend or (record or {}).get("backend") or "torch"
    if chosen == "torch":
        return load_vlm(model_spec, precision)
    if precision == "fp32":
        raise OwledError(f"{model_spec}: deployed for {chosen} (int8); precision fp32 runs on torch only (set backend torch)")
    if record is None:
        raise OwledError(f"{model_spec}: backend {chosen} asked for, but the directory was not deployed for it (owled deploy --backend {chosen})")
    return load_runtime(model_dir, backend=chosen)
