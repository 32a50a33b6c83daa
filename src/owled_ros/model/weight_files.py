"""Which safetensors file holds which tensor, and reading a few of them at a time.

Streamed pruning reads one block's weights at a time from a checkpoint (prune/stream.py), and a
model directory may keep a part as shards with an index, as HF does (model/checkpoint.py).
Names may be the checkpoint's own or renamed: `keys` maps a name to the key stored in its file.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open

from owled_ros.errors import OwledError

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


def read_tensors(files: dict[str, Path], names: list[str], keys: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Copies in ordinary memory: a tensor safetensors maps from a file keeps the whole file's
    mapping alive, and every page of it ever read stays in this process's resident memory."""
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name in names:
        by_file[files[name]].append(name)
    keys = keys or {}
    out = {}
    for file, group in by_file.items():
        with safe_open(str(file), "pt") as f:
            out.update((name, f.get_tensor(keys.get(name, name)).clone()) for name in group)
    return out


def read_dir(src: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded or single-file directory."""
    files = weight_files(src)
    return read_tensors(files, list(files))
