"""Reading drives out of rosbag2 bags (sqlite3 or mcap) with rosbags, no rclpy.

Every problem is an OwledError that names the bag and, where there is one, the topic:
a missing or unreadable bag, a missing topic, a topic of an unexpected or unknown message
type, a message that does not deserialize, ground truth that is not the JSON bag_make writes.
Messages come back as rosbags objects, whose fields have the same names as rclpy's, so the
node's conversion code (ros/conversions.py) reads them unchanged.
"""
from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError
from rosbags.typesys import Stores, TypesysError, get_typestore

from owled_ros.data.bag_make import GROUND_TRUTH_TOPIC, INFO_KEY
from owled_ros.errors import OwledError
from owled_ros.vocab import Action

CAMERA_TYPES = {"sensor_msgs/msg/Image": "image", "sensor_msgs/msg/CompressedImage": "compressed"}
"""Message type -> the node's camera_type parameter."""
STATE_TYPES = {"nav_msgs/msg/Odometry": "odometry", "geometry_msgs/msg/TwistStamped": "twist", "std_msgs/msg/Float32": "speed"}
"""Message type -> the node's state_type parameter."""
GROUND_TRUTH_TYPE = "std_msgs/msg/String"
_DECODE_ERRORS = (TypesysError, ValueError, KeyError, IndexError, struct.error, EOFError)


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    log_ns: int
    msg: Any


@contextmanager
def open_bag(path: Path) -> Iterator[AnyReader]:
    """An open AnyReader; OwledError naming the bag when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise OwledError(f"{path}: bag not found")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))
        reader.open()
    except (AnyReaderError, ReaderError, OSError) as err:
        raise OwledError(f"{path}: not a readable rosbag2 ({err})") from None
    try:
        yield reader
    finally:
        reader.close()


def bag_topics(reader: AnyReader) -> dict[str, str]:
    """topic -> message type."""
    return {c.topic: c.msgtype for c in reader.connections}


def topic_list(topics: dict[str, str]) -> str:
    return ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"


def read_messages(path: Path, topics: Iterable[str]) -> Iterator[Message]:
    """Deserialized messages of `topics`, in log order."""
    wanted = set(topics)
    with open_bag(path) as reader:
        missing = wanted - set(bag_topics(reader))
        if missing:
            raise OwledError(f"{path}: topic {', '.join(sorted(missing))} not in the bag; topics: {topic_list(bag_topics(reader))}")
        conns = [c for c in reader.connections if c.topic in wanted]
        current = ""
        try:
            for conn, log_ns, raw in reader.messages(connections=conns):
                current = f"topic {conn.topic}"
                yield Message(conn.topic, conn.msgtype, log_ns, reader.deserialize(raw, conn.msgtype))
        except (AnyReaderError, ReaderError) as err:
            raise OwledError(f"{path}: corrupt bag while reading {current or 'messages'} ({err})") from None
        except _DECODE_ERRORS as err:
            raise OwledError(f"{path}: {current}: message does not deserialize ({type(err).__name__}: {err})") from None


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def to_plain(msg: Any) -> Any:
    """A rosbags message as JSON-ready dicts, lists and numbers (arrays become lists)."""
    if is_dataclass(msg):
        return {f.name: to_plain(getattr(msg, f.name)) for f in fields(msg) if not f.name.startswith("__")}
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [to_plain(v) for v in msg]
    if isinstance(msg, np.generic):
        return msg.item()
    return msg


def bag_info(path: Path) -> dict:
    """custom_data["owled"] of a rosbag2 directory's metadata.yaml (what bag_make wrote); {} if absent."""
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        custom = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"].get("custom_data") or {}
        return json.loads(custom[INFO_KEY]) if INFO_KEY in custom else {}
    except (yaml.YAMLError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise OwledError(f"{meta}: unreadable custom_data.{INFO_KEY} ({err})") from None


# ---- a drive: camera frames, vehicle state, ground truth -------------------------------------
@dataclass(frozen=True)
class FrameRef:
    index: int
    log_ns: int
    stamp_ns: int
    frame_id: str


@dataclass(frozen=True)
class GroundTruth:
    stamp_ns: int
    description: str
    action: Action
    record: dict


@dataclass(frozen=True)
class StampCheck:
    """Frames whose stamps go backwards or jump, in bag (= playback) order."""

    out_of_order: tuple[int, ...]
    """Indices of frames stamped before an earlier frame (the node rejects them)."""
    gaps: tuple[int, ...]
    """Indices of the frames stamped right after a jump of more than 1.5 median periods."""
    missing: int
    """Frames the gaps would have held at the median period."""


@dataclass(frozen=True)
class DriveBag:
    path: Path
    camera_topic: str
    camera_type: str  # "image" | "compressed"
    state_topic: str | None
    state_type: str | None  # "odometry" | "twist" | "speed"
    frames: tuple[FrameRef, ...]
    truth: dict[int, GroundTruth] = field(repr=False)
    info: dict

    @property
    def hz(self) -> float | None:
        """Median camera rate by log time."""
        if len(self.frames) < 2:
            return None
        period = float(np.median(np.diff([f.log_ns for f in self.frames])))
        return 1e9 / period if period > 0 else None

    def stream(self) -> Iterator[Message]:
        """Camera and state messages in log order, as a player publishes them."""
        return read_messages(self.path, [t for t in (self.camera_topic, self.state_topic) if t])

    def stamp_check(self) -> StampCheck:
        stamps = [f.stamp_ns for f in self.frames]
        out_of_order, newest = [], None
        for i, s in enumerate(stamps):
            if newest is not None and s < newest:
                out_of_order.append(i)
            newest = s if newest is None else max(newest, s)
        ordered = sorted(set(stamps))  # gaps are stamps missing from the sequence, whatever the playback order
        steps = np.diff(ordered)
        if steps.size == 0:
            return StampCheck(tuple(out_of_order), (), 0)
        period = float(np.median(steps))
        after = [k + 1 for k, d in enumerate(steps) if d > 1.5 * period]
        gaps = tuple(stamps.index(ordered[k]) for k in after)
        missing = sum(round(steps[k - 1] / period) - 1 for k in after)
        return StampCheck(tuple(out_of_order), gaps, int(missing))


def _pick(path: Path, topics: dict[str, str], wanted: str | None, types: dict[str, str], what: str, flag: str) -> str | None:
    if wanted is not None:
        if wanted not in topics:
            raise OwledError(f"{path}: {what} topic {wanted} not in the bag; topics: {topic_list(topics)}")
        if topics[wanted] not in types:
            raise OwledError(f"{path}: topic {wanted} has message type {topics[wanted]}, expected {' or '.join(types)}")
        return wanted
    found = sorted(t for t, m in topics.items() if m in types)
    if len(found) > 1:
        raise OwledError(f"{path}: several {what} topics ({', '.join(found)}); choose one with {flag}")
    return found[0] if found else None


def _ground_truth(path: Path, msgs: Iterable[Message]) -> dict[int, GroundTruth]:
    truth: dict[int, GroundTruth] = {}
    for i, m in enumerate(msgs):
        where = f"{path}: topic {GROUND_TRUTH_TOPIC} message {i}"
        try:
            record = json.loads(m.msg.data)
            action = Action[str(record["action"]).upper()]
            item = GroundTruth(int(record["stamp_ns"]), str(record["description"]), action, record)
        except json.JSONDecodeError as err:
            raise OwledError(f"{where}: not JSON ({err})") from None
        except KeyError as err:
            raise OwledError(f"{where}: missing or unknown {err}") from None
        except (TypeError, ValueError) as err:
            raise OwledError(f"{where}: bad field ({err})") from None
        truth.setdefault(item.stamp_ns, item)
    return truth


def open_drive_bag(path: Path, camera_topic: str | None = None, state_topic: str | None = None) -> DriveBag:
    """The drive in a bag: one camera topic (given, or the bag's only Image/CompressedImage topic),
    an optional vehicle-state topic (given, or the only Odometry/TwistStamped/Float32 one) and
    the ground truth on GROUND_TRUTH_TOPIC when the bag has it."""
    path = Path(path)
    with open_bag(path) as reader:
        topics = bag_topics(reader)
    camera = _pick(path, topics, camera_topic, CAMERA_TYPES, "camera", "--camera-topic")
    if camera is None:
        raise OwledError(f"{path}: no camera topic (sensor_msgs/msg/Image or CompressedImage); topics: {topic_list(topics)}")
    state = _pick(path, topics, state_topic, STATE_TYPES, "vehicle state", "--state-topic")
    has_truth = topics.get(GROUND_TRUTH_TOPIC) == GROUND_TRUTH_TYPE
    if GROUND_TRUTH_TOPIC in topics and not has_truth:
        raise OwledError(f"{path}: topic {GROUND_TRUTH_TOPIC} has message type {topics[GROUND_TRUTH_TOPIC]}, expected {GROUND_TRUTH_TYPE}")
    frames = tuple(
        FrameRef(i, m.log_ns, stamp_ns(m.msg.header), m.msg.header.frame_id) for i, m in enumerate(read_messages(path, [camera]))
    )
    if not frames:
        raise OwledError(f"{path}: topic {camera} holds no messages")
    truth = _ground_truth(path, read_messages(path, [GROUND_TRUTH_TOPIC])) if has_truth else {}
    return DriveBag(path, camera, CAMERA_TYPES[topics[camera]], state, STATE_TYPES.get(topics.get(state, "")), frames, truth, bag_info(path))
