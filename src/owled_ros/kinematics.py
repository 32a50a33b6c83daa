"""Distances the ego speed implies, shared by the rule-based expert (data/) and the prompt (model/).

Why a module of its own: the prompt's speed cues must be the very numbers the expert's rules
compare, and a model may not import the data layer (docs/design.md).
"""
from __future__ import annotations

COMFORT_DECEL_MPS2 = 3.0
REACTION_S = 1.0
STOP_MARGIN_M = 15.0
TIME_GAP_S = 2.0


def braking_distance(speed_mps: float) -> float:
    return speed_mps**2 / (2 * COMFORT_DECEL_MPS2)


def stop_zone(speed_mps: float) -> float:
    """Distance inside which a stop cue means braking now rather than approaching."""
    return STOP_MARGIN_M + speed_mps * REACTION_S + braking_distance(speed_mps)
