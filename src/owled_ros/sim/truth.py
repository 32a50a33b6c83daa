"""The simulator's ground truth as a data/scenes.Scene, so the rule expert judges it.

The expert (data/expert.py) labels every training frame; applied to the simulator's truth it
says what the model should have answered. A vehicle is visible when it is ahead within
VISIBLE_M and at most one lane over (what the forward camera shows); it is slow when it drives
below the expert's SLOW_LEAD_MPS (its brake lights would be on).

The labels name the nearest vehicle in each of the three lanes, at whole metres, as generated
scenes name at most three road users at whole metres: naming every visible vehicle (up to eight
in dense traffic, at 0.1 m) wrote descriptions longer than the node's token budget, so a model
trained on them ran out of tokens before its action. The expert decides the same on the nearest
vehicle per lane as on all of them: it reads the nearest vehicle in the ego lane and whether a
neighbouring lane holds any.
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
    """The nearest visible vehicle of each lane, nearest first."""
    nearest: dict[ObjectPosition, dict] = {}
    for o in truth["vehicles"]:
        position = LANE_POSITIONS.get(int(o["lane_offset"]))
        if position is None or not MIN_AHEAD_M <= o["distance_m"] <= VISIBLE_M:
            continue
        if position not in nearest or o["distance_m"] < nearest[position]["distance_m"]:
            nearest[position] = o
    width = float(truth["lane_width_m"])
    objects = (
        ObjectGT(o["class"], position, float(round(o["distance_m"])), o["lane_offset"] * width, (0, 0, 0, 0),
                 color="", slow=float(o["speed_mps"]) < SLOW_LEAD_MPS)
        for position, o in nearest.items()
    )
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
