"""The input gate without DDS: nearest-stamp pairing, stream references that only accepted
messages move, corrupt and lying images, implausible states, replay of a bag's messages."""
from __future__ import annotations

import struct
import threading
import time
from collections import Counter

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Float32

from owled_ros.runtime.decode import InputError
from owled_ros.runtime.gate import GateConfig, InputGate, replay
from test_node_support import image_msg, odometry_msg, stamp

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S  # a wall-clock-like time, so "now" can sit right after the stamps


def _gate(**kw) -> InputGate:
    return InputGate(GateConfig(**kw))


def _reason(call) -> str:
    with pytest.raises(InputError) as err:
        call()
    return err.value.reason


# ---- nearest-stamp pairing --------------------------------------------------------------------
def test_each_frame_takes_the_state_nearest_its_stamp_whatever_the_arrival_order() -> None:
    """States at 20 Hz and frames at 10 Hz, both with stamp jitter and random delivery delays;
    every frame's speed must be the one of the state whose stamp is nearest its own."""
    rng = np.random.default_rng(3)
    states = [(T0 + k * 50 * MS + int(rng.integers(-5, 6)) * MS, float(k)) for k in range(80)]
    frames = [T0 + 120 * MS + j * 100 * MS + int(rng.integers(-20, 21)) * MS for j in range(35)]
    arrivals = [(False, s + int(rng.integers(1, 30)) * MS, odometry_msg(s, v)) for s, v in states]
    arrivals += [(True, f + int(rng.integers(1, 30)) * MS, image_msg(f)) for f in frames]
    arrivals.sort(key=lambda a: a[1])
    rejected: Counter = Counter()
    out = list(replay(arrivals, _gate(state_wait_s=0.05), rejected))
    assert not rejected and [f.stamp_ns for f, _ in out] == frames
    for frame, pairing in out:
        nearest = min(states, key=lambda s: (abs(frame.stamp_ns - s[0]), s[0]))
        assert pairing.state.speed_mps == nearest[1] and pairing.fresh
        assert pairing.age_s == pytest.approx((frame.stamp_ns - nearest[0]) / S)


def test_a_frame_waits_for_a_later_state_but_not_longer_than_state_wait_s() -> None:
    gate = _gate(state_wait_s=0.5)
    gate.state(odometry_msg(T0 - 50 * MS, 1.0), 0, T0)
    frame = gate.frame(image_msg(T0), time.monotonic_ns(), T0)
    later = threading.Timer(0.1, gate.state, args=(odometry_msg(T0 + 10 * MS, 2.0), 0, T0))
    later.start()
    started = time.monotonic()
    pairing = gate.wait_and_pair(frame)
    assert pairing.state.speed_mps == 2.0 and pairing.age_s == pytest.approx(-0.01)
    assert time.monotonic() - started < 0.45  # woken by the state, not by the deadline

    alone = _gate(state_wait_s=0.2)
    alone.state(odometry_msg(T0 - 50 * MS, 1.0), 0, T0)
    frame = alone.frame(image_msg(T0), time.monotonic_ns(), T0)
    started = time.monotonic()
    assert alone.wait_and_pair(frame).state.speed_mps == 1.0
    assert 0.15 < time.monotonic() - started < 2.0


def test_stale_and_missing_states() -> None:
    gate = _gate(state_wait_s=0.0, max_state_age_s=0.5)
    frame = gate.frame(image_msg(T0), 0, T0)
    assert gate.pair(frame).state is None and not gate.pair(frame).fresh
    gate.state(odometry_msg(T0 + 1 * S, 3.0), 0, T0 + S)
    stale = gate.pair(frame)
    assert stale.state.speed_mps == 3.0 and not stale.fresh and stale.age_s == pytest.approx(-1.0)


def test_unstamped_speed_pairs_by_receive_time() -> None:
    gate = _gate(state_type="speed", state_wait_s=0.0)
    gate.state(Float32(data=4.0), 100 * MS, 0)
    gate.state(Float32(data=5.0), 400 * MS, 0)
    frame = gate.frame(image_msg(T0), 150 * MS, 0)
    assert gate.pair(frame).state.speed_mps == 4.0 and gate.pair(frame).fresh


# ---- stream references: only accepted messages move them ---------------------------------------
def _far_future(msg):
    msg.header.stamp.sec, msg.header.stamp.nanosec = 2**31 - 1, 0
    return msg


def test_a_far_future_stamp_is_rejected_and_does_not_poison_the_stream() -> None:
    gate = _gate()
    gate.frame(image_msg(T0), 0, T0)
    assert _reason(lambda: gate.frame(_far_future(image_msg(T0)), 1, T0)) == "stamp_future"
    garbage = _far_future(image_msg(T0))
    garbage.encoding = "yuv422"
    assert _reason(lambda: gate.frame(garbage, 2, 0)) == "unknown_encoding"  # no clock yet: only the fields
    gate.frame(image_msg(T0 + 100 * MS), 3, T0 + 100 * MS)  # accepted: the reference did not move
    assert _reason(lambda: gate.frame(image_msg(T0 + 50 * MS), 4, T0 + 100 * MS)) == "stamp_backwards"
    gate.frame(image_msg(T0 + 200 * MS), 5, T0 + 200 * MS)  # nor did the backwards frame move it


def test_states_follow_the_same_stamp_rules_and_plausibility_bounds() -> None:
    gate = _gate(max_speed_mps=100.0)
    gate.state(odometry_msg(T0, 5.0), 0, T0)
    assert _reason(lambda: gate.state(_far_future(odometry_msg(T0, 5.0)), 1, T0)) == "state_stamp_future"
    assert _reason(lambda: gate.state(odometry_msg(T0 + MS, 1e9), 2, T0)) == "state_implausible_speed"
    assert _reason(lambda: gate.state(odometry_msg(T0 + MS, float("nan")), 3, T0)) == "state_nonfinite"
    assert _reason(lambda: gate.state(odometry_msg(T0 - S, 5.0), 4, T0)) == "state_stamp_backwards"
    gate.state(odometry_msg(T0 + 2 * MS, 99.0), 5, T0)
    frame = gate.frame(image_msg(T0 + 2 * MS), 6, T0)
    assert gate.pair(frame).state.speed_mps == 99.0


def test_clock_jumping_back_releases_the_references() -> None:
    gate = _gate(state_wait_s=0.0)
    gate.state(odometry_msg(T0 + 10 * S, 8.0), 0, T0 + 10 * S)
    gate.frame(image_msg(T0 + 10 * S), 0, T0 + 10 * S)
    assert _reason(lambda: gate.frame(image_msg(T0), 1, T0 + 10 * S)) == "stamp_backwards"
    frame = gate.frame(image_msg(T0), 2, T0)  # bag looped with /clock: the clock went back 10 s
    assert gate.clock_resets == 1 and gate.pair(frame).state is None  # the old states are gone too


def test_a_frame_of_another_shape_is_rejected_until_the_stream_times_out() -> None:
    gate = _gate(stream_timeout_s=1.0)
    gate.frame(image_msg(T0, 64, 48), 0, T0)
    assert _reason(lambda: gate.frame(image_msg(T0 + MS, 32, 48), S // 2, T0)) == "shape_changed"
    assert _reason(lambda: gate.frame(image_msg(T0 + MS, 64, 48, "bgr8"), S // 2, T0)) == "shape_changed"
    gate.frame(image_msg(T0 + 2 * MS, 64, 48), S // 2, T0)
    gate.frame(image_msg(T0 + 3 * MS, 32, 48), 2 * S, T0)  # 1.5 s without a 64x48 frame: a new stream


def test_data_longer_than_step_times_height_is_rejected() -> None:
    msg = image_msg(T0)
    msg.data = bytes(msg.data) + b"\x00" * 1000
    assert _reason(lambda: _gate().frame(msg, 0, T0)) == "long_data"


# ---- corrupt images are rejected, not answered ----------------------------------------------------
def _jpeg(width: int = 320, height: int = 240) -> bytes:
    pixels = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) edited to another size."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


def _compressed(data: bytes, stamp_ns: int = T0) -> CompressedImage:
    msg = CompressedImage(format="jpeg", data=data)
    msg.header.stamp = stamp(stamp_ns)
    return msg


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_claiming(_jpeg(), 4096, 4096)[: len(_jpeg()) // 2] + b"\xff\xd9", id="lying-header-truncated"),
        pytest.param(_jpeg()[: len(_jpeg()) // 2] + b"\xff\xd9", id="truncated-with-end-marker"),
        pytest.param(_claiming(_jpeg(), 640, 480), id="lying-header"),
    ],
)
def test_corrupt_jpeg_is_rejected_and_the_stream_goes_on(data: bytes) -> None:
    gate = _gate(camera_type="compressed")
    assert _reason(lambda: gate.frame(_compressed(data), 0, T0)) == "corrupt_image"
    assert gate.frame(_compressed(_jpeg()), 1, T0).rgb.shape == (240, 320, 3)


def test_replay_counts_rejections_by_reason() -> None:
    messages = [
        (False, T0, odometry_msg(T0, 2.0)),
        (True, T0, image_msg(T0)),
        (True, T0 + 1, _far_future(image_msg(T0))),
        (False, T0 + 2, odometry_msg(T0 + 2, 1e9)),
        (True, T0 + 3, image_msg(T0 - S)),
        (True, T0 + 100 * MS, image_msg(T0 + 100 * MS)),
    ]
    rejected: Counter = Counter()
    out = list(replay(messages, _gate(), rejected))
    assert [f.stamp_ns for f, _ in out] == [T0, T0 + 100 * MS]
    assert all(p.state.speed_mps == 2.0 for _, p in out)
    assert rejected == {"stamp_future": 1, "state_implausible_speed": 1, "stamp_backwards": 1}
