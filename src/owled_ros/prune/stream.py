"""Prune a plain HF causal LM straight from its safetensors files, one decoder layer in memory.

Why: the sequential calibration needs one block plus the activations (docs/design.md), but a
loaded model holds every weight, and the fp32 weights (540 MB for SmolLM2-135M) are more
than the whole job's activations. Here the model is a skeleton without weights
(accelerate's `init_empty_weights`; buffers such as the rotary frequencies stay real).
The weights outside the decoder layers are read for the capture, written out first and
dropped; each decoder layer is read from the source files when the walk reaches it and,
once pruned, written to a shard of its own and dropped. The output is a standard sharded
HF checkpoint (`model.safetensors.index.json`) that `from_pretrained` loads.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.model.lm import check_hf_dir
from owled_ros.prune.apply import prune_part
from owled_ros.prune.calibrate import BlockStore
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block, make_blocks
from owled_ros.prune.report import ZeroCounts, build_report
from owled_ros.prune.save import write_report
from owled_ros.prune.vlm import capture_windows

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
        with safe_open(str(file), "pt") as f:
            names.update((name, file) for name in f.keys())
    return names


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


class LayerFiles(BlockStore):
    """Blocks read from the source checkpoint on `load`; pruned ones written to shards on `unload`."""

    def __init__(self, files: dict[str, Path], out_dir: Path, shards: int) -> None:
        self.files, self.out_dir, self.shards = files, out_dir, shards
        self.weight_map: dict[str, str] = {}
        self.total_bytes = 0
        self.counts: ZeroCounts = {}

    def _names(self, prefix: str) -> list[str]:
        return [n for n in self.files if n.startswith(prefix)]

    def load(self, block: Block) -> None:
        prefix = block.name + "."
        tensors = read_tensors(self.files, self._names(prefix))
        block.module.load_state_dict({n[len(prefix):]: t for n, t in tensors.items()}, strict=True, assign=True)

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        shard = f"model-{len(set(self.weight_map.values())) + 1:05d}-of-{self.shards:05d}.safetensors"
        save_file({n: t.contiguous() for n, t in tensors.items()}, str(self.out_dir / shard), metadata={"format": "pt"})
        self.weight_map.update((n, shard) for n in tensors)
        self.total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())

    def unload(self, block: Block, pruned: bool) -> None:
        if pruned:
            self.write({f"{block.name}.{n}": t for n, t in block.module.state_dict().items()})
            for name, layer in block.layers.items():
                self.counts[name] = (int((layer.weight == 0).sum()), layer.weight.numel())
        block.module.to("meta")

    def write_index(self) -> None:
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))


def _skeleton(src: Path) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src, local_files_only=True, trust_remote_code=False)
    with init_empty_weights(include_buffers=False):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return lm.eval()


def prune_lm_dir(src: Path, windows: torch.Tensor, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune the LM in `src` to `out` (config.llm_sparsity); returns the prune report, also written to `out`."""
    start = time.perf_counter()
    check_hf_dir(src, "causal LM")
    files = weight_files(src)
    lm = _skeleton(src)
    blocks = make_blocks(lm, list(lm.get_decoder().layers))
    prefixes = tuple(b.name + "." for b in blocks)
    missing = [f"{b.name}.{n}" for b in blocks for n, _ in b.module.named_parameters() if f"{b.name}.{n}" not in files]
    if missing:
        raise OwledError(f"{src}: weight {missing[0]!r} missing from its safetensors files")
    with staged_dir(out) as model_dir, torch.no_grad():
        model_dir.mkdir()
        store = LayerFiles(files, model_dir, shards=len(blocks) + 1)
        rest = read_tensors(files, [n for n in files if not n.startswith(prefixes)])
        store.write(rest)
        lm.load_state_dict(rest, strict=False, assign=True)
        del rest
        captured = None if config.method == "magnitude" and config.ratios == "uniform" else capture_windows(lm, windows)
        for module in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            module.to("meta")  # the capture was their last use
        part = prune_part("llm", blocks, lambda: captured, config.llm_sparsity, config, store=store)
        store.write_index()
        for file in src.iterdir():
            if file.is_file() and file.suffix != ".safetensors" and file.name != INDEX_NAME:
                shutil.copy2(file, model_dir / file.name)
        report = build_report(config, [part], calibration, time.perf_counter() - start, store.counts)
        write_report(report, model_dir)
    return report
