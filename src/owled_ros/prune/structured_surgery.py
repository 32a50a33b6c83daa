"""Remove whole structures from a model: the layers become smaller dense layers.

Hand-written rather than torch-pruning's DepGraph (docs/structured-pruning.md says why): the
coupled groups are three fixed patterns of these architectures, each a few index selects.
- LM MLP channel c: row c of gate_proj and up_proj, column c of down_proj;
- LM KV group g (one KV head and the query heads that share it): those heads' rows of q_proj,
  the KV head's rows of k_proj and v_proj, the query heads' columns of o_proj;
- EfficientNet MBConv expansion channel c: row c of the expand conv, channel c of its
  BatchNorm, of the depthwise conv and of its BatchNorm, column c of the project conv;
- LM decoder layers: dropped from the ModuleList, the rest renumbered (KV-cache slots).
Every function keeps the given indices in their original order, so a kept channel computes
exactly what it computed before.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from owled_ros.model.efficientnet_lite import MBConvBlock, SameConv2d
from owled_ros.model.widths import WIDTHS_FIELD


def _select(t: torch.Tensor, dim: int, keep: torch.Tensor) -> torch.Tensor:
    return t.detach().index_select(dim, keep.to(t.device)).clone()


def _linear_rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.data = _select(linear.weight, 0, keep)
    if linear.bias is not None:
        out.bias.data = _select(linear.bias, 0, keep)
    return out


def _linear_cols(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.data = _select(linear.weight, 1, keep)
    if linear.bias is not None:
        out.bias.data = linear.bias.detach().clone()
    return out


def _sorted(keep: torch.Tensor | list[int]) -> torch.Tensor:
    return torch.as_tensor(keep, dtype=torch.long).sort().values


def keep_mlp_channels(mlp: nn.Module, keep: torch.Tensor | list[int]) -> None:
    """Keep these intermediate channels of a gated MLP (gate/up/down)."""
    keep = _sorted(keep)
    mlp.gate_proj = _linear_rows(mlp.gate_proj, keep)
    mlp.up_proj = _linear_rows(mlp.up_proj, keep)
    mlp.down_proj = _linear_cols(mlp.down_proj, keep)


def kv_group_size(attn: nn.Module) -> int:
    """Query heads per KV head (fixed by the architecture; pruning removes whole groups)."""
    return attn.q_proj.out_features // attn.k_proj.out_features


def keep_kv_groups(attn: nn.Module, keep: torch.Tensor | list[int], hd: int) -> None:
    """Keep these KV groups: query heads g*r .. g*r+r-1 read KV head g (r query heads per KV head)."""
    keep = _sorted(keep)
    r = kv_group_size(attn)
    kv_rows = (keep[:, None] * hd + torch.arange(hd)).reshape(-1)
    q_heads = (keep[:, None] * r + torch.arange(r)).reshape(-1)
    q_rows = (q_heads[:, None] * hd + torch.arange(hd)).reshape(-1)
    attn.q_proj = _linear_rows(attn.q_proj, q_rows)
    attn.k_proj = _linear_rows(attn.k_proj, kv_rows)
    attn.v_proj = _linear_rows(attn.v_proj, kv_rows)
    attn.o_proj = _linear_cols(attn.o_proj, q_rows)


def _bn(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, device=bn.weight.device, dtype=bn.weight.dtype)
    out.weight.data, out.bias.data = _select(bn.weight, 0, keep), _select(bn.bias, 0, keep)
    out.running_mean.data, out.running_var.data = _select(bn.running_mean, 0, keep), _select(bn.running_var, 0, keep)
    return out.train(bn.training)  # a new BatchNorm starts in training mode: it would use batch statistics


def _conv(conv: nn.Conv2d, weight: torch.Tensor, groups: int) -> SameConv2d:
    out = SameConv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[-2:]), stride=conv.stride, groups=groups,
                     bias=False, device=weight.device, dtype=weight.dtype)
    out.weight.data = weight
    return out


def keep_mbconv_channels(block: MBConvBlock, keep: torch.Tensor | list[int]) -> None:
    """Keep these expansion channels of an MBConv block that has an expand conv."""
    if not block.has_expand:
        raise ValueError("an MBConv block without expansion has no channels of its own to prune")
    keep = _sorted(keep)
    block._expand_conv = _conv(block._expand_conv, _select(block._expand_conv.weight, 0, keep), 1)
    block._bn0 = _bn(block._bn0, keep)
    block._depthwise_conv = _conv(block._depthwise_conv, _select(block._depthwise_conv.weight, 0, keep), len(keep))
    block._bn1 = _bn(block._bn1, keep)
    block._project_conv = _conv(block._project_conv, _select(block._project_conv.weight, 1, keep), 1)


def drop_decoder_layers(lm: PreTrainedModel, drop: list[int]) -> None:
    """Remove these decoder layers; the config and per-layer fields follow, so it saves as a standard checkpoint."""
    decoder = lm.get_decoder()
    n = len(decoder.layers)
    kept = [i for i in range(n) if i not in set(drop)]
    if not kept:
        raise ValueError("cannot remove every decoder layer")
    decoder.layers = nn.ModuleList([decoder.layers[i] for i in kept])
    for new, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = new
    config = lm.config
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        config.layer_types = [layer_types[i] for i in kept]
    widths = getattr(config, WIDTHS_FIELD, None)
    if widths:
        setattr(config, WIDTHS_FIELD, {k: [v[i] for i in kept] for k, v in widths.items()})

