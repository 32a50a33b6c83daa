"""Message conversions without DDS: every encoding, every rejected field, results -> owled_msgs."""
from __future__ import annotations

import math
import struct

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32, Header

from owled_ros.ros.conversions import action_message, scene_message
from owled_ros.runtime.decode import (
    ImageLimits,
    InputError,
    compressed_to_rgb,
    image_to_rgb,
    odometry_to_state,
    speed_to_state,
    stamp_ns,
    twist_to_state,
)
from owled_ros.schema import ActionResult, FrameResult, SceneObject, SceneResult, VehicleState
from owled_ros.vocab import Action, LightState, ObjectPosition

LIMITS = ImageLimits()
RGB = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize(
    "encoding,pixels",
    [
        ("rgb8", RGB),
        ("bgr8", RGB[..., ::-1]),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
    ],
)
@pytest.mark.parametrize("pad", [0, 3])
def test_color_encodings_give_rgb(encoding: str, pixels: np.ndarray, pad: int) -> None:
    out = image_to_rgb(_image(np.ascontiguousarray(pixels), encoding, pad), LIMITS)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated() -> None:
    gray = RGB[..., 0].copy()
    out = image_to_rgb(_image(gray, "mono8"), LIMITS)
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


@pytest.mark.parametrize(
    "fields,reason",
    [
        ({"encoding": "yuv422"}, "unknown_encoding"),
        ({"encoding": "16UC1"}, "unknown_encoding"),
        ({"width": 0}, "bad_size"),
        ({"height": 0}, "bad_size"),
        ({"width": 5000}, "bad_size"),
        ({"step": 20}, "bad_step"),
        ({"step": 2**31}, "bad_step"),
        ({"data": b"\x00" * 50}, "short_data"),
        ({"data": b""}, "short_data"),
    ],
)
def test_bad_image_fields_are_rejected(fields: dict, reason: str) -> None:
    msg = _image(RGB, "rgb8")
    for name, value in fields.items():
        setattr(msg, name, value)
    with pytest.raises(InputError) as err:
        image_to_rgb(msg, LIMITS)
    assert err.value.reason == reason


def test_oversized_data_is_rejected_before_use() -> None:
    msg = _image(RGB, "rgb8")
    msg.data = bytes(ImageLimits(16).max_bytes + 1)
    with pytest.raises(InputError) as err:
        image_to_rgb(msg, ImageLimits(16))
    assert err.value.reason == "too_large"


def _encoded(ext: str, pixels: np.ndarray = RGB) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def test_png_and_jpeg_decode_to_rgb() -> None:
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format="png", data=_encoded(".png")), LIMITS), RGB)
    smooth = np.full((16, 16, 3), (200, 40, 10), np.uint8)
    out = compressed_to_rgb(CompressedImage(format="rgb8; jpeg compressed bgr8", data=_encoded(".jpg", smooth)), LIMITS)
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - smooth).max() < 8


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(_encoded(".png"))
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


@pytest.mark.parametrize(
    "fmt,data,reason",
    [
        ("jpeg", _encoded(".jpg")[:-40], "corrupt_image"),  # truncated
        ("jpeg", b"\xff\xd8\xff" + bytes(200), "corrupt_image"),  # header garbage
        ("jpeg", b"not an image at all", "corrupt_image"),
        ("png", _encoded(".png")[:30], "corrupt_image"),  # truncated
        ("png", _png_claiming(100_000, 100_000), "bad_size"),  # refused before decoding
        ("bmp", _encoded(".bmp"), "unknown_encoding"),
        ("jpeg", b"", "short_data"),
    ],
)
def test_bad_compressed_images_are_rejected(fmt: str, data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as err:
        compressed_to_rgb(CompressedImage(format=fmt, data=data), LIMITS)
    assert err.value.reason == reason


def test_jpeg_size_is_checked_from_the_header() -> None:
    data = _encoded(".jpg", np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(InputError) as err:
        compressed_to_rgb(CompressedImage(format="jpeg", data=data), ImageLimits(32))
    assert err.value.reason == "bad_size"


def test_states_from_odometry_twist_and_speed() -> None:
    odom = Odometry()
    odom.twist.twist.linear.x, odom.twist.twist.linear.y, odom.twist.twist.angular.z = 3.0, 4.0, 0.1
    assert odometry_to_state(odom) == VehicleState(speed_mps=5.0, yaw_rate_rps=0.1)
    twist = TwistStamped()
    twist.twist.linear.x = -2.0  # reversing: speed is a magnitude
    assert twist_to_state(twist).speed_mps == 2.0
    assert speed_to_state(Float32(data=7.5)).speed_mps == 7.5


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_states_are_rejected(value: float) -> None:
    odom = Odometry()
    odom.twist.twist.angular.z = value
    with pytest.raises(InputError) as err:
        odometry_to_state(odom)
    assert err.value.reason == "nonfinite"
    with pytest.raises(InputError):
        speed_to_state(Float32(data=value))


def test_negative_speed_is_rejected() -> None:
    with pytest.raises(InputError) as err:
        speed_to_state(Float32(data=-1.0))
    assert err.value.reason == "negative_speed"


def test_stamps() -> None:
    header = Header()
    header.stamp.sec, header.stamp.nanosec = 3, 5
    assert stamp_ns(header) == 3_000_000_005


RESULT = FrameResult(
    scene=SceneResult(
        "Red light at 20 m. Car in the ego lane at 15 m.",
        (SceneObject("traffic_light", ObjectPosition.EGO_LANE, 20.0), SceneObject("car", ObjectPosition.EGO_LANE, None)),
        LightState.RED,
    ),
    action=ActionResult(Action.SLOW_DOWN, None, 0.8, "Red light at 20 m."),
    latency_ms=123.0,
    state_fresh=True,
)


def test_results_become_messages_with_the_camera_header() -> None:
    header = Header(frame_id="camera_front")
    header.stamp.sec, header.stamp.nanosec = 42, 7
    scene = scene_message(header, RESULT, VehicleState(speed_mps=9.0), "tiny")
    action = action_message(header, RESULT)
    for msg in (scene, action):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (42, 7, "camera_front")
    assert scene.traffic_light == LightState.RED and scene.ego_speed_mps == 9.0 and scene.model_id == "tiny"
    assert [o.object_class for o in scene.objects] == ["traffic_light", "car"]
    assert math.isnan(scene.objects[1].distance_m)
    assert action.action == Action.SLOW_DOWN and action.action_name == "slow_down"
    assert math.isnan(action.target_speed_mps) and action.confidence == pytest.approx(0.8)
    stale = FrameResult(RESULT.scene, RESULT.action, 1.0, state_fresh=False)
    assert math.isnan(scene_message(header, stale, VehicleState(speed_mps=9.0), "tiny").ego_speed_mps)
