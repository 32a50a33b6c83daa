"""Pairing a camera frame with the latest vehicle state, and rejecting stamps that go backwards.

Freshness compares message stamps when both the frame and the state carry one; when
either stamp is zero (unstamped source, e.g. a std_msgs/Float32 speed) it compares the
monotonic receive times instead. A state is fresh when |frame - state| <= max_state_age_s.
"""
from __future__ import annotations

from dataclasses import dataclass

from owled_ros.schema import VehicleState


@dataclass(frozen=True)
class StampedState:
    state: VehicleState
    stamp_ns: int  # message stamp, 0 when the message has none
    received_ns: int  # monotonic receive time


@dataclass(frozen=True)
class Pairing:
    state: VehicleState | None
    fresh: bool
    age_s: float | None  # frame time minus state time; None when no state has arrived yet


def pair_state(latest: StampedState | None, frame_stamp_ns: int, frame_received_ns: int, max_age_s: float) -> Pairing:
    if latest is None:
        return Pairing(None, False, None)
    if frame_stamp_ns and latest.stamp_ns:
        age_s = (frame_stamp_ns - latest.stamp_ns) / 1e9
    else:
        age_s = (frame_received_ns - latest.received_ns) / 1e9
    return Pairing(latest.state, abs(age_s) <= max_age_s, age_s)


class StampGuard:
    """Rejects a stamp older than the previous one (zero stamps are not checked).

    The reference moves to the rejected stamp too, so a clock reset (bag loop, simulator
    restart) costs one message instead of every message until the old time comes back.
    """

    def __init__(self) -> None:
        self._last_ns = 0

    def accept(self, stamp_ns: int) -> bool:
        if stamp_ns == 0:
            return True
        ok = stamp_ns >= self._last_ns
        self._last_ns = stamp_ns
        return ok
