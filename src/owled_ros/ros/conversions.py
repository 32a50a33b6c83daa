"""Plain data <-> ROS messages: which message type each input parameter subscribes to,
and the owled_msgs outputs. Input checking and decoding live in runtime/decode.py.
"""
from __future__ import annotations

from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32, Header

from owled_msgs.msg import ActionPrediction, SceneDescription, SceneObject
from owled_ros.schema import FrameResult, VehicleState

NAN = float("nan")
CAMERA_MSG_TYPES: dict[str, type] = {"image": Image, "compressed": CompressedImage}
STATE_MSG_TYPES: dict[str, type] = {"odometry": Odometry, "twist": TwistStamped, "speed": Float32}


# ---- results -> owled_msgs ---------------------------------------------------------------
def _or_nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def scene_message(header: Header, result: FrameResult, state: VehicleState | None, model_id: str) -> SceneDescription:
    """The camera header is carried unchanged; ego speed is NaN unless a fresh state was paired."""
    speed = state.speed_mps if (state is not None and result.state_fresh) else None
    return SceneDescription(
        header=header,
        text=result.scene.text,
        objects=[
            SceneObject(object_class=o.object_class, position=int(o.position), distance_m=_or_nan(o.distance_m))
            for o in result.scene.objects
        ],
        traffic_light=int(result.scene.traffic_light),
        vehicle_state_fresh=result.state_fresh,
        ego_speed_mps=_or_nan(speed),
        model_latency_ms=float(result.latency_ms),
        model_id=model_id,
        ood_score=_or_nan(result.ood_score),
        out_of_distribution=result.out_of_distribution,
    )


def action_message(header: Header, result: FrameResult) -> ActionPrediction:
    action = result.action
    return ActionPrediction(
        header=header,
        action=int(action.action),
        action_name=action.action.name.lower(),
        target_speed_mps=_or_nan(action.target_speed_mps),
        confidence=float(action.confidence),
        reasoning=action.reasoning,
        vehicle_state_fresh=result.state_fresh,
        model_latency_ms=float(result.latency_ms),
        ood_score=_or_nan(result.ood_score),
        out_of_distribution=result.out_of_distribution,
    )


def key_values(values: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=str(v)) for k, v in values.items()]
