"""Driving-QA evaluation of any DrivingVLM: the node's per-frame answer plus DriveLM QA by category.

Generated scenes carry full ground truth; a real DriveLM file scores what it has
(QA always; actions and descriptions only when its frames carry them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from owled_ros.data.drivelm import QA, load_drivelm, score_answer
from owled_ros.eval.metrics import accuracy, bleu4, cider, rouge_l
from owled_ros.eval.scene_facts import fact_scores
from owled_ros.imageio import read_image_rgb
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.runtime.pipeline import parse_answer
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action

CATEGORIES = ("perception", "prediction", "planning", "behavior")


@dataclass(frozen=True)
class EvalFrame:
    image: np.ndarray
    state: VehicleState | None
    description: str | None
    action: Action | None
    qa: tuple[QA, ...]


def generated_frames(split: str, limit: int, offset: int = 0) -> list[EvalFrame]:
    from owled_ros.data.describe import describe_scene
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene
    from owled_ros.data.targets import scene_qa

    frames = []
    for i in range(offset, offset + limit):
        s = generate_scene(SPLIT_SEEDS[split], i)
        frames.append(EvalFrame(render_scene(s), s.ego, describe_scene(s), s.expert.action, tuple(scene_qa(s))))
    return frames


def drivelm_frames(json_path: Path, image_root: Path, limit: int, offset: int = 0) -> list[EvalFrame]:
    return [
        EvalFrame(read_image_rgb(f.image_path), f.ego, f.description, f.expert_action, f.qa)
        for f in load_drivelm(json_path, image_root)[offset : offset + limit]
    ]


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate(
    vlm: DrivingVLM, frames: list[EvalFrame], batch: int = 8, max_new_tokens: int = 64, blank_image: bool = False, qa: bool = True,
    answers: list[dict] | None = None,
) -> dict:
    """Deterministic (greedy) scores; `blank_image` swaps every image for mid-grey (the image ablation).

    `qa=False` scores the per-frame answer only (action, description): the node's job, 6x cheaper.
    `answers` receives one record per frame, so two models can be compared frame by frame (paired).
    """
    def image_of(f: EvalFrame) -> np.ndarray:
        return np.full_like(f.image, 128) if blank_image else f.image

    descs_ref, descs_hyp, action_ok = [], [], []
    t0 = time.perf_counter()
    for chunk in tqdm(list(_batched(frames, batch)), desc="frame answers", unit="batch"):
        gens = vlm.generate([image_of(f) for f in chunk], [f.state for f in chunk], [FRAME_QUESTION] * len(chunk), max_new_tokens)
        for f, g in zip(chunk, gens):
            parsed = parse_answer(g)
            if f.description is not None:
                descs_ref.append(f.description)
                descs_hyp.append(parsed.description)
            if f.action is not None:
                action_ok.append(parsed.action is f.action)
            if answers is not None:
                answers.append({
                    "frame": len(answers), "expected": f.action.phrase if f.action else None,
                    "answered": parsed.action.phrase,
                    "correct": parsed.action is f.action if f.action else None, "text": g.text,
                    "confidence": parsed.confidence,  # raw (uncalibrated): what runtime/confidence.py is fitted on
                })
    frame_seconds = time.perf_counter() - t0

    jobs = [(f, item) for f in frames for item in f.qa] if qa else []
    by_cat: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    for chunk in tqdm(list(_batched(jobs, batch)), desc="QA answers", unit="batch"):
        gens = vlm.generate([image_of(f) for f, _ in chunk], [f.state for f, _ in chunk], [item.question for _, item in chunk], max_new_tokens)
        for (f, item), g in zip(chunk, gens):
            by_cat.setdefault(item.category, []).append(score_answer(item.category, item.question, item.answer, g.text))

    result = {
        "frames": len(frames),
        "action_accuracy": accuracy(action_ok) if action_ok else None,
        **{f"{c}_accuracy": (accuracy(v) if v else None) for c, v in by_cat.items()},
        "bleu4": bleu4(descs_ref, descs_hyp) if descs_ref else None,
        "rouge_l": rouge_l(descs_ref, descs_hyp) if descs_ref else None,
        "cider": cider(descs_ref, descs_hyp) if descs_ref else None,
        "facts": fact_scores(descs_ref, descs_hyp) if descs_ref else None,
        "frames_per_second": len(frames) / frame_seconds if frame_seconds > 0 else None,
        "blank_image": blank_image,
    }
    return result
