"""Input messages -> plain data, with every field checked and size-limited before use,
because a camera driver or a bag can send anything.

No ROS import: the functions read fields by name, so rclpy messages (the node) and
rosbags messages (offline bag evaluation, bag calibration) go through the same code.
Each problem raises InputError with a short `reason` (the key the node counts in
/diagnostics) and a one-line detail for the log. The check functions return the frame's
FrameShape, which the input gate (runtime/gate.py) compares with the accepted stream.

JPEG goes through simplejpeg (libjpeg-turbo) rather than OpenCV: its header read gives the
size before any pixel is decoded, and its strict mode turns libjpeg's "Corrupt JPEG data"
warnings into errors, where cv2.imdecode returns the half-grey picture of a truncated file.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import simplejpeg

from owled_ros.schema import VehicleState

NAN = float("nan")
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_JPEG_COLORSPACES = ("YCbCr", "Gray", "RGB")  # what libjpeg converts to RGB (not CMYK/YCCK)


class InputError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class FrameShape:
    """What a camera stream keeps from frame to frame: a frame that differs is not of the stream."""

    width: int
    height: int
    encoding: str  # rgb8, bgra8, ... for Image; jpeg or png for CompressedImage

    def __str__(self) -> str:
        return f"{self.width}x{self.height} {self.encoding}"


@dataclass(frozen=True)
class ImageLimits:
    max_side: int = 4096

    @property
    def max_bytes(self) -> int:
        """Largest payload accepted: a max_side square frame at 4 bytes per pixel."""
        return self.max_side * self.max_side * 4


def stamp_ns(header: Any) -> int:
    stamp = header.stamp
    if not 0 <= stamp.nanosec < 1_000_000_000:
        raise InputError("bad_stamp", f"header.stamp.nanosec {stamp.nanosec} is out of [0, 1e9)")
    if stamp.sec < 0:
        raise InputError("bad_stamp", f"header.stamp.sec {stamp.sec} is negative")
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    if not (0 < width <= limits.max_side and 0 < height <= limits.max_side):
        raise InputError("bad_size", f"image size {width}x{height} outside 1..{limits.max_side}")


def _check_payload(n: int, limits: ImageLimits) -> None:
    if n == 0:
        raise InputError("short_data", "empty image data")
    if n > limits.max_bytes:
        raise InputError("too_large", f"image data of {n} bytes exceeds {limits.max_bytes}")


# ---- sensor_msgs/Image ---------------------------------------------------------------------
def check_image(msg: Any, limits: ImageLimits) -> FrameShape:
    """sensor_msgs/Image says data holds exactly step x height bytes: shorter or longer is rejected."""
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise InputError("unknown_encoding", f"encoding {msg.encoding[:32]!r} not one of {', '.join(CHANNELS)}")
    _check_size(msg.width, msg.height, limits)
    _check_payload(len(msg.data), limits)
    if not msg.width * channels <= msg.step <= limits.max_bytes // msg.height:
        raise InputError("bad_step", f"step {msg.step} for {msg.width} px of {msg.encoding}")
    if len(msg.data) != msg.step * msg.height:
        reason = "short_data" if len(msg.data) < msg.step * msg.height else "long_data"
        raise InputError(reason, f"{len(msg.data)} bytes of data, step x height is {msg.step * msg.height}")
    return FrameShape(msg.width, msg.height, msg.encoding)


def image_to_rgb(msg: Any, limits: ImageLimits) -> np.ndarray:
    """H x W x 3 uint8 RGB; row padding (step > width * channels) is skipped."""
    check_image(msg, limits)
    channels = CHANNELS[msg.encoding]
    rows = np.frombuffer(msg.data, np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    code = _TO_RGB.get(msg.encoding)
    return np.ascontiguousarray(pixels) if code is None else cv2.cvtColor(pixels, code)


# ---- sensor_msgs/CompressedImage -----------------------------------------------------------
def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise InputError("corrupt_image", "PNG without an IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    if data.rfind(b"IEND") < 0:
        raise InputError("corrupt_image", "truncated PNG (no IEND chunk)")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from the frame header, read before any decoding (no decompression bombs)."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as err:
        raise InputError("corrupt_image", f"unreadable JPEG header ({err})") from None
    if colorspace not in _JPEG_COLORSPACES:
        raise InputError("unknown_encoding", f"{colorspace} JPEG (only {', '.join(_JPEG_COLORSPACES)} convert to RGB)")
    if data.rfind(_JPEG_EOI) < 0:
        raise InputError("corrupt_image", "truncated JPEG (no end-of-image marker)")
    return width, height


def check_compressed(msg: Any, limits: ImageLimits) -> FrameShape:
    fmt = msg.format.lower()
    if not any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise InputError("unknown_encoding", f"compressed format {msg.format[:32]!r} is not jpeg or png")
    _check_payload(len(msg.data), limits)
    data = bytes(msg.data)
    if data.startswith(_PNG_SIGNATURE):
        (width, height), kind = _png_size(data), "png"
    elif data.startswith(_JPEG_SOI):
        (width, height), kind = _jpeg_size(data), "jpeg"
    else:
        raise InputError("corrupt_image", "data is neither JPEG nor PNG")
    _check_size(width, height, limits)
    return FrameShape(width, height, kind)


def compressed_to_rgb(msg: Any, limits: ImageLimits) -> np.ndarray:
    """Decoded RGB of exactly the size the header claims; corrupt or short data is rejected."""
    shape = check_compressed(msg, limits)
    data = bytes(msg.data)
    if shape.encoding == "jpeg":
        try:
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as err:
            raise InputError("corrupt_image", f"JPEG data does not decode cleanly ({err})") from None
    else:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError("corrupt_image", "PNG data does not decode")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != (shape.height, shape.width):
        raise InputError("corrupt_image", f"decoded {rgb.shape[1]}x{rgb.shape[0]}, the header says {shape}")
    return rgb


@dataclass(frozen=True)
class CameraDecoder:
    check: Callable[[object, ImageLimits], FrameShape]  # field and header checks, no pixel read
    to_rgb: Callable[[object, ImageLimits], np.ndarray]  # checks again, then decodes


CAMERA_DECODERS = {
    "image": CameraDecoder(check_image, image_to_rgb),
    "compressed": CameraDecoder(check_compressed, compressed_to_rgb),
}
"""The node's camera_type parameter -> its decoder."""


# ---- vehicle state -------------------------------------------------------------------------
def _twist_state(twist: Any) -> VehicleState:
    lin, ang = twist.linear, twist.angular
    values = (lin.x, lin.y, lin.z, ang.x, ang.y, ang.z)
    if not all(math.isfinite(v) for v in values):
        raise InputError("nonfinite", f"twist holds NaN or inf: {values}")
    return VehicleState(speed_mps=math.sqrt(lin.x**2 + lin.y**2 + lin.z**2), yaw_rate_rps=ang.z)


def odometry_to_state(msg: Any) -> VehicleState:
    """Speed is the norm of the twist's linear velocity, so it does not depend on its frame."""
    return _twist_state(msg.twist.twist)


def twist_to_state(msg: Any) -> VehicleState:
    return _twist_state(msg.twist)


def speed_to_state(msg: Any) -> VehicleState:
    if not math.isfinite(msg.data):
        raise InputError("nonfinite", f"speed {msg.data} is not finite")
    if msg.data < 0:
        raise InputError("negative_speed", f"speed {msg.data} m/s is negative")
    return VehicleState(speed_mps=float(msg.data))


@dataclass(frozen=True)
class StateDecoder:
    to_state: Callable[[object], VehicleState]
    stamped: bool  # False: the message has no header, freshness uses receive time


STATE_DECODERS = {
    "odometry": StateDecoder(odometry_to_state, True),
    "twist": StateDecoder(twist_to_state, True),
    "speed": StateDecoder(speed_to_state, False),
}
"""The node's state_type parameter -> its decoder."""
