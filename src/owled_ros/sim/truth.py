"""The simulator's ground truth as a data/scenes.Scene, so the rule expert judges it.

The expert (data/expert.py) labels every training frame; applied to the simulator's truth it
says what the model should have answered. A vehicle is visible when it is ahead within
VISIBLE_M and at most one lane over (what the forward camera shows and the labels name);
it is slow when it drives below the expert's SLOW_LEAD_MPS (its brake lights would be on).
"""
from __future__ import annotations

from owled_ros.data.expert import SLOW_LEAD_MPS, ExpertDecision, expert_action
from owled_ros.data.scenes import ObjectGT, Scene
from owled_ros.schema import VehicleState
from owled_ros.vocab import LightState, ObjectPosition

VISIBLE_M = 80.0
MIN_CURVE_1PM = 0.002
"""Gentler than this is a straight road (the generator's curves start there: radius 500 m)."""
MIN_AHEAD_M = 2.0
LANE_POSITIONS = {-1: ObjectPosition.LEFT_LANE, 0: ObjectPosition.EGO_LANE, 1: ObjectPosition.RIGHT_LANE}


def visible_objects(truth: dict) -> tuple[ObjectGT, ...]:
    objects = []
    width = float(truth["lane_width_m"])
    for o in truth["vehicles"]:
        position = LANE_POSITIONS.get(int(o["lane_offset"]))
        if position is None or not MIN_AHEAD_M <= o["distance_m"] <= VISIBLE_M:
            continue
        objects.append(ObjectGT(
            o["class"], position, round(float(o["distance_m"]), 1), o["lane_offset"] * width, (0, 0, 0, 0),
            color="", slow=float(o["speed_mps"]) < SLOW_LEAD_MPS,
        ))
    return tuple(sorted(objects, key=lambda o: o.distance_m))


def scene_from_truth(truth: dict, seed: int = 0, index: int = 0) -> Scene:
    """MetaDrive's daylight is "clear"; the road bends as the ego lane does over the next 30 m
    (truth from an older world process without road_curvature_1pm: straight). Objects carry no
    image boxes: the simulator gives positions, not pixels."""
    curvature = float(truth.get("road_curvature_1pm", 0.0))
    return Scene(
        seed=seed, index=index, size=(0, 0), weather="clear", curvature=round(curvature, 4) if abs(curvature) >= MIN_CURVE_1PM else 0.0,
        ego=VehicleState(speed_mps=float(truth["speed_mps"])), objects=visible_objects(truth), control=None,
        light=LightState.NONE,
    )


def expert_decision(truth: dict) -> ExpertDecision:
    return expert_action(scene_from_truth(truth))


def lead_gap(truth: dict) -> tuple[float, float] | None:
    """(distance m, time gap s) to the nearest vehicle ahead in the ego lane; time gap inf when stopped."""
    ahead = [o for o in truth["vehicles"] if o["lane_offset"] == 0 and o["distance_m"] > 0]
    if not ahead:
        return None
    d = min(o["distance_m"] for o in ahead)
    v = float(truth["speed_mps"])
    return d, (d / v if v > 0.1 else float("inf"))
