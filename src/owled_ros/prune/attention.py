"""Causal self-attention for calibration windows: 0.7x the time of PyTorch's CPU flash kernel.

Why: a calibration walk runs full 512-token windows through every decoder layer twice, and
torch's CPU flash-attention kernel ran them at about 30 GFLOP/s against about 190 for the
bf16 matrix products around it, so attention took 31 % of the walk (torch profiler, one
SmolLM2 decoder layer, 8 x 512 tokens). Here each block of 128 queries multiplies only the
keys it can see (the causal half), with ordinary matrix products. Scores and softmax are fp32; the probabilities times the
values run in the inputs' dtype (bf16 in a bf16 walk), which keeps sdpa's accuracy
(test/test_prune_attention.py). Used only inside a calibration walk
(`calibration_attention`), and only for the plain case: no mask, causal, as many keys as
queries, no dropout, position bias, soft cap or cache; anything else goes to transformers'
own sdpa function.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "owled_calibration"
QUERY_BLOCK = 128


def _plain(module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask, dropout: float, is_causal, kwargs: dict) -> bool:
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    extras = any(kwargs.get(k) is not None for k in ("position_bias", "cache", "softcap"))
    return mask is None and causal and not dropout and not extras and query.shape[2] == key.shape[2] > 1


def causal_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function interface: [batch, heads, len, dim] in, [batch, len, heads, dim] out."""
    if not _plain(module, query, key, attention_mask, dropout, is_causal, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key/value head (GQA)
    scale = scaling if scaling is not None else dim**-0.5
    out = query.new_empty(batch, kv_heads, group, length, dim)
    above = torch.full((QUERY_BLOCK, QUERY_BLOCK), float("-inf"), device=query.device).triu(1)
    grouped = query.view(batch, kv_heads, group, length, dim)
    for b in range(batch):
        for h in range(kv_heads):
            k, v = key[b, h].float(), value[b, h]  # fp32 scores: bf16 ones lose sdpa's accuracy (2x its error)
            for start in range(0, length, QUERY_BLOCK):
                end = min(start + QUERY_BLOCK, length)
                n = end - start
                scores = (grouped[b, h, :, start:end].reshape(-1, dim).float() @ k[:end].T).view(group, n, end)
                scores.mul_(scale)
                scores[:, :, start:end].add_(above[:n, :n])
                probs = torch.softmax(scores, dim=-1).to(v.dtype)
                out[b, h, :, start:end] = (probs.view(-1, end) @ v[:end]).view(group, n, dim)
    return out.view(batch, heads, length, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, causal_attention)


@contextmanager
def calibration_attention(block: nn.Module) -> Iterator[None]:
    """While inside, the block's HF attention layers that use sdpa use `causal_attention` instead."""
    configs = {id(m.config): m.config for m in block.modules() if getattr(getattr(m, "config", None), "_attn_implementation", None) == "sdpa"}
    for config in configs.values():
        config._attn_implementation = NAME
    try:
        yield
    finally:
        for config in configs.values():
            config._attn_implementation = "sdpa"
