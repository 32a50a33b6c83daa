"""How much the driving decision moves when one block alone is cut: budgets for `--ratios sensitivity`.

Why: a channels-20 % cut of the default model keeps the scene description and loses the step from
description to action (docs/recovery.md), and OWL's outlier share says nothing about which layers
make that step. Here each block is cut alone, at the part's target, to its lowest-scored units (the
same scores and unit counts as the real cut), by zeroing those units where their consumer reads them
(the same numbers as removing them); the block's sensitivity is the KL divergence of the action
tokens' next-token distributions (the answer from "Action:" on, teacher-forced on the labelled
answer) from the dense model's, averaged over the calibration frames. The budgets then take OWL's
formula with the sensitivity in place of the outlier share (prune/owl.py): the most sensitive block
is cut least (target - lambda), the least sensitive most (target + lambda), the parameter-weighted
mean exactly the target.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from owled_ros.data.calibration import VisualSample
from owled_ros.model.prompt import scene_token_count
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.layers import Block
from owled_ros.prune.structured_budget import removal_counts
from owled_ros.prune.structured_groups import ChannelGroup


def action_log_probs(vlm: DrivingVLM, sample: VisualSample) -> torch.Tensor:
    """(action tokens, vocab) log-probabilities the model gives the labelled answer's action part."""
    logits, _targets, _mask = vlm.answer_logits(vlm.visual_embeds([sample.image]), [sample.state], [sample.question], [sample.answer])
    return F.log_softmax(logits[scene_token_count(vlm.tokenizer, sample.answer):].float(), dim=-1)


def _zero_units(group: ChannelGroup, units: torch.Tensor) -> torch.utils.hooks.RemovableHandle:
    """Zero `units` of the group where its consumer reads them: the block computes as if they were removed."""
    consumer = group.consumer
    width = consumer.weight.shape[1] // group.units  # input columns per unit (a KV group: its heads x head_dim)
    keep = torch.ones(consumer.weight.shape[1], dtype=consumer.weight.dtype, device=consumer.weight.device)
    keep.view(group.units, width)[units] = 0
    shape = (1, -1, 1, 1) if isinstance(consumer, nn.Conv2d) else (-1,)
    return consumer.register_forward_pre_hook(lambda _m, args: (args[0] * keep.view(shape), *args[1:]))


@torch.no_grad()
def block_sensitivity(vlm: DrivingVLM, blocks: Sequence[Block], groups: Sequence[ChannelGroup], scores: Sequence[torch.Tensor],
                      target: float, samples: Sequence[VisualSample], desc: str) -> dict[str, float]:
    """Block name -> mean action-token KL(dense || this block alone cut to `target`), over `samples`."""
    dense = [action_log_probs(vlm, s) for s in samples]
    out: dict[str, float] = {}
    for block in tqdm(blocks, desc=desc, unit="block"):
        members = [(g, sc) for g, sc in zip(groups, scores) if g.block == block.name]
        if not members:
            continue
        counts = removal_counts([g for g, _ in members], {block.name: target})
        handles = [_zero_units(g, sc.argsort()[: counts[id(g)]]) for g, sc in members if counts[id(g)]]
        try:
            kl = [F.kl_div(action_log_probs(vlm, s), d, log_target=True, reduction="batchmean") for s, d in zip(samples, dense)]
        finally:
            for h in handles:
                h.remove()
        out[block.name] = float(torch.stack(kl).mean())
    return out
