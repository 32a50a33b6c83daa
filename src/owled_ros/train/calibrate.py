"""Statistics a trained model carries for the vehicle: OOD statistics (model/ood.py) from its training
frames, and the calibration of its action confidence (runtime/confidence.py).

The OOD fit frames are the training split of the model's data sources, the threshold frames their
validation split, so the threshold is set on frames the statistics never saw. The confidence
calibration is fitted on even validation frames and its error reported on the odd ones.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from owled_ros.data.sources import DataSpec, SourceFrame, load_source
from owled_ros.model.ood import DEFAULT_QUANTILE, OodStats, fit_ood, pooled
from owled_ros.model.vlm import DrivingVLM


@torch.no_grad()
def encode_frames(vlm: DrivingVLM, images: Sequence[np.ndarray | SourceFrame], batch: int = 32, desc: str = "encoding",
                  pool: bool = False) -> torch.Tensor:
    """Encoder tokens (B, N, C) of images or frames (read one batch at a time); with `pool` (B, C) features."""
    out = []
    for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
        chunk = [x.load_image() if isinstance(x, SourceFrame) else x for x in images[i : i + batch]]
        tokens = vlm.encode(chunk)
        out.append((pooled(tokens) if pool else tokens).cpu())
    return torch.cat(out)


def pooled_features(vlm: DrivingVLM, images: Sequence[np.ndarray | SourceFrame], desc: str = "encoding") -> torch.Tensor:
    return encode_frames(vlm, images, desc=desc, pool=True)


def fit_model_ood(vlm: DrivingVLM, specs: list[DataSpec], fit_frames: int, holdout_frames: int,
                  quantile: float = DEFAULT_QUANTILE) -> OodStats:
    """Fit on up to `fit_frames` training frames and threshold on up to `holdout_frames` validation frames,
    shared among the sources by weight."""
    total = sum(s.weight for s in specs)
    fit, held = [], []
    for spec in specs:
        share = spec.weight / total
        fit += load_source(spec, "train", max(1, round(fit_frames * share)))
        held += load_source(spec, "val", max(1, round(holdout_frames * share)))
    if len(fit) < 2 or not held:
        from owled_ros.errors import OwledError

        raise OwledError(f"OOD statistics need training and validation frames; the sources gave {len(fit)} and {len(held)}")
    info = {"sources": [s.name for s in specs]}
    return fit_ood(pooled_features(vlm, fit, desc="OOD fit frames"), pooled_features(vlm, held, desc="OOD threshold frames"),
                   quantile, info)


def fit_confidence(vlm: DrivingVLM, specs: list[DataSpec], frames: int, batch: int = 8) -> dict:
    """Platt scaling of the action confidence on validation frames with an action; the record stored in meta."""
    from owled_ros.errors import OwledError
    from owled_ros.eval.driving_qa import EvalFrame, evaluate
    from owled_ros.runtime.confidence import expected_calibration_error, fit_platt

    total = sum(s.weight for s in specs)
    val = [f for s in specs for f in load_source(s, "val", max(1, round(frames * s.weight / total))) if f.action is not None]
    if len(val) < 4:
        raise OwledError(f"confidence calibration needs at least 4 validation frames with an action; the sources gave {len(val)}")
    answers: list[dict] = []
    evaluate(vlm, [EvalFrame(f.load_image(), f.ego, f.description, f.action, f.qa) for f in val], batch=batch, qa=False, answers=answers)
    raw = np.array([a["confidence"] for a in answers])
    correct = np.array([bool(a["correct"]) for a in answers])
    fit, held = slice(0, None, 2), slice(1, None, 2)
    calibration = fit_platt(raw[fit], correct[fit])
    calibrated = np.array([calibration.apply(c) for c in raw[held]])
    return {**calibration.to_dict(), "method": "platt", "fit_frames": len(raw[fit]), "eval_frames": len(raw[held]),
            "accuracy": round(float(correct.mean()), 4), "ece_raw": round(expected_calibration_error(raw[held], correct[held]), 4),
            "ece": round(expected_calibration_error(calibrated, correct[held]), 4), "sources": [s.name for s in specs]}
