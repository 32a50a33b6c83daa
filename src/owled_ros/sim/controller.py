"""Our controller: the node's ActionPrediction -> a target speed and lane -> steering and throttle.

The model says what to do (accelerate, keep speed, slow down, stop, change lane), not how to
steer, so a closed loop needs this small layer, the one a vehicle stack would own:
- target speed: the prediction's target_speed_mps when it gives one, else by action
  (stop 0, slow down SLOW_STEP_MPS below the current speed, keep the current speed,
  accelerate to the speed limit), clamped to [0, speed limit];
- lane: change_lane_left / right moves the target one lane over, if that lane exists and no
  lane change is under way; unknown actions change nothing;
- lateral: pure pursuit of the target lane's centre line, a point lookahead_m ahead (the
  world reports its bearing); a lane change is the same pursuit of the next lane's centre;
  longitudinal: throttle (negative: brake) proportional to the speed error.
Steering is positive to the left, bearings and offsets positive to the right (the world's ground truth).
A gentler first version (steering from the lateral offset and heading error) left the road in
MetaDrive's curves at 22 m/s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from owled_ros.data.expert import SPEED_LIMIT_MPS
from owled_ros.vocab import Action

SLOW_STEP_MPS = 3.0
LANE_CHANGE_DONE_M = 0.5
WHEELBASE_M = 2.47  # MetaDrive's default vehicle (front 1.05 m + rear 1.42 m)
MAX_STEER_RAD = math.radians(40.0)  # MetaDrive's steering command 1.0
MAX_STEER = 0.5
K_SPEED = 0.4  # throttle per m/s of speed error


@dataclass
class Command:
    """What the controller holds between predictions."""

    target_speed_mps: float = 0.0
    target_lane: int | None = None


@dataclass(frozen=True)
class Control:
    steer: float
    throttle: float


class Controller:
    def __init__(self, speed_limit_mps: float = SPEED_LIMIT_MPS) -> None:
        self.speed_limit_mps = speed_limit_mps
        self.command = Command()

    def reset(self, truth: dict) -> None:
        self.command = Command(0.0, int(truth["lane_index"]))

    def lane_change_active(self, truth: dict) -> bool:
        lane = self.command.target_lane
        return lane is not None and abs(truth["lane_lateral_m"][lane]) > LANE_CHANGE_DONE_M

    def apply(self, action: Action, target_speed_mps: float, truth: dict) -> Command:
        """Update the command from one prediction (target_speed_mps: NaN when the model gave none)."""
        v = float(truth["speed_mps"])
        if action is Action.UNKNOWN:
            return self.command
        by_action = {
            Action.STOP: 0.0, Action.SLOW_DOWN: v - SLOW_STEP_MPS, Action.KEEP_SPEED: v,
            Action.ACCELERATE: self.speed_limit_mps, Action.CHANGE_LANE_LEFT: v, Action.CHANGE_LANE_RIGHT: v,
        }
        target = target_speed_mps if math.isfinite(target_speed_mps) else by_action[action]
        self.command.target_speed_mps = min(max(target, 0.0), self.speed_limit_mps)
        step = {Action.CHANGE_LANE_LEFT: -1, Action.CHANGE_LANE_RIGHT: 1}.get(action, 0)
        if step and not self.lane_change_active(truth):
            lane = int(truth["lane_index"]) + step
            if 0 <= lane < int(truth["lane_count"]):
                self.command.target_lane = lane
        return self.command

    def control(self, truth: dict) -> Control:
        lane = self.command.target_lane
        bearings = truth["lane_bearing_rad"]
        if lane is None or lane >= len(bearings):  # the road changed its lane count: keep the lane we are in
            lane = self.command.target_lane = int(truth["lane_index"])
        alpha = -bearings[lane]  # positive: the target point is to the left
        steer = math.atan(2 * WHEELBASE_M * math.sin(alpha) / truth["lookahead_m"]) / MAX_STEER_RAD
        throttle = K_SPEED * (self.command.target_speed_mps - truth["speed_mps"])
        return Control(max(-MAX_STEER, min(MAX_STEER, steer)), max(-1.0, min(1.0, throttle)))
