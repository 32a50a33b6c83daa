"""How much each removable unit matters: activation (Wanda-sp), Taylor, Taylor with task conflict; block influence.

- `activation` (gradient-free, Wanda-sp / FLAP style): a unit's score is the sum over the
  columns it feeds in its consumer layer (down_proj, o_proj, the project conv) of
  |W[i, c]| * ||X_c||_2, X_c that column's input over the calibration rows. It comes from the
  same dense sequential pass (prune/calibrate.py `walk`) that measures OWL's outlier ratios.
- `taylor` (LLM-Pruner's first order): |sum over the unit's weights of w * dL/dw|, dL/dw
  summed over the calibration samples, L the task loss on the answer tokens. Gradients are
  accumulated sample by sample (one sample's graph in memory at a time), into one fp32
  buffer per pruned weight.
- `taylor-conflict` (the seed paper's multi-task criterion): the answer's two tasks, the
  scene description (tokens before "Action:") and the action (from "Action:" on), each get
  their own mean loss and their own accumulated gradient. A unit scores
  (|T_scene| + |T_action|) * (1 - CONFLICT_PENALTY * max(0, -cos)), cos the cosine between
  the unit's two task gradients: a unit the tasks pull in opposite directions is worth less.
- Block influence (ShortGPT): 1 - cosine(input, output) of a decoder layer's hidden states,
  averaged over the calibration tokens; the lowest are the layers that change least.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from owled_ros.prune.attention import calibration_attention
from owled_ros.prune.calibrate import Captured, LayerStats, compute_dtype, walk
from owled_ros.prune.layers import Block, weight_matrix
from owled_ros.prune.apply import block_wanda_scores
from owled_ros.prune.owl import outlier_ratio
from owled_ros.prune.scores import wanda_scores
from owled_ros.prune.structured_groups import ChannelGroup, per_unit

CONFLICT_PENALTY = 0.5

Losses = Callable[[object], Sequence[torch.Tensor]]  # one calibration sample -> one loss per task


@dataclass
class DenseStats:
    """What one dense sequential pass over a part gives: OWL's outlier ratio per block, activation scores per group."""

    outlier_ratios: dict[str, float]  # block name -> share of Wanda scores above M * mean
    activation: dict[int, torch.Tensor]  # id(group) -> (units,)


def activation_score(group: ChannelGroup, norm: torch.Tensor) -> torch.Tensor:
    """Wanda-sp: sum over the consumer's columns of each unit of |W| * ||X_col||."""
    cols = wanda_scores(weight_matrix(group.consumer), norm).sum(0)
    return cols.reshape(group.units, -1).sum(1).double().cpu()


def dense_pass(blocks: list[Block], groups: list[ChannelGroup], captured: Captured, m: float, dtype: str, desc: str) -> DenseStats:
    """One dense walk: outlier ratios of the blocks that have groups, activation scores of every group."""
    by_block: dict[str, list[ChannelGroup]] = {}
    for g in groups:
        by_block.setdefault(g.block, []).append(g)
    out = DenseStats({}, {})

    def visit(_k: int, block: Block, stats: dict[str, LayerStats]) -> None:
        if block.name not in by_block:
            return
        names = {id(layer): name for name, layer in block.layers.items()}
        out.outlier_ratios[block.name] = outlier_ratio(lambda: block_wanda_scores(block, stats), m)
        for g in by_block[block.name]:
            out.activation[id(g)] = activation_score(g, stats[names[id(g.consumer)]].norm)

    walk(blocks, captured, visit, prunes=False, hessian=False, desc=desc, dtype=dtype)
    return out


def taylor_scores(groups: list[ChannelGroup], samples: Iterable, losses: Losses, conflict: bool, desc: str = "taylor") -> dict[int, torch.Tensor]:
    """Per group, (units,) Taylor (or Taylor-conflict) importance from gradients summed over `samples`."""
    weights = list({id(layer.weight): layer.weight for g in groups for layer, _ in g.members}.values())
    tasks = 2 if conflict else 1
    acc = [{id(w): torch.zeros_like(w, dtype=torch.float32) for w in weights} for _ in range(tasks)]
    flags = [(w, w.requires_grad) for w in weights]
    for w in weights:
        w.requires_grad_(True)
    try:
        for sample in tqdm(samples, desc=desc, unit="sample"):
            with torch.enable_grad():
                task_losses = losses(sample)
                if len(task_losses) != tasks:
                    raise ValueError(f"expected {tasks} task losses, got {len(task_losses)}")
                for t, loss in enumerate(task_losses):
                    if not loss.requires_grad:  # a task with no tokens in this sample
                        continue
                    grads = torch.autograd.grad(loss, weights, retain_graph=t < tasks - 1, allow_unused=True)
                    for w, g in zip(weights, grads):
                        if g is not None:
                            acc[t][id(w)] += g.float()
    finally:
        for w, flag in flags:
            w.requires_grad_(flag)

    def signed(t: int, g: ChannelGroup) -> torch.Tensor:
        return per_unit(g, lambda layer: layer.weight.detach().float() * acc[t][id(layer.weight)])

    scores = {}
    for g in groups:
        if not conflict:
            scores[id(g)] = signed(0, g).abs()
            continue
        a, b = acc[0], acc[1]
        dot = per_unit(g, lambda layer: a[id(layer.weight)] * b[id(layer.weight)])
        na = per_unit(g, lambda layer: a[id(layer.weight)].square())
        nb = per_unit(g, lambda layer: b[id(layer.weight)].square())
        cos = dot / (na * nb).sqrt().clamp(min=1e-30)
        scores[id(g)] = (signed(0, g).abs() + signed(1, g).abs()) * (1 - CONFLICT_PENALTY * (-cos).clamp(min=0))
    return scores


@torch.no_grad()
def block_influence(blocks: list[Block], captured: Captured, dtype: str = "fp32") -> list[float]:
    """Per block, 1 - mean cosine between its input and output hidden states over all calibration tokens."""
    hidden = captured.hidden.copy()
    influence = []
    context = compute_dtype(dtype, hidden[0].device)
    for k, block in enumerate(tqdm(blocks, desc="block influence", unit="block")):
        cos = []
        with context, calibration_attention(block.module):
            for i, call in enumerate(captured.calls[k]):  # a batch's input is read before its output replaces it
                before = hidden[i]
                after = block.module(before, *call.args, **call.kwargs)
                cos.append(F.cosine_similarity(before.float().reshape(-1, before.shape[-1]), after.float().reshape(-1, after.shape[-1]), dim=-1))
                hidden[i] = after
        influence.append(float(1 - torch.cat(cos).mean()))
    return influence
