"""`owled bag make`: deterministic rosbag2 (mcap) drives of generated scenes or real dashcam frames.

Pure rosbags, no rclpy: a bag can be made anywhere and replayed into any ROS graph.
Frame i is stamped START_NS + i / hz; the same arguments always give the same messages.

Topics (BagTopics; DEFAULT_TOPICS match config/owled.yaml except the state topic, which the
bag tools pass to the node explicitly; CARLA_TOPICS match carla-ros-bridge, role ego_vehicle):
- camera: sensor_msgs/msg/Image rgb8 (bgra8 with carla), or with compressed a
  sensor_msgs/msg/CompressedImage JPEG on `<camera>/compressed` (the image_transport name);
- camera_info: sensor_msgs/msg/CameraInfo, pinhole, no distortion, one per frame;
- odometry: nav_msgs/msg/Odometry, stamped like its frame (one simulator tick) and logged half
  a period (at most ODOM_LEAD_MAX_S) before it, so a player delivers it first; the node pairs
  each frame with the state nearest its stamp: scene bags carry the scene's ego speed and
  yaw rate, dashcam bags a synthetic highway speed profile;
- GROUND_TRUTH_TOPIC (scene bags only): std_msgs/msg/String, one JSON object per frame,
  logged with it: {"stamp_ns", "scene", "description", "action", "target_speed_mps",
  "reason", "objects": [{"object_class", "position", "distance_m"}], "traffic_light",
  "ego_speed_mps"}; names are the lower-case vocab names (action "slow_down").
The bag's metadata.yaml carries custom_data["owled"]: JSON {"source", "frames", "hz",
"seed", "split", "size", "synthetic_odometry", "topics"}; synthetic_odometry is true for
dashcam bags, whose speeds are made up.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir

START_NS = 1_700_000_000 * 1_000_000_000
"""Stamp of the first frame (2023-11-14), fixed so bags are reproducible."""
GROUND_TRUTH_TOPIC = "/owled/ground_truth"
INFO_KEY = "owled"
ODOM_LEAD_MAX_S = 0.1
DASHCAM_SIZE = (640, 360)
DASHCAM_VIDEO_FPS = 25.0
JPEG_QUALITY = 90
SOURCES = ("scenes", "dashcam")
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


@dataclass(frozen=True)
class BagTopics:
    camera: str
    camera_info: str
    odometry: str
    camera_frame: str
    odom_frame: str
    base_frame: str


DEFAULT_TOPICS = BagTopics("/camera/image_raw", "/camera/camera_info", "/odom", "camera_front", "odom", "base_link")
CARLA_TOPICS = BagTopics(
    "/carla/ego_vehicle/rgb_front/image", "/carla/ego_vehicle/rgb_front/camera_info", "/carla/ego_vehicle/odometry",
    "ego_vehicle/rgb_front", "map", "ego_vehicle",
)


@dataclass(frozen=True)
class BagSpec:
    source: str = "scenes"
    frames: int = 20
    hz: float = 10.0
    carla: bool = False
    compressed: bool = False
    seed: int | None = None
    """Scene stream seed (default: the split's SPLIT_SEEDS entry); for dashcam, the speed profile's seed (default 0)."""
    split: str = "test"
    size: tuple[int, int] | None = None
    """(width, height); default scenes.DEFAULT_SIZE for scenes, DASHCAM_SIZE for dashcam."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise OwledError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.frames < 1:
            raise OwledError(f"--frames must be at least 1, got {self.frames}")
        if not (math.isfinite(self.hz) and 0.1 <= self.hz <= 1000):
            raise OwledError(f"--hz must lie in [0.1, 1000], got {self.hz}")
        if self.seed is not None and self.seed < 0:
            raise OwledError(f"--seed must be non-negative, got {self.seed}")

    @property
    def topics(self) -> BagTopics:
        return CARLA_TOPICS if self.carla else DEFAULT_TOPICS

    @property
    def camera_topic(self) -> str:
        return self.topics.camera + "/compressed" if self.compressed else self.topics.camera


@dataclass(frozen=True)
class Record:
    """One message to write: rosbags message object, log time in ns."""

    topic: str
    msgtype: str
    log_ns: int
    msg: Any


@dataclass(frozen=True)
class BagSummary:
    path: Path
    frames: int
    messages: int
    size_bytes: int
    info: dict


# ---- message builders (rosbags typestore classes) ------------------------------------------
def _t(name: str) -> Any:
    return TYPESTORE.types[name]


def _header(stamp_ns: int, frame_id: str) -> Any:
    time = _t("builtin_interfaces/msg/Time")(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return _t("std_msgs/msg/Header")(stamp=time, frame_id=frame_id)


def _image_record(topic: str, log_ns: int, header: Any, rgb: np.ndarray, encoding: str) -> Record:
    """rgb8, bgra8 (carla-ros-bridge's encoding) or jpeg (a CompressedImage)."""
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OwledError(f"{topic}: JPEG encoding failed")
        msg = _t("sensor_msgs/msg/CompressedImage")(header=header, format="rgb8; jpeg compressed bgr8", data=buf.reshape(-1))
        return Record(topic, "sensor_msgs/msg/CompressedImage", log_ns, msg)
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA) if encoding == "bgra8" else np.ascontiguousarray(rgb)
    height, width, channels = pixels.shape
    msg = _t("sensor_msgs/msg/Image")(
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=width * channels,
        data=np.frombuffer(pixels.tobytes(), np.uint8),
    )
    return Record(topic, "sensor_msgs/msg/Image", log_ns, msg)


def _camera_info_record(topic: str, log_ns: int, header: Any, size: tuple[int, int], f: float, cx: float, cy: float) -> Record:
    width, height = size
    msg = _t("sensor_msgs/msg/CameraInfo")(
        header=header, height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], float), r=np.eye(3).reshape(-1),
        p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], float), binning_x=0, binning_y=0,
        roi=_t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    return Record(topic, "sensor_msgs/msg/CameraInfo", log_ns, msg)


@dataclass
class _Pose:
    """Planar pose integrated from speed and yaw rate, so the odometry's pose and twist agree."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0

    def step(self, speed: float, yaw_rate: float, dt: float) -> None:
        self.x += speed * dt * math.cos(self.yaw)
        self.y += speed * dt * math.sin(self.yaw)
        self.yaw += yaw_rate * dt


def _odometry_record(topic: str, log_ns: int, header: Any, child: str, pose: _Pose, speed: float, yaw_rate: float) -> Record:
    vec, zeros = _t("geometry_msgs/msg/Vector3"), np.zeros(36)
    msg = _t("nav_msgs/msg/Odometry")(
        header=header, child_frame_id=child,
        pose=_t("geometry_msgs/msg/PoseWithCovariance")(
            pose=_t("geometry_msgs/msg/Pose")(
                position=_t("geometry_msgs/msg/Point")(x=pose.x, y=pose.y, z=0.0),
                orientation=_t("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=math.sin(pose.yaw / 2), w=math.cos(pose.yaw / 2)),
            ),
            covariance=zeros,
        ),
        twist=_t("geometry_msgs/msg/TwistWithCovariance")(
            twist=_t("geometry_msgs/msg/Twist")(linear=vec(x=float(speed), y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=float(yaw_rate))),
            covariance=zeros,
        ),
    )
    return Record(topic, "nav_msgs/msg/Odometry", log_ns, msg)


def _string_record(topic: str, log_ns: int, data: dict) -> Record:
    return Record(topic, "std_msgs/msg/String", log_ns, _t("std_msgs/msg/String")(data=json.dumps(data, sort_keys=True)))


# ---- frame sources -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    speed_mps: float
    yaw_rate_rps: float
    truth: dict | None


@dataclass(frozen=True)
class _Intrinsics:
    f: float
    cx: float
    cy: float


def _scene_frames(spec: BagSpec, size: tuple[int, int]) -> tuple[_Intrinsics, Iterator[_Frame]]:
    from owled_ros.data.describe import describe_scene, scene_result
    from owled_ros.data.scenes import SPLIT_SEEDS, Camera, generate_scene, render_scene

    seed = SPLIT_SEEDS[spec.split] if spec.seed is None else spec.seed
    cam = Camera(size)

    def frames() -> Iterator[_Frame]:
        for i in range(spec.frames):
            scene = generate_scene(seed, i, size)
            facts = scene_result(scene)
            truth = {
                "scene": f"{seed}-{i:06d}",
                "description": describe_scene(scene),
                "action": scene.expert.action.name.lower(),
                "target_speed_mps": scene.expert.target_speed_mps,
                "reason": scene.expert.reason,
                "objects": [
                    {"object_class": o.object_class, "position": o.position.name.lower(), "distance_m": o.distance_m} for o in facts.objects
                ],
                "traffic_light": facts.traffic_light.name.lower(),
                "ego_speed_mps": scene.ego.speed_mps,
            }
            yield _Frame(render_scene(scene), float(scene.ego.speed_mps or 0.0), float(scene.ego.yaw_rate_rps or 0.0), truth)

    # The renderer's camera looks along the road: principal point on the horizon row.
    return _Intrinsics(cam.f, cam.cx, cam.horizon), frames()


def _dashcam_frames(spec: BagSpec, size: tuple[int, int]) -> tuple[_Intrinsics, Iterator[_Frame]]:
    """Consecutive highway-video frames at about `hz`; speeds follow a seeded smooth profile."""
    from owled_ros.data.dashcam import dashcam_frames

    rng = np.random.default_rng(0 if spec.seed is None else spec.seed)
    base, amplitude, period, phase = rng.uniform(22, 30), rng.uniform(0.5, 2.0), rng.uniform(15, 30), rng.uniform(0, 2 * math.pi)
    every = max(1, round(DASHCAM_VIDEO_FPS / spec.hz))

    def frames() -> Iterator[_Frame]:
        videos = (f for f in dashcam_frames(every=every, size=size) if f.source.startswith("test_videos/"))
        count = 0
        for frame in videos:
            speed = base + amplitude * math.sin(2 * math.pi * count / spec.hz / period + phase)
            yield _Frame(frame.image, round(speed, 2), 0.0, None)
            count += 1
            if count == spec.frames:
                return
        raise OwledError(f"the dashcam videos hold only {count} frames at --hz {spec.hz:g}; ask for fewer --frames")

    # A typical 60 degree dashcam: about the focal length of the videos' own checkerboard calibration.
    return _Intrinsics(0.9 * size[0], size[0] / 2, size[1] / 2), frames()


def _size(spec: BagSpec) -> tuple[int, int]:
    from owled_ros.data.scenes import DEFAULT_SIZE

    return spec.size or (DEFAULT_SIZE if spec.source == "scenes" else DASHCAM_SIZE)


def bag_info(spec: BagSpec) -> dict:
    """What custom_data["owled"] records about the bag."""
    from owled_ros.data.scenes import SPLIT_SEEDS

    seed = spec.seed if spec.seed is not None else (SPLIT_SEEDS[spec.split] if spec.source == "scenes" else 0)
    topics = {"camera": spec.camera_topic, "camera_info": spec.topics.camera_info, "odometry": spec.topics.odometry}
    if spec.source == "scenes":
        topics["ground_truth"] = GROUND_TRUTH_TOPIC
    return {
        "source": spec.source, "frames": spec.frames, "hz": spec.hz, "seed": seed,
        "split": spec.split if spec.source == "scenes" else None, "size": list(_size(spec)),
        "synthetic_odometry": spec.source == "dashcam", "topics": topics,
    }


def bag_records(spec: BagSpec) -> Iterator[Record]:
    """Every message of the bag in log order: per frame odometry, then image, camera info and ground truth."""
    size = _size(spec)
    intrinsics, frames = (_scene_frames if spec.source == "scenes" else _dashcam_frames)(spec, size)
    topics = spec.topics
    encoding = "jpeg" if spec.compressed else ("bgra8" if spec.carla else "rgb8")
    period_ns = round(1e9 / spec.hz)
    lead_ns = round(min(ODOM_LEAD_MAX_S, 0.5 / spec.hz) * 1e9)
    pose = _Pose()
    for i, frame in enumerate(frames):
        stamp = START_NS + i * period_ns
        yield _odometry_record(
            topics.odometry, stamp - lead_ns, _header(stamp, topics.odom_frame), topics.base_frame, pose, frame.speed_mps, frame.yaw_rate_rps
        )
        pose.step(frame.speed_mps, frame.yaw_rate_rps, 1 / spec.hz)
        header = _header(stamp, topics.camera_frame)
        yield _image_record(spec.camera_topic, stamp, header, frame.rgb, encoding)
        yield _camera_info_record(topics.camera_info, stamp, header, size, intrinsics.f, intrinsics.cx, intrinsics.cy)
        if frame.truth is not None:
            yield _string_record(GROUND_TRUTH_TOPIC, stamp, {"stamp_ns": stamp, **frame.truth})


# ---- writing -------------------------------------------------------------------------------
@contextmanager
def open_bag_writer(out: Path) -> Iterator[Writer]:
    """A rosbag2 mcap Writer on a temporary directory beside `out`, renamed to `out` on success.

    An interrupted or failed write leaves nothing behind, and a reader never sees half a bag.
    """
    with staged_dir(Path(out)) as staged, Writer(staged, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        yield writer


def write_bag(out: Path, records: Iterable[Record], info: dict) -> BagSummary:
    """Write records (in log order) to an mcap rosbag2 directory, with `info` as custom_data["owled"]."""
    connections: dict[str, Any] = {}
    count = frames = 0
    camera = info.get("topics", {}).get("camera")
    with open_bag_writer(out) as writer:
        writer.set_custom_data(INFO_KEY, json.dumps(info, sort_keys=True))
        for rec in records:
            if rec.topic not in connections:
                connections[rec.topic] = writer.add_connection(rec.topic, rec.msgtype, typestore=TYPESTORE)
            writer.write(connections[rec.topic], rec.log_ns, TYPESTORE.serialize_cdr(rec.msg, rec.msgtype))
            count += 1
            frames += rec.topic == camera
    size = sum(p.stat().st_size for p in Path(out).iterdir())
    return BagSummary(Path(out), frames, count, size, info)


def make_bag(spec: BagSpec, out: Path) -> BagSummary:
    return write_bag(out, bag_records(spec), bag_info(spec))
