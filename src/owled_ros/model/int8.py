"""int8 LM weights: compact on disk (one byte a weight + a scale per row), fast at run time.

Symmetric per output row, scale = max|w_row| / 127. The ints written here are exactly the
ints the run-time `Int8Linear` computes with: it is built from the stored ints and scales,
never re-quantized from floats.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.initialization import no_init_weights

from owled_ros.cpu import has_vnni
from owled_ros.errors import OwledError
from owled_ros.fsutil import save_safetensors_atomic
from owled_ros.model.lm import check_hf_dir
from owled_ros.model.widths import apply_widths

if TYPE_CHECKING:  # annotations only: the exported runtimes run without transformers' modeling code
    from transformers import PreTrainedModel

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

    The model is built without initialising its weights, and for the int8 runtime the fp32
    copies of the Linear weights are never written (their pages are never touched) while
    each Linear is replaced by its int8 kernel as its ints are read: the load costs about
    the int8 model's memory, not the fp32 model's."""
    check_hf_dir(path, "int8 causal LM")
    file = path / INT8_WEIGHTS
    if not file.is_file():
        raise OwledError(f"{file}: missing (an int8 model directory holds its LM weights there)")
    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    with no_init_weights():  # which also skips tying: tie here, as the saved model was
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    apply_widths(lm)  # a structurally pruned LM's smaller layers (model/widths.py)
    lm.tie_weights()
    names = {id(p): n for n, p in lm.named_parameters()}  # tied weights appear once, as saved
    linears = [(n, m) for n, m in lm.named_modules() if isinstance(m, nn.Linear)] if quantize else []
    kernel_only = {id(m.weight) for _, m in linears}
    kernel_only -= {id(p) for m in lm.modules() if not isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    with safe_open(str(file), "pt") as f, torch.no_grad():
        stored = set(f.keys())

        def read(name: str, shape: torch.Size) -> tuple[torch.Tensor, ...]:
            keys = (name + _Q, name + _S) if len(shape) == 2 else (name,)
            for key in keys:
                if key not in stored:
                    raise OwledError(f"{file}: field {key!r} missing (config.json asks for it)")
            tensors = tuple(f.get_tensor(k) for k in keys)
            if tensors[0].shape != shape or (len(keys) == 2 and tensors[1].shape != shape[:1]):
                raise OwledError(f"{file}: field {keys[0]!r} has shape {tuple(tensors[0].shape)}, config.json gives {tuple(shape)}")
            return tensors

        wanted = {k for n, p in lm.named_parameters() for k in ((n + _Q, n + _S) if p.ndim == 2 else (n,))}
        for name, param in lm.named_parameters():
            if id(param) not in kernel_only:  # fp32 at run time: norms, biases, embeddings, all with --precision fp32
                values = read(name, param.shape)
                param.copy_(values[0])
                if param.ndim == 2:
                    param.mul_(values[1][:, None])  # de-quantized in place: no fp32 temporary
        for name, linear in linears:
            q, scale = read(names[id(linear.weight)], linear.weight.shape)
            parent, _, child = name.rpartition(".")
            bias = None if linear.bias is None else linear.bias.detach()
            setattr(lm.get_submodule(parent) if parent else lm, child, Int8Linear(q, scale, bias))
    if stored - wanted:
        raise OwledError(f"{file}: fields not in config.json's model, e.g. {sorted(stored - wanted)[0]!r}")
    lm.eval()
    return lm, AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)


FULL_RANGE_ACTIVATIONS = has_vnni()
"""fbgemm's default quantizes decode activations to 7 bits, because without VNNI its u8 x s8
products are summed in int16 and 8 bits could saturate; VNNI sums in int32, so 8 bits are
safe. On this CPU the 8th bit is worth 3 action points (BENCHMARKS 5.0)."""


class Int8Linear(nn.Module):
    """A Linear on int8 weights (one scale per output row) and int8 activations, int32 sums.

    Every token is quantized with its own scale, so no token's range coarsens another's. A
    call with one token in all (a decode step at the node's batch 1) runs fbgemm's dynamic
    int8 kernel, the fastest here: its one scale per call is then the token's own, 8-bit where
    the CPU has VNNI (`FULL_RANGE_ACTIVATIONS`). Any other call (a prefill of image tokens +
    prompt, a decode step of a batch) runs `torch._int_mm` with one scale per row. Per-token
    scales through `_int_mm` for single tokens too were 1.75x slower a frame; fbgemm everywhere
    with its 7-bit default cost 3.7 action points and 2.5 ROUGE-L points against fp32 on 1000
    test frames (BENCHMARKS 5.0). Both paths multiply exactly the stored ints."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

        zeros = torch.zeros(len(scale), dtype=torch.long)
        with warnings.catch_warnings():
            # torch 2.13 marks quantized tensors deprecated (pytorch#184982); the pinned torch has them.
            warnings.simplefilter("ignore", UserWarning)
            weight = torch._make_per_channel_quantized_tensor(q, scale.double(), zeros, 0)  # the ints as they are
        self.decode = DynamicInt8Linear(q.shape[1], q.shape[0], bias_=bias is not None, dtype=torch.qint8)
        self.decode.set_weight_bias(weight, bias)
        self.register_buffer("weight_t", q.t().contiguous())  # [in, out], as torch._int_mm takes it
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_step(x) if x.numel() == x.shape[-1] else self.per_token(x)

    def decode_step(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.decode._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=not FULL_RANGE_ACTIVATIONS).to(x.dtype)

    def per_token(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        step = (rows.abs().amax(1, keepdim=True) / 127.0).clamp(min=torch.finfo(torch.float32).eps)
        out = torch._int_mm(torch.round(rows / step).to(torch.int8), self.weight_t) * (step * self.scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], -1)
