"""Rule-based expert: the action a careful driver takes, from what is visible and the ego speed.

The labels of the generated scenes come from here, so the rules are few, explicit and
depend only on facts a model can read: distances from the image, speed from the vehicle
state. The first matching rule wins (d: distance of the cue in m, v: ego speed in m/s):

| # | condition                                                  | action            | target speed |
|---|------------------------------------------------------------|-------------------|--------------|
| 1 | stop cue with d <= stop_zone(v), or any stop cue and v <= 2 | stop              | 0            |
| 2 | vehicle in the ego lane with time gap d / v < 2 s          | slow down         | d / 2 s      |
| 3 | stop cue beyond the stop zone                              | slow down         | v / 2        |
| 4 | yellow light with d < braking_distance(v)                  | keep speed        | v            |
| 5 | slow (braking) vehicle in the ego lane, v > 8, left free   | change lane left  | v            |
| 6 | same, left lane busy, right lane free                      | change lane right | v            |
| 7 | same, both adjacent lanes busy                             | slow down         | 8            |
| 8 | any other vehicle in the ego lane                          | keep speed        | v            |
| 9 | no vehicle in the ego lane, v < limit - 2                  | accelerate        | limit        |
|10 | no vehicle in the ego lane, v > limit + 2                  | slow down         | limit        |
|11 | otherwise                                                  | keep speed        | v            |

Stop cue: a crossing pedestrian, a red light, a stop sign, or a yellow light the car can
still stop for comfortably (d >= braking_distance(v)); the nearest one counts.
braking_distance(v) = v^2 / (2 * 3 m/s^2); stop_zone(v) = 15 m + v * 1 s + braking_distance(v).
The speed limit is 25 m/s; a lane is free when no vehicle is visible in it; pedestrians and
cyclists at the roadside and green lights do not change the action.
Target speeds are rounded down to 0.5 m/s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from owled_ros.kinematics import TIME_GAP_S, braking_distance, stop_zone
from owled_ros.vocab import Action, LightState, ObjectPosition

if TYPE_CHECKING:
    from owled_ros.data.scenes import ObjectGT, Scene

SPEED_LIMIT_MPS = 25.0
LIMIT_BAND_MPS = 2.0
HOLD_SPEED_MPS = 2.0
SLOW_LEAD_MPS = 8.0
VEHICLES = ("car", "truck")


@dataclass(frozen=True)
class ExpertDecision:
    action: Action
    target_speed_mps: float
    reason: str


def _floor_half(x: float) -> float:
    return math.floor(x * 2) / 2


def _stop_cue(scene: Scene, v: float) -> tuple[float, str] | None:
    """Nearest (distance, name) of the things the ego vehicle must stop for."""
    cues = [(o.distance_m, "pedestrian crossing") for o in scene.objects if o.crossing]
    if scene.control is not None:
        d = scene.control.distance_m
        if scene.control.object_class == "stop_sign":
            cues.append((d, "stop sign"))
        elif scene.light is LightState.RED:
            cues.append((d, "red light"))
        elif scene.light is LightState.YELLOW and d >= braking_distance(v):
            cues.append((d, "yellow light"))
    return min(cues) if cues else None


def _lane_busy(scene: Scene, position: ObjectPosition) -> bool:
    return any(o.object_class in VEHICLES and o.position is position for o in scene.objects)


def lead_vehicle(scene: Scene) -> ObjectGT | None:
    """Nearest car or truck in the ego lane."""
    ahead = [o for o in scene.objects if o.object_class in VEHICLES and o.position is ObjectPosition.EGO_LANE]
    return min(ahead, key=lambda o: o.distance_m) if ahead else None


def expert_action(scene: Scene) -> ExpertDecision:
    """The action, target speed and a one-line reason, by the rule table above."""
    v = float(scene.ego.speed_mps or 0.0)
    cue = _stop_cue(scene, v)
    lead = lead_vehicle(scene)
    if cue is not None and (cue[0] <= stop_zone(v) or v <= HOLD_SPEED_MPS):
        d, name = cue
        return ExpertDecision(Action.STOP, 0.0, f"{name.capitalize()} at {d:g} m.")
    if lead is not None and v > 0 and lead.distance_m / v < TIME_GAP_S:
        d = lead.distance_m
        return ExpertDecision(
            Action.SLOW_DOWN, _floor_half(d / TIME_GAP_S), f"{lead.object_class.capitalize()} ahead at {d:g} m is too close at {v:g} m/s."
        )
    if cue is not None:
        return ExpertDecision(Action.SLOW_DOWN, _floor_half(v / 2), f"Approaching {cue[1]} at {cue[0]:g} m.")
    if scene.control is not None and scene.light is LightState.YELLOW:
        d = scene.control.distance_m
        return ExpertDecision(Action.KEEP_SPEED, v, f"Yellow light at {d:g} m is too close to stop at {v:g} m/s.")
    if lead is not None and lead.slow and v > SLOW_LEAD_MPS:
        what = f"Slow {lead.object_class} ahead at {lead.distance_m:g} m"
        if not _lane_busy(scene, ObjectPosition.LEFT_LANE):
            return ExpertDecision(Action.CHANGE_LANE_LEFT, v, f"{what}, left lane free.")
        if not _lane_busy(scene, ObjectPosition.RIGHT_LANE):
            return ExpertDecision(Action.CHANGE_LANE_RIGHT, v, f"{what}, right lane free.")
        return ExpertDecision(Action.SLOW_DOWN, SLOW_LEAD_MPS, f"{what}, both lanes busy.")
    if lead is not None:
        return ExpertDecision(Action.KEEP_SPEED, v, f"Following {lead.object_class} at {lead.distance_m:g} m at a safe gap.")
    if v < SPEED_LIMIT_MPS - LIMIT_BAND_MPS:
        return ExpertDecision(Action.ACCELERATE, SPEED_LIMIT_MPS, f"Lane clear, {v:g} m/s is below the {SPEED_LIMIT_MPS:g} m/s limit.")
    if v > SPEED_LIMIT_MPS + LIMIT_BAND_MPS:
        return ExpertDecision(Action.SLOW_DOWN, SPEED_LIMIT_MPS, f"Lane clear, {v:g} m/s is above the {SPEED_LIMIT_MPS:g} m/s limit.")
    return ExpertDecision(Action.KEEP_SPEED, v, "Lane clear, at the speed limit.")
