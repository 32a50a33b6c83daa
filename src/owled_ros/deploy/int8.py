"""int8 LM weights: compact on disk (one byte a weight + a scale per row), fast at run time.

Symmetric per output row, scale = max|w_row| / 127. The ints written here are exactly the
ints torch's dynamic int8 Linear (fbgemm, per-channel) computes with: after
`quantize_dynamic` builds the int8 modules, each gets the stored ints and scales back.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from owled_ros.errors import OwledError
from owled_ros.fsutil import save_safetensors_atomic
from owled_ros.model.lm import check_hf_dir

INT8_WEIGHTS = "model.int8.safetensors"
_Q, _S = ".int8", ".scale"


def pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (weight.abs().amax(1) / 127.0).clamp(min=torch.finfo(torch.float32).eps)
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale.float()


def unpack(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale[:, None]


def save_int8_lm(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Config + tokenizer + one safetensors file: 2-D weights as int8 with row scales, the rest fp32."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lm.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tensors: dict[str, torch.Tensor] = {}
    for name, param in lm.named_parameters():  # tied lm_head / embed_tokens appear once
        if param.ndim == 2:
            tensors[name + _Q], tensors[name + _S] = pack(param.detach())
        else:
            tensors[name] = param.detach().float().contiguous()
    save_safetensors_atomic(tensors, out_dir / INT8_WEIGHTS)


def load_int8_lm(path: Path, quantize: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The int8 runtime LM (`quantize`), or the same weights de-quantized to fp32 to compare with.

    Tensors are read one at a time into the freshly built model, so loading peaks at the
    fp32 model plus the ints, not two fp32 copies."""
    check_hf_dir(path, "int8 causal LM")
    file = path / INT8_WEIGHTS
    if not file.is_file():
        raise OwledError(f"{file}: missing (an int8 model directory holds its LM weights there)")
    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    packed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with safe_open(str(file), "pt") as f, torch.no_grad():
        stored = set(f.keys())
        wanted = set()
        for name, param in lm.named_parameters():  # tied weights appear once, as saved
            keys = (name + _Q, name + _S) if param.ndim == 2 else (name,)
            for key in keys:
                if key not in stored:
                    raise OwledError(f"{file}: field {key!r} missing (config.json asks for it)")
            if param.ndim == 2:
                packed[name] = (f.get_tensor(keys[0]), f.get_tensor(keys[1]))
                value = unpack(*packed[name])
            else:
                value = f.get_tensor(name)
            if value.shape != param.shape:
                raise OwledError(f"{file}: field {keys[0]!r} has shape {tuple(value.shape)}, config.json gives {tuple(param.shape)}")
            param.copy_(value)
            wanted.update(keys)
    if stored - wanted:
        raise OwledError(f"{file}: fields not in config.json's model, e.g. {sorted(stored - wanted)[0]!r}")
    if quantize:
        quantize_linears(lm, packed)
    lm.eval()
    return lm, AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)


def quantize_linears(lm: nn.Module, packed: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """Every nn.Linear -> torch's dynamic int8 Linear (per-channel weights, per-token activations),
    running the given ints and scales (keyed by weight name; a tied lm_head finds its embedding's)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = {id(p): n for n, p in lm.named_parameters()}
    weight_of = {n: names[id(m.weight)] for n, m in lm.named_modules() if isinstance(m, nn.Linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice, once per call
        quantize_dynamic(lm, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    for name, module in lm.named_modules():
        if isinstance(module, DynamicInt8Linear):
            q, scale = packed[weight_of[name]]
            zeros = torch.zeros(len(scale), dtype=torch.long)
            exact = torch.quantize_per_channel(unpack(q, scale), scale.double(), zeros, 0, torch.qint8)
            module.set_weight_bias(exact, module.bias())
    return lm
