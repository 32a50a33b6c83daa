"""Fuzzing the input gate through the real node: two owled_node processes (raw Image and
CompressedImage cameras, one odometry topic) over confined DDS get thousands of malformed
frames and states, valid ones interleaved; then a valid frame must be answered with the
speed of the state stamped like it, not of the one 50 ms older."""
from __future__ import annotations

import struct
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from owled_msgs.msg import SceneDescription

from test_node_support import Harness, NodeProcess, image_msg, odometry_msg, save_tiny_model, stamp

MS = 1_000_000
FAR_FUTURE_SEC = 2**31 - 1
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
IMAGE_REASONS = (
    "unknown_encoding", "short_data", "long_data", "bad_size", "bad_step", "bad_stamp", "stamp_future", "stamp_backwards", "shape_changed",
)
COMPRESSED_REASONS = ("corrupt_image", "unknown_encoding", "short_data", "bad_size", "stamp_future", "shape_changed")
STATE_REASONS = ("state_nonfinite", "state_implausible_speed", "state_stamp_future", "state_stamp_backwards", "state_bad_stamp")


def _with(msg, **fields: object):
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def _stamped(msg, sec: int, nanosec: int = 0):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def _bad_image(now: int, i: int) -> Image:
    """Image fuzz, one category per i % 10; category 9 is a valid frame, so the stream stays locked."""
    kind = i % 10
    fuzz: list[Callable[[], Image]] = [
        lambda: _with(image_msg(now), encoding="yuv422"),
        lambda: _with(image_msg(now), data=b"\x00" * 100),
        lambda: _with(image_msg(now), data=bytes(64 * 48 * 3 + 640)),  # longer than step x height
        lambda: _with(image_msg(now), width=100_000, height=100_000, step=300_000),
        lambda: _with(image_msg(now), step=10),
        lambda: _stamped(image_msg(now), now // 10**9, 2_000_000_000),
        lambda: _stamped(image_msg(now), FAR_FUTURE_SEC),  # a valid image from the far future
        lambda: image_msg(now - 10_000 * MS),
        lambda: image_msg(now, width=32, height=24),  # well formed, not the stream's size
        lambda: image_msg(now),
    ]
    return fuzz[kind]()


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    pixels = cv2.GaussianBlur(np.random.default_rng(width).integers(0, 255, (height, width, 3), dtype=np.uint8), (5, 5), 2)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def _claiming(data: bytes, width: int, height: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


JPEG = _jpeg()
JPEG_FUZZ = (
    _claiming(JPEG, 4096, 4096)[: len(JPEG) // 2] + b"\xff\xd9",  # lying header, truncated data
    JPEG[: len(JPEG) // 2] + b"\xff\xd9",  # truncated, end marker appended: decodes half grey with cv2
    JPEG[: len(JPEG) // 2],  # truncated
    b"\xff\xd8" + bytes(300),
)


def _compressed(now: int, data: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp, msg.header.frame_id = stamp(now), "camera_front"
    return msg


def _bad_compressed(now: int, i: int) -> CompressedImage:
    kind = i % 9
    if kind < len(JPEG_FUZZ):
        return _compressed(now, JPEG_FUZZ[kind])
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 100_000, 100_000)
    fuzz = [
        lambda: _compressed(now, cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "bmp"),
        lambda: _compressed(now, b""),
        lambda: _compressed(now, bytes(png), "png"),
        lambda: _stamped(_compressed(now, JPEG), FAR_FUTURE_SEC),
        lambda: _compressed(now, JPEG),  # valid
    ]
    return fuzz[kind - len(JPEG_FUZZ)]()


def _bad_odometry(now: int, i: int):
    fuzz = [
        lambda: odometry_msg(now, float("nan")),
        lambda: odometry_msg(now, 1e9),
        lambda: _stamped(odometry_msg(now, 5.0), FAR_FUTURE_SEC),
        lambda: odometry_msg(now - 10_000 * MS, 5.0),
        lambda: _stamped(odometry_msg(now, 5.0), now // 10**9, 1_500_000_000),
        lambda: odometry_msg(now, 5.0),  # valid
    ]
    return fuzz[i % len(fuzz)]()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory):
    model = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    logs = tmp_path_factory.mktemp("log")
    common = {"model": model, "max_new_tokens": 4, "max_rate_hz": 5.0, "diagnostics_period_s": 0.5, "camera_timeout_s": 5.0}
    procs = {
        "img": NodeProcess(logs / "img.log", common, ros_args=("-r", "__ns:=/img")),
        "cmp": NodeProcess(logs / "cmp.log", common | {"camera_type": "compressed", "camera_topic": COMPRESSED_TOPIC}, ros_args=("-r", "__ns:=/cmp")),
    }
    yield procs
    for proc in procs.values():
        proc.close()


@pytest.fixture(scope="module")
def harness(nodes):
    rclpy.init()
    h = Harness(output_prefix="/img/owled")
    h.compressed = h.node.create_publisher(CompressedImage, COMPRESSED_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    h.cmp_scenes = []
    h.node.create_subscription(SceneDescription, "/cmp/owled/scene", lambda m: h.cmp_scenes.append(m), 100)
    for proc in nodes.values():
        h.wait_for_node(proc)
    h.spin_until(lambda: h.compressed.get_subscription_count() > 0, 60)
    yield h
    h.close()
    rclpy.shutdown()


def _diag(h: Harness, ns: str) -> dict[str, str]:
    for _, array in reversed(h.diagnostics):
        for status in array.status:
            if status.name.startswith(f"/{ns}/owled_node"):
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_fuzz_is_counted_by_reason_and_a_valid_frame_gets_the_nearest_state(nodes, harness: Harness) -> None:
    sent = {"image": 0, "compressed": 0, "odometry": 0}
    start = time.monotonic()
    while sum(sent.values()) < 6000 and time.monotonic() - start < 120:
        for _ in range(20):
            now = time.time_ns()
            harness.camera.publish(_bad_image(now, sent["image"]))
            harness.compressed.publish(_bad_compressed(now, sent["compressed"]))
            sent["image"] += 1
            sent["compressed"] += 1
            if sent["image"] % 2 == 0:
                harness.state.publish(_bad_odometry(now, sent["odometry"]))
                sent["odometry"] += 1
        rclpy.spin_once(harness.node, timeout_sec=0.005)
    harness.spin_for(2.0)
    assert sum(sent.values()) >= 6000, sent
    img, cmp = _diag(harness, "img"), _diag(harness, "cmp")
    for values, reasons in ((img, IMAGE_REASONS + STATE_REASONS), (cmp, COMPRESSED_REASONS + STATE_REASONS)):
        missing = [r for r in reasons if int(values.get(f"rejected.{r}", 0)) == 0]
        assert not missing, (missing, values)
    for proc in nodes.values():
        assert proc.proc.poll() is None, proc.log()

    def publish_valid() -> None:
        now = time.time_ns()
        harness.state.publish(odometry_msg(now - 50 * MS, 3.0))  # 50 ms older than the frame
        harness.camera.publish(image_msg(now, frame_id="valid"))
        harness.compressed.publish(_with(_compressed(now, JPEG), header=_with(_compressed(now, JPEG).header, frame_id="valid")))
        harness.state.publish(odometry_msg(now, 7.0))  # stamped like the frame, sent after it

    def answered() -> bool:
        return any(m.header.frame_id == "valid" for _, m in harness.scenes) and any(m.header.frame_id == "valid" for m in harness.cmp_scenes)

    assert harness.spin_until(answered, 60, every=publish_valid, period=0.5), nodes["img"].log()[-3000:] + nodes["cmp"].log()[-3000:]
    for scene in [m for _, m in harness.scenes] + harness.cmp_scenes:
        if scene.header.frame_id == "valid":
            assert scene.vehicle_state_fresh and scene.ego_speed_mps == pytest.approx(7.0)
    for proc in nodes.values():
        warnings = proc.log().count("rejected (")
        assert 1 <= warnings <= (time.monotonic() - start) / 5 * 2 + 4, f"{warnings} warnings: not throttled"
