"""Plain-data types shared by the data, runtime and ROS layers (the ROS layer converts them to messages)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from owled_ros.vocab import Action, LightState, ObjectPosition


@dataclass(frozen=True)
class VehicleState:
    """Ego state; each field is optional because not every stack publishes it."""

    speed_mps: float | None = None
    accel_mps2: float | None = None
    yaw_rate_rps: float | None = None

    def __post_init__(self) -> None:
        for name in ("speed_mps", "accel_mps2", "yaw_rate_rps"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"VehicleState.{name} must be finite, got {value}")


@dataclass(frozen=True)
class SceneObject:
    object_class: str
    position: ObjectPosition
    distance_m: float | None = None


@dataclass(frozen=True)
class SceneResult:
    text: str
    objects: tuple[SceneObject, ...] = ()
    traffic_light: LightState = LightState.NONE


@dataclass(frozen=True)
class ActionResult:
    action: Action
    target_speed_mps: float | None
    confidence: float
    reasoning: str


@dataclass(frozen=True)
class FrameResult:
    scene: SceneResult
    action: ActionResult
    latency_ms: float
    state_fresh: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    ood_score: float | None = None  # distance from the training frames over the threshold (model/ood.py); None: unavailable

    @property
    def out_of_distribution(self) -> bool:
        return self.ood_score is not None and self.ood_score > 1.0
