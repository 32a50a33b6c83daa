"""Nearest-stamp pairing of a camera frame with the vehicle state.

The accepted states of the last few seconds wait in a time-ordered buffer; a frame takes
the one nearest its own time, before or after it (message_filters' ApproximateTime, for
one frame against a buffered stream). Times are message stamps when both the frame and the
state carry one; when either stamp is zero (an unstamped source such as a std_msgs/Float32
speed) they are the receive times. The pairing is fresh when |frame - state| <= max_state_age_s.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from owled_ros.schema import VehicleState

RETENTION_NS = 10_000_000_000
"""States older than this (by receive time) than the newest one leave the buffer: a frame
is paired at most one inference plus state_wait_s after it arrived."""
MAX_STATES = 2048
"""Hard bound on the buffer, whatever the state rate (100 Hz odometry keeps 1,000)."""


@dataclass(frozen=True)
class StampedState:
    state: VehicleState
    stamp_ns: int  # message stamp, 0 when the message has none
    received_ns: int  # receive time: monotonic in the node, log time in a bag


@dataclass(frozen=True)
class Pairing:
    state: VehicleState | None
    fresh: bool
    age_s: float | None  # frame time minus state time; None when no state has arrived yet


def _times(entry: StampedState, frame_stamp_ns: int, frame_received_ns: int) -> tuple[int, int]:
    """(frame time, state time): the stamps when both have one, else the receive times."""
    if frame_stamp_ns and entry.stamp_ns:
        return frame_stamp_ns, entry.stamp_ns
    return frame_received_ns, entry.received_ns


class StateBuffer:
    """Accepted states in arrival order (the input gate admits only non-decreasing stamps)."""

    def __init__(self) -> None:
        self._states: deque[StampedState] = deque(maxlen=MAX_STATES)

    def __len__(self) -> int:
        return len(self._states)

    def add(self, entry: StampedState) -> None:
        self._states.append(entry)
        while entry.received_ns - self._states[0].received_ns > RETENTION_NS:
            self._states.popleft()

    def clear(self) -> None:
        self._states.clear()

    def covers(self, frame_stamp_ns: int, frame_received_ns: int) -> bool:
        """True when a state at or after the frame's time is in: later states can only be further away."""
        if not self._states:
            return False
        frame_t, state_t = _times(self._states[-1], frame_stamp_ns, frame_received_ns)
        return state_t >= frame_t

    def pair(self, frame_stamp_ns: int, frame_received_ns: int, max_age_s: float) -> Pairing:
        """The state nearest the frame's time; on a tie the earlier one, which is there whatever the later one's delay."""
        best: tuple[int, int] | None = None  # (|frame - state|, index)
        for i, entry in enumerate(self._states):
            frame_t, state_t = _times(entry, frame_stamp_ns, frame_received_ns)
            gap = abs(frame_t - state_t)
            if best is None or gap < best[0]:
                best = (gap, i)
        if best is None:
            return Pairing(None, False, None)
        entry = self._states[best[1]]
        frame_t, state_t = _times(entry, frame_stamp_ns, frame_received_ns)
        age_s = (frame_t - state_t) / 1e9
        return Pairing(entry.state, abs(age_s) <= max_age_s, age_s)
