"""From per-block sparsities (OWL or uniform) to how many units each group loses.

A block's sparsity s is the share of its removable weights to remove. KV groups are coarse
(SmolLM2: 3 per layer, a third of the attention each), so a block loses floor(s * G) of
them, never more than s of its attention; its MLP (or MBConv) channels then take the rest
of the block's budget. Channel counts are rounded over the whole part at once (largest
remainder), so the part's removed weights land within half a channel of its target, and a
group always keeps at least one unit.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from owled_ros.prune.structured_groups import ChannelGroup

EPS = 1e-9


def removal_counts(groups: Sequence[ChannelGroup], block_sparsity: dict[str, float]) -> dict[int, int]:
    """id(group) -> units to remove, so each block loses `block_sparsity[block]` of its removable weights."""
    by_block: dict[str, list[ChannelGroup]] = {}
    for g in groups:
        by_block.setdefault(g.block, []).append(g)
    counts: dict[int, int] = {}
    wanted: list[tuple[ChannelGroup, float]] = []  # channel groups and their fractional unit counts
    for name, members in by_block.items():
        s = block_sparsity.get(name, 0.0)
        budget = s * sum(g.params for g in members)
        for g in members:
            if g.kind == "heads":
                counts[id(g)] = min(math.floor(s * g.units + EPS), g.units - 1)
                budget -= counts[id(g)] * g.unit_params
        channels = [g for g in members if g.kind != "heads"]
        for g in channels:  # one channel group per block in the models here; split by size otherwise
            share = g.params / sum(c.params for c in channels)
            wanted.append((g, min(max(budget * share / g.unit_params, 0.0), g.units - 1)))
    floors = {id(g): math.floor(f + EPS) for g, f in wanted}
    spare = round(sum(f for _, f in wanted)) - sum(floors.values())
    by_remainder = sorted(wanted, key=lambda gf: gf[1] - floors[id(gf[0])], reverse=True)
    for g, _f in by_remainder:
        if spare <= 0:
            break
        if floors[id(g)] < g.units - 1:
            floors[id(g)] += 1
            spare -= 1
    counts.update(floors)
    return counts
