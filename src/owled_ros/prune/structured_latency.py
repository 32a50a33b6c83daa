"""`--latency-budget-ms T`: measure candidate encoder/LM splits on this CPU, keep the most accurate that meets T.

Both parts are scored once on the dense model (the LM with the dense encoder's visual
tokens). Each candidate (SPLITS: encoder x LM channel sparsity) is cut from those scores on
a copy of the model, then run the way the node runs it: batch 1, the node's question and
token limit (the node's default unless --max-new-tokens), torch's thread count of this process (the node's worker uses the same), on
held-out generated scenes (the val split, never the calibration scenes). Its frame latency
is the median over those frames (after one warm-up frame), its accuracy the share of frames
whose parsed action is the expert's. The most accurate candidate whose median meets T wins
(ties: the faster); then the model itself is cut to that split. A budget no candidate meets
is refused with the fastest latency measured.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, replace

import torch
from tqdm import tqdm

from owled_ros.data.calibration import CalibrationSet
from owled_ros.errors import OwledError
from owled_ros.eval.driving_qa import EvalFrame, generated_frames
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.structured import StructuredPart, channel_groups, check_vlm, cut_vlm, score_channels, vlm_taylor
from owled_ros.prune.vlm import capture_encoder, capture_lm
from owled_ros.runtime.answer import parse_answer
from owled_ros.runtime.pipeline import PipelineConfig

ENCODER_SPLITS = (0.0, 0.25, 0.5)
LLM_SPLITS = (0.2, 0.35, 0.5)
SPLITS = tuple((e, l) for e in ENCODER_SPLITS for l in LLM_SPLITS)


@dataclass(frozen=True)
class LatencyBudget:
    budget_ms: float
    frames: int = 12  # held-out scenes each candidate answers
    max_new_tokens: int = PipelineConfig().max_new_tokens  # the node's default answer length limit

    def __post_init__(self) -> None:
        if not self.budget_ms > 0:
            raise ValueError(f"--latency-budget-ms must be positive, got {self.budget_ms}")
        if self.frames < 1:
            raise ValueError(f"--latency-frames must be at least 1, got {self.frames}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")


@dataclass
class Candidate:
    encoder_sparsity: float
    llm_sparsity: float
    latency_ms: float  # median frame latency at batch 1
    action_accuracy: float
    params: int


@torch.no_grad()
def measure(vlm: DrivingVLM, frames: list[EvalFrame], max_new_tokens: int) -> tuple[float, float]:
    """(median frame latency in ms, action accuracy) at batch 1, as the node runs a frame."""
    vlm.generate([frames[0].image], [frames[0].state], [FRAME_QUESTION], max_new_tokens)  # warm-up
    latencies, correct = [], []
    for f in frames:
        start = time.perf_counter()
        gen = vlm.generate([f.image], [f.state], [FRAME_QUESTION], max_new_tokens)[0]
        latencies.append((time.perf_counter() - start) * 1e3)
        correct.append(parse_answer(gen).action is f.action)
    return statistics.median(latencies), sum(correct) / len(correct)


def prune_vlm_for_latency(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig,
                          budget: LatencyBudget) -> tuple[list[StructuredPart], PruneConfig, dict]:
    """Cut the model in place to the chosen split; returns its parts, the config with the split's targets, the record."""
    check_vlm(vlm, calib, replace(config, encoder_sparsity=max(ENCODER_SPLITS)))
    enc_blocks, enc_groups, llm_blocks, llm_groups = channel_groups(vlm)
    taylor = vlm_taylor(vlm, calib, config, enc_groups + llm_groups)
    with torch.no_grad():
        plans = {"encoder": score_channels("encoder", enc_blocks, enc_groups, capture_encoder(vlm, calib), config, taylor),
                 "llm": score_channels("llm", llm_blocks, llm_groups, capture_lm(vlm, calib), config, taylor)}
    frames = generated_frames("val", budget.frames)
    max_new_tokens = budget.max_new_tokens
    dense_ms, dense_acc = measure(vlm, frames, max_new_tokens)
    candidates = []
    for enc, llm in tqdm(SPLITS, desc="latency candidates", unit="split"):
        trial = copy.deepcopy(vlm)
        with torch.no_grad():
            cut_vlm(trial, plans, enc, llm, config)
        ms, acc = measure(trial, frames, max_new_tokens)
        candidates.append(Candidate(enc, llm, round(ms, 1), acc, sum(p.numel() for p in trial.parameters())))
        del trial
    meeting = [c for c in candidates if c.latency_ms <= budget.budget_ms]
    if not meeting:
        fastest = min(candidates, key=lambda c: c.latency_ms)
        raise OwledError(f"no split meets {budget.budget_ms:g} ms on this CPU: the fastest measured took {fastest.latency_ms:.0f} ms "
                         f"(encoder {fastest.encoder_sparsity:g}, LM {fastest.llm_sparsity:g}; dense {dense_ms:.0f} ms)")
    best = max(meeting, key=lambda c: (c.action_accuracy, -c.latency_ms))
    with torch.no_grad():
        parts = cut_vlm(vlm, plans, best.encoder_sparsity, best.llm_sparsity, config)
    chosen = replace(config, encoder_sparsity=best.encoder_sparsity, llm_sparsity=best.llm_sparsity)
    record = {"budget_ms": budget.budget_ms, "frames": budget.frames, "split": "val", "threads": torch.get_num_threads(),
              "max_new_tokens": max_new_tokens, "dense": {"latency_ms": round(dense_ms, 1), "action_accuracy": dense_acc},
              "candidates": [asdict(c) for c in candidates], "chosen": asdict(best)}
    return parts, chosen, record
