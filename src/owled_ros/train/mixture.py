"""Training on several data sources at once (`owled train --data SPEC`): file sources as pools of
frames beside the generated scenes, each drawn by its weight; per-source validation; the OOD
statistics of the mixture.

The generator keeps its own path in trainer.sample_batch (speed redraws relabel a scene from its
ground truth); a pool frame is shown at its recorded ego state with its own labels, as recorded or
as one of its `augment` camera variations (data/augment.py), each encoded once up front.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from owled_ros.data.augment import augment
from owled_ros.data.sources import DataSpec, SourceFrame, load_source, source_files
from owled_ros.errors import OwledError
from owled_ros.model.ood import OodStats, fit_ood, pooled
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.schema import VehicleState
from owled_ros.train.calibrate import encode_frames, pooled_features

MAX_POOL_FRAMES = 1_000_000


@dataclass(frozen=True)
class FramePool:
    """The training frames of one file source and where their encoder features sit in the feature tensor:
    `views` blocks of len(frames) rows from `offset`, the recorded frames first, then each variation."""

    spec: DataSpec
    frames: tuple[SourceFrame, ...]
    offset: int
    views: int = 1

    def example(self, frame_share: float, rng: random.Random) -> tuple[int, str, str, VehicleState | None]:
        """(feature row, question, answer, ego state): the frame's answer with `frame_share`, else one of its QA."""
        i = rng.randrange(len(self.frames))
        frame = self.frames[i]
        row = self.offset + (rng.randrange(self.views) if self.views > 1 else 0) * len(self.frames) + i
        if frame.frame_answer is not None and (not frame.qa or rng.random() < frame_share):
            return row, FRAME_QUESTION, frame.frame_answer, frame.ego
        qa = rng.choice(frame.qa)
        return row, qa.question, qa.answer, frame.ego


def variations(frames: tuple[SourceFrame, ...], copies: int) -> list[SourceFrame]:
    """The frames, then `copies` camera variations of each in the same order (seeded by key and copy)."""
    out = list(frames)
    for copy in range(1, copies + 1):
        for frame in frames:
            seed = int.from_bytes(hashlib.sha256(f"{frame.key}#{copy}".encode()).digest()[:8], "little")
            out.append(replace(frame, load_image=lambda f=frame, s=seed: augment(f.load_image(), s)))
    return out


def pick_pool(gen_weight: float, pools: tuple[FramePool, ...], rng: random.Random) -> FramePool | None:
    """The source of the next example by weight; None is the generator. No draw when the generator is alone."""
    if not pools:
        return None
    choices: list[FramePool | None] = ([None] if gen_weight > 0 else []) + list(pools)
    weights = ([gen_weight] if gen_weight > 0 else []) + [p.spec.weight for p in pools]
    return rng.choices(choices, weights)[0]


def _file_digest(spec: DataSpec) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in source_files(spec))).hexdigest()


def load_pools(vlm: DrivingVLM, specs: list[DataSpec], offset: int, work_dir: Path, val_share: float,
               cached: Callable[[Path, str, Callable[[], torch.Tensor]], torch.Tensor],
               augment_copies: int = 0) -> tuple[tuple[FramePool, ...], list[torch.Tensor]]:
    """Pools of the file sources (rows from `offset` on) and their encoder tokens, cached in work_dir by `cached`
    (trainer.cached: file, key, compute -> tensor); with `augment_copies` each frame also in that many variations."""
    from owled_ros.train.trainer import weights_digest

    pools, features = [], []
    for spec in specs:
        frames = tuple(f for f in load_source(spec, "train", MAX_POOL_FRAMES, val_share) if f.qa or f.frame_answer)
        if not frames:
            raise OwledError(f"--data {spec.name}: no training frame with QA or an action to learn from")
        key = json.dumps({"source": spec.name, "json": _file_digest(spec), "frames": len(frames), "val_share": val_share, "augment": augment_copies,
                          "encoder": vlm.encoder.config.to_dict(), "weights": weights_digest(vlm.encoder)}, sort_keys=True)
        name = hashlib.sha1(spec.name.encode()).hexdigest()[:12]
        tokens = cached(work_dir / f"features-{spec.kind}-{name}.safetensors", key,
                        lambda: encode_frames(vlm, variations(frames, augment_copies), desc=f"encoding {spec.name} (frozen encoder)"))
        pools.append(FramePool(spec, frames, offset, 1 + augment_copies))
        features.append(tokens)
        offset += len(tokens)
    return tuple(pools), features


def validation_scores(vlm: DrivingVLM, specs: list[DataSpec], frames: int, val_share: float) -> dict[str, dict]:
    """Per source, the driving-QA scores of up to `frames` validation frames: the frame answer where the
    source has actions, else its DriveLM QA."""
    from owled_ros.eval.driving_qa import EvalFrame, evaluate

    scores = {}
    for spec in specs:
        val = load_source(spec, "val", frames, val_share)
        if not val:
            scores[spec.name] = {"frames": 0}
            continue
        evals = [EvalFrame(f.load_image(), f.ego, f.description, f.action, f.qa) for f in val]
        result = evaluate(vlm, evals, qa=not any(f.action is not None for f in val))
        scores[spec.name] = {k: v for k, v in result.items() if v is not None and k not in ("blank_image", "frames_per_second")}
    return scores


def mixture_ood(vlm: DrivingVLM, features: torch.Tensor, specs: list[DataSpec], holdout: int, val_share: float) -> OodStats:
    """OOD statistics fitted on the training features, thresholded on validation frames of the same sources."""
    total = sum(s.weight for s in specs)
    held = [f for s in specs for f in load_source(s, "val", max(1, round(holdout * s.weight / total)), val_share)]
    if not held:
        raise OwledError("no validation frames to set the OOD threshold on (a file source needs two or more scenes)")
    return fit_ood(pooled(features.cpu()), pooled_features(vlm, held, desc="OOD threshold frames"),
                   info={"sources": [s.name for s in specs]})
