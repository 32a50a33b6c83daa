"""DrivingPipeline: one camera frame (and the ego state) -> scene description and action.

The model is asked one question per frame (prompt.FRAME_QUESTION) and answers
"<description> Action: <action phrase>. <reason>"; runtime/answer.py reads it back
(description -> objects and light, action, reasoning, stated target, confidence).

With OOD statistics in the model (model/ood.py), every frame also gets an ood_score from the
encoder tokens the projector receives; `ood_action` (runtime/ood.py) says what happens to the
action of a frame scored out of distribution.

A stale vehicle state is neither shown to the model nor used for the target speed: an
old speed misleads more than "Speed unknown.".
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from owled_ros.deploy.runner import RuntimeVLM, load_driving_model
from owled_ros.model.checkpoint import PRUNE_REPORT, resolve_model_dir
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.runtime.answer import parse_answer, parse_description
from owled_ros.runtime.confidence import ConfidenceCalibration
from owled_ros.runtime.ood import OOD_ACTIONS, apply_ood_action
from owled_ros.schema import ActionResult, FrameResult, VehicleState
from owled_ros.vocab import Action

SLOW_DOWN_FACTOR = 0.7
ACCELERATE_STEP_MPS = 2.0


@dataclass(frozen=True)
class PipelineConfig:
    max_new_tokens: int = 64
    question: str = FRAME_QUESTION
    ood_action: str = "publish"  # or "unknown": no action for a frame out of distribution

    def __post_init__(self) -> None:
        if self.ood_action not in OOD_ACTIONS:
            raise ValueError(f"ood_action must be one of {', '.join(OOD_ACTIONS)}, got {self.ood_action!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.question.strip():
            raise ValueError("question must not be empty")


def rule_target_speed(action: Action, speed_mps: float | None) -> float | None:
    """Target speed when the model stated none: stop -> 0, slow down -> 0.7 v, keep -> v, accelerate -> v + 2."""
    if action is Action.STOP:
        return 0.0
    if speed_mps is None or action is Action.UNKNOWN:
        return None
    if action is Action.SLOW_DOWN:
        return SLOW_DOWN_FACTOR * speed_mps
    if action is Action.ACCELERATE:
        return speed_mps + ACCELERATE_STEP_MPS
    return speed_mps  # keep speed, change lane


def model_id(vlm: DrivingVLM | RuntimeVLM, model_dir: Path | None = None) -> str:
    """Model name plus pruning summary (from prune_report.json) and the runtime, so recorded bags say what produced them."""
    name = str(vlm.meta.get("name") or vlm.meta.get("source") or (model_dir.name if model_dir else "unnamed"))
    notes = []
    report_file = model_dir / PRUNE_REPORT if model_dir else None
    if report_file is not None and report_file.is_file():
        try:
            report = json.loads(report_file.read_text())
            overall = float(report["achieved_sparsity"]["overall"])
            notes.append(f"{report['method']}/{report['ratios']} {overall:.0%} sparse")
        except (ValueError, KeyError, TypeError):
            notes.append(f"unreadable {PRUNE_REPORT}")
    if vlm.meta.get("precision") == "int8":
        notes.append("int8")
    if vlm.meta.get("backend"):
        notes.append(vlm.meta["backend"])
    if vlm.meta.get("trained") is False:
        notes.append("untrained")
    return f"{name} ({', '.join(notes)})" if notes else name


class DrivingPipeline:
    """Single-threaded by design: the ROS node calls `run` from one worker thread."""

    def __init__(self, vlm: DrivingVLM | RuntimeVLM, config: PipelineConfig, model_id_text: str | None = None) -> None:
        self.vlm = vlm
        self.config = config
        self.model_id = model_id_text or model_id(vlm)
        self._encoded_at = 0.0
        self._ood_score: float | None = None
        self._calibration = ConfidenceCalibration.from_meta(vlm.meta)  # None: the raw confidence is published
        # Once per generate(), right after the encoder: it splits encode from generate, and the
        # encoder's tokens are what the OOD score reads.
        vlm.register_encoded_hook(self._mark_encoded)

    @property
    def backend(self) -> str:
        """The runtime that answers: torch, onnxruntime or openvino."""
        return str(self.vlm.meta.get("backend") or "torch")

    def _mark_encoded(self, tokens: torch.Tensor | None) -> None:
        if self.vlm.ood is not None and tokens is not None:
            self._ood_score = float(self.vlm.ood.score(tokens)[0])
        self._encoded_at = time.perf_counter()

    def run(self, image_rgb: np.ndarray, state: VehicleState | None, state_fresh: bool) -> FrameResult:
        if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or 0 in image_rgb.shape:
            raise ValueError(f"image must be H x W x 3 uint8 RGB, got {image_rgb.dtype} {image_rgb.shape}")
        model_state = state if state_fresh else None
        start = self._encoded_at = time.perf_counter()
        self._ood_score = None
        gen = self.vlm.generate([image_rgb], [model_state], [self.config.question], self.config.max_new_tokens)[0]
        generated = time.perf_counter()
        encoded = self._encoded_at
        parsed = parse_answer(gen)
        speed = model_state.speed_mps if model_state is not None else None
        target = parsed.stated_target_mps if parsed.stated_target_mps is not None else rule_target_speed(parsed.action, speed)
        confidence = parsed.confidence
        if self._calibration is not None and parsed.action is not Action.UNKNOWN:
            confidence = self._calibration.apply(confidence)
        action = ActionResult(parsed.action, target, confidence, parsed.reasoning)
        scene = parse_description(parsed.description)
        done = time.perf_counter()
        result = FrameResult(
            scene=scene,
            action=action,
            latency_ms=(done - start) * 1e3,
            state_fresh=state_fresh,
            timings_ms={"encode": (encoded - start) * 1e3, "generate": (generated - encoded) * 1e3},
            ood_score=self._ood_score,
        )
        return apply_ood_action(result, self.config.ood_action)


def load_pipeline(model_spec: str | Path, config: PipelineConfig, precision: str = "auto", backend: str | None = None,
                  device: str = "cpu") -> DrivingPipeline:
    """`default`, an owled model directory or a LLaVA directory -> a ready pipeline, on the runtime
    `owled deploy` chose for it unless `backend` names another, on `device` (deploy/runner.load_driving_model)."""
    vlm = load_driving_model(model_spec, precision, backend, device)
    return DrivingPipeline(vlm, config, model_id(vlm, resolve_model_dir(model_spec)))
