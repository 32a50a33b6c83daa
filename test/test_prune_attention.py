"""The calibration walk's causal attention against transformers' sdpa function it stands in for."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from owled_ros.prune.attention import NAME, calibration_attention, causal_attention
from tiny_models import text_config


def _attention_module(causal: bool = True) -> nn.Module:
    module = nn.Module()
    module.num_key_value_groups, module.is_causal = 3, causal
    return module


def _qkv(length: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(length)
    q, k = (2 * torch.randn(2, heads, length, 16, generator=g) for heads in (6, 2))
    v = torch.randn(2, 2, length, 16, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("length", [300, 128, 2])  # not a multiple of the query block, one block, two tokens
def test_fp32_equals_sdpa(length: int) -> None:
    q, k, v = _qkv(length)
    ours, _ = causal_attention(_attention_module(), q, k, v, None, scaling=0.3)
    theirs, _ = sdpa_attention_forward(_attention_module(), q, k, v, None, scaling=0.3)
    assert ours.shape == theirs.shape == (2, length, 6, 16)
    assert torch.allclose(ours, theirs, atol=2e-6)


def test_bf16_is_as_accurate_as_sdpa() -> None:
    q, k, v = _qkv(300)
    exact, _ = sdpa_attention_forward(_attention_module(), q.double(), k.double(), v.double(), None)
    errors = []
    for attend in (causal_attention, sdpa_attention_forward):
        out, _ = attend(_attention_module(), *_qkv(300, torch.bfloat16), None)
        assert out.dtype == torch.bfloat16
        errors.append((out.double() - exact).pow(2).mean().sqrt().item())
    assert errors[0] < 1.2 * errors[1], errors  # bf16 scores would double it


@pytest.mark.parametrize("case", ["mask", "not causal", "dropout"])
def test_other_cases_are_sdpa_itself(case: str) -> None:
    q, k, v = _qkv(40)
    mask = torch.zeros(2, 1, 40, 40).masked_fill(torch.ones(40, 40, dtype=torch.bool).tril().logical_not(), float("-inf"))
    args = dict(attention_mask=mask if case == "mask" else None, dropout=0.0)
    module = _attention_module(causal=case != "not causal")
    if case == "dropout":
        torch.manual_seed(0)
        args["dropout"] = 0.5
    ours, _ = causal_attention(module, q, k, v, **args)
    if case == "dropout":
        torch.manual_seed(0)
    theirs, _ = sdpa_attention_forward(module, q, k, v, **args)
    assert torch.equal(ours, theirs)


def test_a_decoder_layer_inside_the_context_gives_the_sdpa_output_and_the_model_gets_sdpa_back() -> None:
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(text_config("llama"), attn_implementation="sdpa").eval()
    ids = torch.randint(0, 200, (3, 150))
    with torch.no_grad():
        reference = lm(ids).logits
        with calibration_attention(lm.model.layers[0]):
            assert lm.config._attn_implementation == NAME
            calibrated = lm(ids).logits
    assert lm.config._attn_implementation == "sdpa"
    assert torch.allclose(calibrated, reference, atol=1e-5)
    assert not torch.equal(calibrated, reference)  # a different computation really ran
