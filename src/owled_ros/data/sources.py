"""Labelled frames from anywhere, for training, calibration and validation: `--data SPEC`.

A spec is `KIND[:PATH][@WEIGHT]`:
- `gen`: the scene generator (train and validation streams of data/scenes.py SPLIT_SEEDS);
- `drivelm:PATH`: a DriveLM-format JSON file (the schema `owled data make` writes, so a team's
  DriveLM-nuScenes files work unchanged), or a directory holding drivelm.json; image paths are
  relative to the file's directory;
- `sim:DIR`: simulator frames written as a DriveLM directory (DIR/drivelm.json).
WEIGHT (default 1) is the source's share of training examples relative to the others.

Validation frames of a file source are whole scenes (a DriveLM scene is one drive or video), so no
drive is in both splits: a scene goes to validation when a hash of its token falls below
`val_share`, and at least one scene does when there are two or more. A directory already split
into train/ and val/ (each with a drivelm.json, as `owled data make --source real` writes) keeps
its own split; anything else in it (a test/ split) is never read.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from owled_ros.data.drivelm import JSON_NAME, QA, QUESTION_PLAN, DriveFrame, load_drivelm
from owled_ros.data.scenes import SPLIT_SEEDS, Scene, generate_scene, render_scene
from owled_ros.data.targets import frame_answer, scene_qa
from owled_ros.errors import OwledError
from owled_ros.imageio import read_image_rgb
from owled_ros.model.prompt import ACTION_MARKER
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action

KINDS: tuple[str, ...] = ("gen", "drivelm", "sim")
SPEC_HELP = "gen | drivelm:PATH | sim:DIR, optionally @WEIGHT (e.g. drivelm:data/real/drivelm.json@0.5)"
DEFAULT_VAL_SHARE = 0.1


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: Path | None
    weight: float = 1.0

    @property
    def name(self) -> str:
        """How reports name the source: `gen`, or `drivelm:PATH`."""
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_data_spec(text: str) -> DataSpec:
    """`KIND[:PATH][@WEIGHT]` -> DataSpec; OwledError naming the spec when it does not parse."""
    body, weight = text, 1.0
    if "@" in text:
        body, _, raw = text.rpartition("@")
        try:
            weight = float(raw)
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise OwledError(f"--data {text!r}: weight {raw!r} is not a positive number")
    kind, _, path = body.partition(":")
    if kind not in KINDS:
        raise OwledError(f"--data {text!r}: unknown source {kind!r} (known: {SPEC_HELP})")
    if kind == "gen":
        if path:
            raise OwledError(f"--data {text!r}: gen takes no path")
        return DataSpec("gen", None, weight)
    if not path:
        raise OwledError(f"--data {text!r}: {kind} needs a path ({kind}:PATH)")
    return DataSpec(kind, Path(path), weight)


@dataclass(frozen=True)
class SourceFrame:
    """One labelled frame of any source, in the terms training and validation use."""

    key: str  # unique within its source
    group: str  # frames that must stay in one split (a DriveLM scene: one drive)
    load_image: Callable[[], np.ndarray]  # H x W x 3 uint8 RGB, read when needed
    qa: tuple[QA, ...]
    ego: VehicleState | None
    description: str | None
    action: Action | None
    frame_answer: str | None  # the node's per-frame answer, when the source has description and action
    scene: Scene | None = None  # generated frames: the full ground truth (a redrawn speed is relabelled from it)


def _scene_frame(scene: Scene) -> SourceFrame:
    from owled_ros.data.describe import describe_scene

    return SourceFrame(
        key=f"{scene.seed}-{scene.index}", group=f"{scene.seed}-{scene.index}", load_image=lambda: render_scene(scene),
        qa=tuple(scene_qa(scene)), ego=scene.ego, description=describe_scene(scene), action=scene.expert.action,
        frame_answer=frame_answer(scene), scene=scene,
    )


def _drive_frame(f: DriveFrame) -> SourceFrame:
    plan = next((qa.answer for qa in f.qa if qa.category == "planning" and qa.question == QUESTION_PLAN), None)
    answer = None
    if f.description is not None and plan is not None and Action.from_text(plan) is not Action.UNKNOWN:
        answer = f"{f.description} {ACTION_MARKER} {plan}"
    return SourceFrame(
        key=f"{f.scene_token}/{f.frame_id}", group=f.scene_token, load_image=lambda: read_image_rgb(f.image_path),
        qa=f.qa, ego=f.ego, description=f.description, action=f.expert_action, frame_answer=answer,
    )


def json_path(spec: DataSpec) -> Path:
    """The DriveLM file of a file source; OwledError when it is not there."""
    path = spec.path
    if path.is_dir():
        path = path / JSON_NAME
    if not path.is_file():
        raise OwledError(f"--data {spec.name}: {path} not found")
    return path


def split_files(spec: DataSpec) -> dict[str, Path] | None:
    """{"train": file, "val": file} of a directory already split, else None."""
    if spec.path is None or not spec.path.is_dir():
        return None
    files = {s: spec.path / s / JSON_NAME for s in ("train", "val")}
    return files if all(f.is_file() for f in files.values()) else None


def source_files(spec: DataSpec) -> list[Path]:
    """Every DriveLM file a file source reads (what its cached features depend on)."""
    files = split_files(spec)
    return list(files.values()) if files else [json_path(spec)]


def _is_val(group: str, share: float) -> bool:
    return int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def split_groups(frames: list[SourceFrame], val_share: float) -> tuple[list[SourceFrame], list[SourceFrame]]:
    """(train, val) by whole groups; with two or more groups at least one is held out and one kept."""
    groups = sorted({f.group for f in frames}, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    val = {g for g in groups if _is_val(g, val_share)}
    if len(groups) >= 2 and not val and val_share > 0:
        val = {groups[0]}
    if val and len(val) == len(groups):
        val.discard(groups[-1])
    return [f for f in frames if f.group not in val], [f for f in frames if f.group in val]


def load_source(spec: DataSpec, split: str, limit: int, val_share: float = DEFAULT_VAL_SHARE) -> list[SourceFrame]:
    """Up to `limit` frames of the source's `split` ("train" or "val"), in a fixed order."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    if spec.kind == "gen":
        return [_scene_frame(generate_scene(SPLIT_SEEDS[split], i)) for i in range(limit)]
    presplit = split_files(spec)
    file = presplit[split] if presplit else json_path(spec)
    frames = [_drive_frame(f) for f in load_drivelm(file, file.parent)]
    if not frames:
        raise OwledError(f"--data {spec.name}: {file} holds no key frames")
    if presplit:
        return frames[:limit]
    train, val = split_groups(frames, val_share)
    return (train if split == "train" else val)[:limit]
