"""Structured pruning of a DrivingVLM or a plain causal LM: score units, budget them per block, cut them out.

`--structure channels`: LM MLP channels and KV groups, encoder MBConv expansion channels.
Per part: (1) one dense sequential pass gives OWL's outlier ratio per block and the
activation scores (prune/structured_importance.py); Taylor scores come from one gradient
pass over the whole dense model before anything is cut; (2) per-block sparsities from OWL
(parameter-weighted mean exactly the target, prune/owl.py), from the same formula on each block's
action sensitivity (prune/structured_sensitivity.py), or uniform; (3) unit counts per
group (prune/structured_budget.py); (4) the lowest-scored units are removed
(prune/structured_surgery.py). The encoder is cut first, so the LM's pass sees the pruned
encoder's visual tokens, as the unstructured prune does.
`--structure layers`: whole decoder layers, the lowest block influence first.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from owled_ros.data.calibration import CalibrationSet, VisualSample
from owled_ros.errors import OwledError
from owled_ros.model.efficientnet_lite import MBConvBlock
from owled_ros.model.prompt import FRAME_QUESTION, scene_token_count
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.widths import record_widths
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block, make_blocks
from owled_ros.prune.owl import owl_sparsities
from owled_ros.prune.structured_budget import removal_counts
from owled_ros.prune.structured_groups import ChannelGroup, encoder_groups, lm_groups
from owled_ros.prune.structured_importance import Losses, block_influence, dense_pass, taylor_scores
from owled_ros.prune.structured_sensitivity import block_sensitivity
from owled_ros.prune.structured_surgery import drop_decoder_layers, keep_kv_groups, keep_mbconv_channels, keep_mlp_channels
from owled_ros.prune.vlm import capture_encoder, capture_lm, capture_windows, encoder_blocks, lm_blocks


@dataclass
class StructuredPart:
    """What one part (encoder or llm) was assigned and lost."""

    name: str
    target: float
    blocks: list[Block]  # blocks with removable units (channels) or every decoder layer (layers)
    removable: list[int]  # removable weights per block, dense
    sparsities: list[float]  # assigned per block
    outlier_ratios: list[float] | None = None
    block_influence: list[float] | None = None
    sensitivity: list[float] | None = None  # --ratios sensitivity: action KL of each block cut alone
    removed_units: dict[str, dict[str, int]] = field(default_factory=dict)  # block -> kind -> units removed
    dropped: list[int] = field(default_factory=list)  # indices of removed blocks (layers)


def frame_samples(n: int, split: str = "train") -> list[VisualSample]:
    """Generated scenes with the node's question and the full frame answer (description, then "Action: ...")."""
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene
    from owled_ros.data.targets import frame_answer

    scenes = (generate_scene(SPLIT_SEEDS[split], i) for i in range(n))
    return [VisualSample(render_scene(s), FRAME_QUESTION, frame_answer(s), s.ego) for s in scenes]


def frame_losses(vlm: DrivingVLM, conflict: bool) -> Losses:
    """Answer-token cross-entropy of one sample: one loss, or (scene description, action) for taylor-conflict."""
    def losses(sample: VisualSample) -> Sequence[torch.Tensor]:
        logits, targets, _ = vlm.answer_logits(vlm.visual_embeds([sample.image]), [sample.state], [sample.question], [sample.answer])
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        if not conflict:
            return (ce.mean(),)
        n = scene_token_count(vlm.tokenizer, sample.answer)
        return tuple(part.mean() if len(part) else torch.zeros(()) for part in (ce[:n], ce[n:]))

    return losses


def window_losses(lm: PreTrainedModel) -> Losses:
    return lambda window: (lm(input_ids=window[None].to(lm.device), labels=window[None].to(lm.device), use_cache=False).loss,)


def _block_sparsities(config: PruneConfig, signal: list[float], removable: list[int], target: float) -> list[float]:
    """OWL's formula on `signal` (outlier shares, or sensitivities: the highest is cut least), or uniform."""
    if config.ratios in ("owl", "sensitivity"):
        return owl_sparsities(signal, removable, target, config.owl_lambda)
    return [target] * len(removable)


def _cut(group: ChannelGroup, scores: torch.Tensor, remove: int) -> None:
    keep = scores.argsort(descending=True)[: group.units - remove]
    if group.kind == "mlp":
        keep_mlp_channels(group.module, keep)
    elif group.kind == "heads":
        keep_kv_groups(group.module, keep, group.module.head_dim)
    else:
        keep_mbconv_channels(group.module, keep)


@dataclass
class ChannelPlan:
    """A part's dense scores, enough to cut it to any target (or to cut an identical copy of it)."""

    name: str
    outlier_ratios: dict[str, float]  # block name -> OWL outlier ratio
    scores: list[torch.Tensor]  # one (units,) vector per group, in group order
    sensitivity: dict[str, float] | None = None  # block name -> action KL when cut alone (--ratios sensitivity)


def score_channels(name: str, blocks: list[Block], groups: list[ChannelGroup], captured, config: PruneConfig,
                   taylor: dict[int, torch.Tensor] | None) -> ChannelPlan:
    """One dense pass (outlier ratios, activation scores); `taylor` scores, when given, rank the units instead."""
    dense = dense_pass(blocks, groups, captured, config.owl_m, config.calib_dtype, f"{name} scores")
    return ChannelPlan(name, dense.outlier_ratios, [(taylor or dense.activation)[id(g)] for g in groups])


def cut_channels(plan: ChannelPlan, blocks: list[Block], groups: list[ChannelGroup], target: float, config: PruneConfig) -> StructuredPart:
    """Budget the blocks (OWL or uniform) and remove each group's lowest-scored units; `groups` in the plan's order."""
    with_units = [b for b in blocks if b.name in plan.outlier_ratios]
    removable = [sum(g.params for g in groups if g.block == b.name) for b in with_units]
    outliers = [plan.outlier_ratios[b.name] for b in with_units]
    sensitivity = [plan.sensitivity[b.name] for b in with_units] if plan.sensitivity is not None else None
    sparsities = _block_sparsities(config, sensitivity if config.ratios == "sensitivity" else outliers, removable, target)
    counts = removal_counts(groups, {b.name: s for b, s in zip(with_units, sparsities)})
    part = StructuredPart(plan.name, target, with_units, removable, sparsities, outliers if config.ratios == "owl" else None,
                          sensitivity=sensitivity)
    for g, scores in zip(groups, plan.scores):
        part.removed_units.setdefault(g.block, {})[g.kind] = counts[id(g)]
        if counts[id(g)]:
            _cut(g, scores, counts[id(g)])
    return part


def prune_channels(name: str, blocks: list[Block], groups: list[ChannelGroup], captured, target: float, config: PruneConfig,
                   taylor: dict[int, torch.Tensor] | None, vlm: DrivingVLM | None = None,
                   samples: list[VisualSample] | None = None) -> StructuredPart:
    """Score, budget and cut one part; `--ratios sensitivity` cuts each block alone first (`vlm` on `samples`)."""
    plan = score_channels(name, blocks, groups, captured, config, taylor)
    if config.ratios == "sensitivity":
        assert vlm is not None and samples is not None
        plan.sensitivity = block_sensitivity(vlm, blocks, groups, plan.scores, target, samples, f"{name} sensitivity")
    return cut_channels(plan, blocks, groups, target, config)


def prune_layers(lm: PreTrainedModel, blocks: list[Block], captured, target: float, config: PruneConfig) -> StructuredPart:
    """Drop round(target * layers) decoder layers, lowest block influence first."""
    influence = block_influence(blocks, captured, config.calib_dtype)
    n = len(blocks)
    drop = sorted(sorted(range(n), key=lambda i: influence[i])[: min(round(target * n), n - 1)])
    part = StructuredPart("llm", target, blocks, [b.params for b in blocks], [1.0 if i in drop else 0.0 for i in range(n)],
                          block_influence=influence, dropped=drop)
    drop_decoder_layers(lm, drop)
    return part


def _encoder_widths(vlm: DrivingVLM) -> tuple[int, ...]:
    return tuple(b._depthwise_conv.out_channels for b in vlm.encoder.backbone.blocks if isinstance(b, MBConvBlock))


def _taylor_for(groups: list[ChannelGroup], samples, losses: Losses, config: PruneConfig) -> dict[int, torch.Tensor] | None:
    if config.importance == "activation" or not groups:
        return None
    return taylor_scores(groups, samples, losses, config.importance == "taylor-conflict", desc=config.importance)


def _taylor_inputs(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig) -> tuple[list, Losses]:
    if calib.windows is not None:
        if config.importance == "taylor-conflict":
            raise OwledError("--importance taylor-conflict needs the driving answers' two tasks; calibrate with --calib scenes")
        return list(calib.windows), window_losses(vlm.lm)
    if calib.source != "scenes":
        raise OwledError(f"--importance {config.importance} needs answers to take gradients of; --calib {calib.source} has none (use --calib scenes)")
    return frame_samples(calib.samples), frame_losses(vlm, config.importance == "taylor-conflict")


def channel_groups(vlm: DrivingVLM) -> tuple[list[Block], list[ChannelGroup], list[Block], list[ChannelGroup]]:
    """Encoder blocks and groups, LM blocks and groups, always built in the same order (copies line up)."""
    enc_blocks, llm_blocks = encoder_blocks(vlm), lm_blocks(vlm)
    return (enc_blocks, [g for b in enc_blocks for g in encoder_groups(b)],
            llm_blocks, [g for b in llm_blocks for g in lm_groups(b)])


def check_vlm(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig) -> None:
    if vlm.encoder.config.kind != "efficientnet_lite0" and config.encoder_sparsity > 0:
        raise OwledError(f"structured pruning of a {vlm.encoder.config.kind} encoder is not supported; use --encoder-sparsity 0")
    if config.encoder_sparsity > 0 and not calib.has_images:
        raise OwledError(f"calibration source {calib.source!r} has no images: the encoder cannot be calibrated (use --encoder-sparsity 0)")


def vlm_taylor(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig, groups: list[ChannelGroup]) -> dict[int, torch.Tensor] | None:
    """Taylor scores of the groups on the dense model (None for activation importance)."""
    if config.importance == "activation" or not groups:
        return None
    samples, losses = _taylor_inputs(vlm, calib, config)
    return _taylor_for(groups, samples, losses, config)


def cut_vlm(vlm: DrivingVLM, plans: dict[str, ChannelPlan], encoder: float, llm: float, config: PruneConfig) -> list[StructuredPart]:
    """Cut a DrivingVLM (the scored one or a copy of it) to these targets from the dense plans; record the widths."""
    enc_blocks, enc_groups, llm_blocks, llm_groups = channel_groups(vlm)
    parts = [StructuredPart("encoder", 0.0, [], [], [])]
    if encoder > 0:
        parts[0] = cut_channels(plans["encoder"], enc_blocks, enc_groups, encoder, config)
        vlm.encoder.config.mid_channels = _encoder_widths(vlm)
    if llm > 0:
        parts.append(cut_channels(plans["llm"], llm_blocks, llm_groups, llm, config))
        record_widths(vlm.lm)
    return parts


def prune_vlm_structured(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig) -> list[StructuredPart]:
    """Prune the DrivingVLM in place by config.structure; its configs record the new widths.

    The encoder is cut before the LM is scored, so the LM's statistics see the pruned encoder."""
    check_vlm(vlm, calib, config)
    enc_blocks, enc_groups, llm_blocks, llm_groups = channel_groups(vlm)
    enc_groups = enc_groups if config.encoder_sparsity > 0 else []
    llm_groups = llm_groups if config.structure == "channels" and config.llm_sparsity > 0 else []
    taylor = vlm_taylor(vlm, calib, config, enc_groups + llm_groups)
    samples = _sensitivity_samples(calib, config)
    parts = []
    with torch.no_grad():
        if enc_groups:
            parts.append(prune_channels("encoder", enc_blocks, enc_groups, capture_encoder(vlm, calib), config.encoder_sparsity, config, taylor,
                                        vlm, samples))
            vlm.encoder.config.mid_channels = _encoder_widths(vlm)
        else:
            parts.append(StructuredPart("encoder", 0.0, [], [], []))
        if config.llm_sparsity > 0:
            captured = capture_lm(vlm, calib)
            if config.structure == "layers":
                parts.append(prune_layers(vlm.lm, llm_blocks, captured, config.llm_sparsity, config))
            else:
                parts.append(prune_channels("llm", llm_blocks, llm_groups, captured, config.llm_sparsity, config, taylor, vlm, samples))
            record_widths(vlm.lm)
    return parts


def _sensitivity_samples(calib: CalibrationSet, config: PruneConfig) -> list[VisualSample] | None:
    if config.ratios != "sensitivity":
        return None
    if calib.source != "scenes":
        raise OwledError(f"--ratios sensitivity measures the action on labelled frames; --calib {calib.source} has none (use --calib scenes)")
    return frame_samples(calib.samples)


def prune_lm_structured(lm: PreTrainedModel, windows: torch.Tensor, config: PruneConfig) -> list[StructuredPart]:
    """Prune a plain HF causal LM in place on text windows (config.llm_sparsity)."""
    blocks = make_blocks(lm, list(lm.get_decoder().layers))
    groups = [g for b in blocks for g in lm_groups(b)] if config.structure == "channels" else []
    if config.importance == "taylor-conflict":
        raise OwledError("--importance taylor-conflict needs the driving answers' two tasks; a plain LM has none (use taylor or activation)")
    if config.ratios == "sensitivity":
        raise OwledError("--ratios sensitivity measures driving actions; a plain LM has none (use owl or uniform)")
    taylor = _taylor_for(groups, list(windows), window_losses(lm), config)
    with torch.no_grad():
        captured = capture_windows(lm, windows)
        if config.structure == "layers":
            part = prune_layers(lm, blocks, captured, config.llm_sparsity, config)
        else:
            part = prune_channels("llm", blocks, groups, captured, config.llm_sparsity, config, taylor)
        record_widths(lm)
    return [part]

