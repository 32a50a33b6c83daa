"""Prune a plain HF causal LM or a driving VLM's LM straight from its safetensors files, one decoder layer in memory.

Why: the sequential calibration needs one block plus the activations (docs/design.md), but a
loaded model holds every weight, and the fp32 weights (540 MB for SmolLM2-135M) are more
than the whole job's activations. Here the model is a skeleton without weights
(accelerate's `init_empty_weights`; buffers such as the rotary frequencies stay real).
The weights outside the decoder layers are read for the capture, written out first and
dropped; each decoder layer is read from the source files when the walk reaches it and,
once pruned, written to a shard of its own and dropped. The output is a standard sharded
HF checkpoint (`model.safetensors.index.json`) that `from_pretrained` loads.

An owled VLM directory (`open_vlm_dir`, `prune_vlm_dir`) goes the same way for its LM, LoRA
merged layer by layer as it is read; its encoder and projector (5 M and 1 M weights in the
default model) are pruned and saved in memory. Weights keep the dtype they are stored in on
disk; each block is computed in fp32 while it is in memory.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from owled_ros.data.calibration import CalibrationSet
from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.checkpoint import CONFIG_NAME, WHEEL_ENCODER, WHEEL_LM, read_model_config
from owled_ros.model.encoders import EncoderConfig, build_encoder
from owled_ros.model.lm import check_hf_dir, default_lm_dir
from owled_ros.model.lora import LoraConfig, apply_lora_delta
from owled_ros.model.ood import OOD_FILE
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.apply import prune_part
from owled_ros.prune.calibrate import BlockStore
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block, make_blocks
from owled_ros.prune.memory import MemorySampler
from owled_ros.prune.report import ZeroCounts, build_report, count_zeros
from owled_ros.prune.save import PRUNED_META, write_report
from owled_ros.prune.vlm import capture_windows, lm_blocks, prune_vlm

LM_ROOT = "lm."  # a DrivingVLM's LM tensors are named "lm.<name in the LM's files>"

INDEX_NAME = "model.safetensors.index.json"


def weight_files(src: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it (sharded or single-file checkpoints)."""
    index = src / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise OwledError(f"{index}: not a safetensors index (no 'weight_map')") from None
        return {name: src / file for name, file in weight_map.items()}
    names: dict[str, Path] = {}
    for file in sorted(src.glob("*.safetensors")):
        names.update((name, file) for name in tensor_names(file))
    return names


def tensor_names(file: Path) -> list[str]:
    """The names in one safetensors file; a missing or truncated file is named in an OwledError."""
    try:
        with safe_open(str(file), "pt") as f:
            return list(f.keys())
    except Exception as err:  # safetensors raises its own error types (and OSError for a missing file)
        raise OwledError(f"{file}: missing or unreadable safetensors file ({err})") from None


def read_tensors(files: dict[str, Path], names: list[str]) -> dict[str, torch.Tensor]:
    """Copies in ordinary memory: a tensor safetensors maps from a file keeps the whole file's
    mapping alive, and every page of it ever read stays in this process's resident memory."""
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name in names:
        by_file[files[name]].append(name)
    out = {}
    for file, group in by_file.items():
        with safe_open(str(file), "pt") as f:
            out.update((name, f.get_tensor(name).clone()) for name in group)
    return out


def _compute_copy(t: torch.Tensor) -> torch.Tensor:
    """Calibration math runs in fp32 whatever the stored dtype (one layer at a time, so bf16 storage costs nothing)."""
    return t.float() if t.is_floating_point() else t


class LayerFiles(BlockStore):
    """Blocks read from the source checkpoint on `load`; pruned ones written to shards on `unload`.

    `root`: the blocks' name prefix that the files' tensor names lack ("lm." for a VLM's LM).
    `lora`: a LoRA delta (state, config) merged into each block as it is read, the way
    `load_vlm` merges it into the whole LM. Each tensor is written back in its stored dtype.
    """

    def __init__(self, files: dict[str, Path], out_dir: Path, shards: int, root: str = "",
                 lora: tuple[dict[str, torch.Tensor], LoraConfig] | None = None) -> None:
        self.files, self.out_dir, self.shards, self.root, self.lora = files, out_dir, shards, root, lora
        self.weight_map: dict[str, str] = {}
        self.stored: dict[str, torch.dtype] = {}
        self.total_bytes = 0
        self.counts: ZeroCounts = {}

    def _prefix(self, block: Block) -> str:
        return block.name[len(self.root):] + "."

    def load(self, block: Block) -> None:
        prefix = self._prefix(block)
        tensors = read_tensors(self.files, [n for n in self.files if n.startswith(prefix)])
        self.stored.update((n, t.dtype) for n, t in tensors.items())
        block.module.load_state_dict({n[len(prefix):]: _compute_copy(t) for n, t in tensors.items()}, strict=True, assign=True)
        if self.lora is not None:
            state, lora_config = self.lora
            delta = {n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)}
            if delta:
                apply_lora_delta(block.module, delta, lora_config)

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        shard = f"model-{len(set(self.weight_map.values())) + 1:05d}-of-{self.shards:05d}.safetensors"
        save_file({n: t.contiguous() for n, t in tensors.items()}, str(self.out_dir / shard), metadata={"format": "pt"})
        self.weight_map.update((n, shard) for n in tensors)
        self.total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())

    def unload(self, block: Block, pruned: bool) -> None:
        if pruned:
            prefix = self._prefix(block)
            self.write({prefix + n: t.to(self.stored.get(prefix + n, t.dtype)) for n, t in block.module.state_dict().items()})
            for name, layer in block.layers.items():
                self.counts[name] = (int((layer.weight == 0).sum()), layer.weight.numel())
        block.module.to("meta")

    def write_index(self) -> None:
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))

    def write_rest(self, lm: torch.nn.Module, block_prefixes: tuple[str, ...]) -> None:
        """Write the weights outside the blocks (embeddings, final norm) as stored; load fp32 copies into the skeleton."""
        rest = read_tensors(self.files, [n for n in self.files if not n.startswith(block_prefixes)])
        self.write(rest)
        lm.load_state_dict({n: _compute_copy(t) for n, t in rest.items()}, strict=False, assign=True)

    def copy_side_files(self, src: Path) -> None:
        """config.json, tokenizer and generation files of the source LM directory."""
        for file in src.iterdir():
            if file.is_file() and file.suffix != ".safetensors" and file.name != INDEX_NAME:
                shutil.copy2(file, self.out_dir / file.name)


def _skeleton(src: Path) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src, local_files_only=True, trust_remote_code=False)
    with init_empty_weights(include_buffers=False):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return lm.eval()


def _check_files(src: Path, files: dict[str, Path], blocks: list[Block], root: str = "") -> None:
    """Every block weight present, every shard whole: refuse before any work (nothing written yet)."""
    for b in blocks:
        for n, _ in b.module.named_parameters():
            name = f"{b.name[len(root):]}.{n}"
            if name not in files:
                raise OwledError(f"{src}: weight {name!r} missing from its safetensors files")
    for file in sorted(set(files.values())):
        tensor_names(file)


def prune_lm_dir(src: Path, windows: torch.Tensor, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune the LM in `src` to `out` (config.llm_sparsity); returns the prune report, also written to `out`."""
    start = time.perf_counter()
    check_hf_dir(src, "causal LM")
    files = weight_files(src)
    lm = _skeleton(src)
    blocks = make_blocks(lm, list(lm.get_decoder().layers))
    _check_files(src, files, blocks)
    with MemorySampler() as memory, staged_dir(out) as model_dir, torch.no_grad():
        model_dir.mkdir()
        store = LayerFiles(files, model_dir, shards=len(blocks) + 1)
        store.write_rest(lm, tuple(b.name + "." for b in blocks))
        captured = None if config.method == "magnitude" and config.ratios == "uniform" else capture_windows(lm, windows)
        for module in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            module.to("meta")  # the capture was their last use
        part = prune_part("llm", blocks, lambda: captured, config.llm_sparsity, config, store=store)
        store.write_index()
        store.copy_side_files(src)
        memory.sample()
        report = build_report(config, [part], calibration, time.perf_counter() - start, store.counts, memory.peaks)
        write_report(report, model_dir)
    return report


@dataclass
class StreamedVLM:
    """An owled VLM directory opened for a streamed prune: encoder and projector in memory, the LM a skeleton."""

    src: Path
    config: dict  # its owled_vlm.json
    vlm: DrivingVLM
    lm_dir: Path  # the HF directory holding the LM's weights
    lora: tuple[dict[str, torch.Tensor], LoraConfig] | None


def _vision_parts(src: Path, config: dict) -> tuple[torch.nn.Module, MLPProjector]:
    """Encoder and projector of an owled directory, as `load_vlm` reads them (a trained projector is required)."""
    encoder = build_encoder(EncoderConfig.from_dict(config["encoder"]))
    weights = config.get("encoder_weights", "encoder.safetensors")
    if weights == WHEEL_ENCODER:
        encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    else:
        encoder.load_state_dict(load_file(str(src / weights)))
    projector_file = src / "projector.safetensors"
    if not projector_file.is_file():
        raise OwledError(f"{projector_file}: missing; an untrained projector is not worth pruning")
    projector = MLPProjector(ProjectorConfig(**config["projector"]))
    projector.load_state_dict(load_file(str(projector_file)))
    return encoder, projector


def open_vlm_dir(src: Path) -> StreamedVLM:
    """Read an owled model directory (not int8) without reading its LM's weights."""
    from transformers import AutoTokenizer

    config = read_model_config(src)
    if config.get("precision", "fp32") != "fp32":
        raise OwledError(f"{src}: is an int8 deploy model; prune the fp32 model, then run owled deploy")
    lm_dir = default_lm_dir() if config["lm"] == WHEEL_LM else src / config["lm"]
    check_hf_dir(lm_dir, "causal LM")
    encoder, projector = _vision_parts(src, config)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True, trust_remote_code=False)
    lora_file = src / "lora.safetensors"
    lora = (load_file(str(lora_file)), LoraConfig(**config.get("lora", {}))) if lora_file.is_file() else None
    vlm = DrivingVLM(encoder, projector, _skeleton(lm_dir), tokenizer, dict(config.get("meta", {}))).eval()
    return StreamedVLM(src, config, vlm, lm_dir, lora)


def prune_vlm_dir(opened: StreamedVLM, calib: CalibrationSet, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune a VLM to `out`: the encoder in memory, then the LM one decoder layer at a time from its files.

    The output is an owled model directory like `owled prune`'s in-memory path writes (LoRA
    merged into the LM, which is a sharded HF checkpoint in lm/); returns the report.
    """
    start = time.perf_counter()
    vlm, files = opened.vlm, weight_files(opened.lm_dir)
    blocks = lm_blocks(vlm)
    _check_files(opened.lm_dir, files, blocks, root=LM_ROOT)
    with MemorySampler() as memory, staged_dir(out) as model_dir, torch.no_grad():
        (model_dir / "lm").mkdir(parents=True)
        store = LayerFiles(files, model_dir / "lm", shards=len(blocks) + 1, root=LM_ROOT, lora=opened.lora)
        store.write_rest(vlm.lm, tuple(b.name[len(LM_ROOT):] + "." for b in blocks))
        parts = prune_vlm(vlm, calib, config, llm_store=store)
        store.write_index()
        store.copy_side_files(opened.lm_dir)
        counts = {**count_zeros(parts[0].blocks), **store.counts}
        memory.sample()
        report = build_report(config, parts, calibration, time.perf_counter() - start, counts, memory.peaks)
        vlm.meta["pruned"] = {k: report[k] for k in PRUNED_META}
        for name, module in (("encoder", vlm.encoder), ("projector", vlm.projector)):
            save_file({n: t.contiguous() for n, t in module.state_dict().items()}, str(model_dir / f"{name}.safetensors"))
        # the source's config with the LoRA merged into lm/ and the encoder's weights in the directory
        written = {k: v for k, v in opened.config.items() if k != "lora"}
        written.update(encoder_weights="encoder.safetensors", lm="lm", meta=vlm.meta)
        (model_dir / CONFIG_NAME).write_text(json.dumps(written, indent=2))
        if (opened.src / OOD_FILE).is_file():  # the source's OOD statistics travel with the pruned model
            shutil.copy2(opened.src / OOD_FILE, model_dir / OOD_FILE)
        write_report(report, model_dir)
    return report
