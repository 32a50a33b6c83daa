"""Removing structures gives exactly what zeroing them gives in the dense model; budgets hit their targets."""
from __future__ import annotations

import copy

import pytest
import torch

from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
from owled_ros.model.widths import measured_widths, record_widths
from owled_ros.prune.layers import make_blocks
from owled_ros.prune.owl import owl_sparsities
from owled_ros.prune.structured_budget import removal_counts
from owled_ros.prune.structured_groups import lm_groups
from owled_ros.prune.structured_surgery import drop_decoder_layers, keep_kv_groups, keep_mbconv_channels, keep_mlp_channels
from tiny_models import tiny_llama


def _gqa_llama(layers: int = 3):
    """A Llama with 6 query heads over 3 KV heads (2 per group), as SmolLM2 groups 9 over 3."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_removed_mlp_channels_and_kv_groups_equal_zeroed_ones() -> None:
    dense = _gqa_llama()
    pruned = copy.deepcopy(dense)
    keep_ch, keep_kv = [0, 3, 5, 9, 10, 40, 63], [0, 2]
    for d, p in zip(dense.model.layers, pruned.model.layers):
        drop_ch = [c for c in range(64) if c not in keep_ch]
        d.mlp.down_proj.weight[:, drop_ch] = 0  # a channel that writes nothing
        r, hd = 2, d.self_attn.head_dim
        for g in (1,):  # KV group 1 = query heads 2 and 3: their o_proj columns write nothing
            d.self_attn.o_proj.weight[:, g * r * hd:(g + 1) * r * hd] = 0
        keep_mlp_channels(p.mlp, keep_ch)
        keep_kv_groups(p.self_attn, keep_kv, hd)
    record_widths(pruned)
    assert measured_widths(pruned).intermediate_size == (7, 7, 7)
    assert measured_widths(pruned).num_attention_heads == (4, 4, 4)
    assert measured_widths(pruned).num_key_value_heads == (2, 2, 2)
    assert pruned.model.layers[0].mlp.gate_proj.weight.shape == (7, 48)
    assert pruned.model.layers[0].self_attn.k_proj.weight.shape == (16, 48)
    torch.testing.assert_close(pruned(IDS).logits, dense(IDS).logits, rtol=1e-4, atol=1e-5)
    # generation with the KV cache runs through the smaller layers too
    assert pruned.generate(IDS[:1], max_new_tokens=4, do_sample=False).shape == (1, 16)


@torch.no_grad()
def test_dropped_layer_equals_a_skipped_layer() -> None:
    dense = tiny_llama(layers=3)
    pruned = copy.deepcopy(dense)
    drop_decoder_layers(pruned, [1])
    assert pruned.config.num_hidden_layers == 2 and len(pruned.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    dense.model.layers[1].forward = lambda hidden, *a, **k: hidden
    torch.testing.assert_close(pruned(IDS).logits, dense(IDS).logits)


@torch.no_grad()
def test_removed_mbconv_channels_equal_zeroed_ones() -> None:
    torch.manual_seed(0)
    encoder = EfficientNetEncoder(EncoderConfig(image_size=(64, 64), grid=(1, 2))).eval()
    for m in encoder.modules():  # random BatchNorm statistics, so a wrong channel would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    pruned = copy.deepcopy(encoder)
    block, pblock = encoder.backbone.blocks[3], pruned.backbone.blocks[3]
    mid = block._expand_conv.out_channels
    keep = list(range(0, mid, 3))
    block._project_conv.weight[:, [c for c in range(mid) if c not in keep]] = 0
    keep_mbconv_channels(pblock, keep)
    assert pblock._depthwise_conv.weight.shape[0] == len(keep) and pblock._depthwise_conv.groups == len(keep)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(pruned(x), encoder(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", [0.2, 0.35, 0.5])
def test_owl_channel_budgets_hit_the_target(target: float) -> None:
    lm = _gqa_llama(layers=4)
    blocks = make_blocks(lm, list(lm.model.layers))
    groups = [g for b in blocks for g in lm_groups(b)]
    removable = [sum(g.params for g in groups if g.block == b.name) for b in blocks]
    sparsities = owl_sparsities([0.01, 0.05, 0.02, 0.03], removable, target, 0.1)
    assert sparsities[1] < sparsities[0]  # the block with the most outliers is pruned least
    counts = removal_counts(groups, {b.name: s for b, s in zip(blocks, sparsities)})
    removed = sum(counts[id(g)] * g.unit_params for g in groups)
    channel = groups[0].unit_params
    assert abs(removed - target * sum(removable)) <= channel / 2
    for g in groups:
        assert 0 <= counts[id(g)] < g.units
