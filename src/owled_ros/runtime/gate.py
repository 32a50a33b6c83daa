"""The input gate: every camera frame and vehicle state passes here before the model sees it.

Shared by owled_node (ros/node.py) and offline bag evaluation (eval/bag_eval.py), so a bag
scored offline meets the same checks, decoding and pairing as the node. No ROS import:
messages are read by field name, rclpy and rosbags messages alike (runtime/decode.py).

A frame is accepted when it passes, in order: a valid stamp; a stamp not further than
max_future_stamp_s ahead of the clock; the field and header checks of its type; the stream
checks (not stamped before the last accepted frame, same FrameShape as the accepted stream);
a clean decode. Only then does it move the stream's references, so one bad message cannot
poison the messages after it. A state is accepted on the same stamp rules plus finite values
and |speed| <= max_speed_mps, and joins a short buffer; each frame takes the state nearest its
stamp (runtime/pairing.py), waiting at most state_wait_s for a state stamped at or after it.

The stream references are released when nothing was accepted for stream_timeout_s (a camera
restarted at another size, a bag looped without /clock), and at once when the clock jumps
back by more than CLOCK_JUMP_NS (a bag looped with /clock, a simulator restart).

Threads: `frame` and `state` are called from one thread (the node's executor);
`wait_and_pair` from another (the inference worker). Offline, `replay` drives the same gate
over a bag's messages.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from owled_ros.runtime.decode import CAMERA_DECODERS, STATE_DECODERS, FrameShape, ImageLimits, InputError, stamp_ns
from owled_ros.runtime.pairing import Pairing, StampedState, StateBuffer

CLOCK_JUMP_NS = 1_000_000_000
STATE_PREFIX = "state_"
"""Rejection reasons of vehicle states start with this (state_nonfinite); frames' have no prefix."""


@dataclass(frozen=True)
class GateConfig:
    camera_type: str = "image"  # a key of decode.CAMERA_DECODERS
    state_type: str | None = "odometry"  # a key of decode.STATE_DECODERS; None: no vehicle state
    max_image_side: int = 4096
    max_state_age_s: float = 0.5
    state_wait_s: float = 0.05
    max_future_stamp_s: float = 1.0
    max_speed_mps: float = 100.0
    stream_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.camera_type not in CAMERA_DECODERS:
            raise ValueError(f"camera_type must be one of {', '.join(CAMERA_DECODERS)}, got {self.camera_type!r}")
        if self.state_type is not None and self.state_type not in STATE_DECODERS:
            raise ValueError(f"state_type must be one of {', '.join(STATE_DECODERS)}, got {self.state_type!r}")
        for name in ("max_state_age_s", "max_future_stamp_s", "max_speed_mps", "stream_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not self.state_wait_s >= 0:
            raise ValueError("state_wait_s must be >= 0")


@dataclass(frozen=True)
class GatedFrame:
    """An accepted camera frame, decoded."""

    rgb: np.ndarray  # H x W x 3 uint8
    stamp_ns: int
    received_ns: int
    header: Any  # the message's header, to be carried unchanged to the outputs


class _StreamLock:
    """The newest accepted stamp (and frame shape) of one input stream."""

    def __init__(self, what: str, timeout_ns: int) -> None:
        self.what, self.timeout_ns = what, timeout_ns
        self.release()

    def release(self) -> None:
        self.stamp_ns, self.shape, self.accepted_ns = 0, None, None

    def check(self, stamp: int, received_ns: int, shape: FrameShape | None = None) -> None:
        if self.accepted_ns is not None and received_ns - self.accepted_ns > self.timeout_ns:
            self.release()
        if stamp and stamp < self.stamp_ns:
            raise InputError("stamp_backwards", f"{self.what} stamp {stamp} ns is older than the last accepted one ({self.stamp_ns} ns)")
        if shape is not None and self.shape is not None and shape != self.shape:
            raise InputError("shape_changed", f"{self.what} is {shape}, the accepted stream is {self.shape}")

    def commit(self, stamp: int, received_ns: int, shape: FrameShape | None = None) -> None:
        self.stamp_ns = max(self.stamp_ns, stamp)
        self.shape, self.accepted_ns = shape, received_ns


class InputGate:
    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._camera = CAMERA_DECODERS[config.camera_type]
        self._state_type = STATE_DECODERS[config.state_type] if config.state_type else None
        self._limits = ImageLimits(config.max_image_side)
        timeout_ns = int(config.stream_timeout_s * 1e9)
        self._frames, self._states = _StreamLock("frame", timeout_ns), _StreamLock("state", timeout_ns)
        self._buffer = StateBuffer()
        self._cond = threading.Condition()
        self._last_now_ns = 0
        self.clock_resets = 0
        """Times the clock jumped back and the references were released."""

    @property
    def states_buffered(self) -> int:
        """States waiting for frames to pair with (bounded by pairing.RETENTION_NS and MAX_STATES)."""
        with self._cond:
            return len(self._buffer)

    def reset(self) -> None:
        """Forget the streams and the buffered states (the node does so on activation)."""
        with self._cond:
            self._frames.release()
            self._states.release()
            self._buffer.clear()

    def _check_clock(self, stamp: int, now_ns: int, what: str) -> None:
        """now_ns: the clock the stamps follow (ROS time, sim or system); 0 when it has not started."""
        if now_ns + CLOCK_JUMP_NS < self._last_now_ns:
            self.clock_resets += 1
            self.reset()
        self._last_now_ns = now_ns
        ahead_s = (stamp - now_ns) / 1e9
        if stamp and now_ns and ahead_s > self.config.max_future_stamp_s:
            raise InputError("stamp_future", f"{what} stamp is {ahead_s:.3g} s ahead of the clock (max_future_stamp_s {self.config.max_future_stamp_s:g})")

    def frame(self, msg: Any, received_ns: int, now_ns: int) -> GatedFrame:
        """The decoded frame, or InputError with the reason; only an accepted frame moves the stream."""
        stamp = stamp_ns(msg.header)
        self._check_clock(stamp, now_ns, "frame")
        shape = self._camera.check(msg, self._limits)
        self._frames.check(stamp, received_ns, shape)
        rgb = self._camera.to_rgb(msg, self._limits)
        self._frames.commit(stamp, received_ns, shape)
        return GatedFrame(rgb, stamp, received_ns, msg.header)

    def state(self, msg: Any, received_ns: int, now_ns: int) -> StampedState:
        """The accepted state, now in the pairing buffer; InputError with the reason (state_...) otherwise."""
        if self._state_type is None:
            raise ValueError("this gate was configured without a vehicle state (state_type None)")
        try:
            stamp = stamp_ns(msg.header) if self._state_type.stamped else 0
            self._check_clock(stamp, now_ns, "state")
            state = self._state_type.to_state(msg)
            if not abs(state.speed_mps) <= self.config.max_speed_mps:
                raise InputError("implausible_speed", f"speed {state.speed_mps:.6g} m/s exceeds max_speed_mps {self.config.max_speed_mps:g}")
            self._states.check(stamp, received_ns)
        except InputError as err:  # one counter namespace for frames and states
            raise InputError(STATE_PREFIX + err.reason, str(err)) from None
        entry = StampedState(state, stamp, received_ns)
        with self._cond:
            self._states.commit(stamp, received_ns)
            self._buffer.add(entry)
            self._cond.notify_all()
        return entry

    def state_ready(self, frame: GatedFrame, now_ns: int) -> bool:
        """Pair now? Yes once a state at or after the frame is in, or state_wait_s after the frame arrived."""
        if self._state_type is None:
            return True
        with self._cond:
            covered = self._buffer.covers(frame.stamp_ns, frame.received_ns)
        return covered or now_ns - frame.received_ns >= self.config.state_wait_s * 1e9

    def pair(self, frame: GatedFrame) -> Pairing:
        with self._cond:
            return self._buffer.pair(frame.stamp_ns, frame.received_ns, self.config.max_state_age_s)

    def wait_and_pair(self, frame: GatedFrame, clock: Callable[[], int] = time.monotonic_ns) -> Pairing:
        """`pair` once `state_ready`, waiting at most state_wait_s after the frame's receive time on `clock`."""
        deadline_ns = frame.received_ns + int(self.config.state_wait_s * 1e9)
        with self._cond:
            while not self.state_ready(frame, clock()):
                self._cond.wait(max(0.0, (deadline_ns - clock()) / 1e9))
            return self._buffer.pair(frame.stamp_ns, frame.received_ns, self.config.max_state_age_s)


def replay(messages: Iterable[tuple[bool, int, Any]], gate: InputGate, rejected: Counter | None = None) -> Iterator[tuple[GatedFrame, Pairing]]:
    """Offline, in log order: (is_camera, log_ns, msg) -> every accepted frame with its pairing.

    The bag's log time stands for both the receive time and the clock (it is the /clock that
    `owled bag play` publishes). A frame is paired as soon as a state at or after it is in,
    or once the log time passes state_wait_s after it, as the node's worker does; rejections
    are counted by reason in `rejected`.
    """
    pending: deque[GatedFrame] = deque()

    def ready(now_ns: int) -> Iterator[tuple[GatedFrame, Pairing]]:
        while pending and gate.state_ready(pending[0], now_ns):
            frame = pending.popleft()
            yield frame, gate.pair(frame)

    for is_camera, log_ns, msg in messages:
        yield from ready(log_ns)  # frames whose wait ran out before this message
        try:
            if is_camera:
                pending.append(gate.frame(msg, log_ns, log_ns))
            else:
                gate.state(msg, log_ns, log_ns)
        except InputError as err:
            if rejected is not None:
                rejected[err.reason] += 1
        yield from ready(log_ns)
    for frame in pending:
        yield frame, gate.pair(frame)
