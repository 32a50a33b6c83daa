"""owled_node's parameters: declared in one table, validated once at start-up.

A bad value stops the node with one clear line instead of failing later in a callback.
Parameters are read-only: the node must be restarted to change them. Numbers are declared
with dynamic typing so that `max_rate_hz: 10` (an int in YAML) is accepted for a float.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidTopicNameException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.validate_full_topic_name import validate_full_topic_name

from owled_ros.deploy.config import BACKENDS
from owled_ros.model import PRECISIONS
from owled_ros.runtime.gate import GateConfig
from owled_ros.runtime.ood import OOD_ACTIONS

CAMERA_TYPE_NAMES = ("image", "compressed")
STATE_TYPE_NAMES = ("odometry", "twist", "speed")
MAX_NEW_TOKENS_LIMIT = 256
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")


class ParamError(ValueError):
    """A parameter with a bad value; the message names it and says what is allowed."""


@dataclass(frozen=True)
class NodeParams:
    model: str
    precision: str
    backend: str
    device: str
    autostart: bool
    camera_topic: str
    camera_type: str
    state_topic: str
    state_type: str
    max_state_age_s: float
    state_wait_s: float
    max_future_stamp_s: float
    max_speed_mps: float
    max_rate_hz: float
    max_new_tokens: int
    prompt: str
    scene_topic: str
    action_topic: str
    diagnostics_period_s: float
    camera_timeout_s: float
    max_image_side: int
    ood_action: str
    ood_warn_rate: float


def _model(value: str) -> str | None:
    if value == "default" or Path(value).expanduser().is_dir():
        return None
    return "must be 'default' or an existing model directory"


def _device(value: str) -> str | None:
    """Only the form here (torch is not loaded yet); a CUDA device that is absent fails when the model loads."""
    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) else "must be auto, cpu, cuda or cuda:N"


def _topic(value: str) -> str | None:
    """Checked as rcl expands it (a stand-in node name for ~), so `bad//topic` fails here and not at activation."""
    try:
        validate_full_topic_name(expand_topic_name(value, "node", "/"))
    except (InvalidTopicNameException, ValueError) as err:
        return f"is not a valid topic name ({str(err).splitlines()[0].split(', at /')[0]})"
    return None


def _one_of(*allowed: str) -> Callable[[str], str | None]:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


def _positive(value: float) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a finite number > 0"


def _fraction(value: float) -> str | None:
    return None if math.isfinite(value) and 0 < value <= 1 else "must be in (0, 1]"


def _not_negative(value: float) -> str | None:
    return None if math.isfinite(value) and value >= 0 else "must be a finite number >= 0"


def _in_range(low: int, high: int) -> Callable[[int], str | None]:
    return lambda value: None if low <= value <= high else f"must be in {low}..{high}"


def _any(_: object) -> str | None:
    return None


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: str | bool | int | float
    description: str
    check: Callable = _any


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "default", "model directory (owled or LLaVA), or 'default' for the bundled model", _model),
    ParamSpec("precision", "auto", "auto (as the model directory holds it: int8 after owled deploy) or fp32 (an int8 directory de-quantized); int8 refuses fp32 directories", _one_of(*PRECISIONS)),
    ParamSpec("backend", "deployed", "deployed (the runtime owled deploy chose for the directory; torch for one never deployed), or torch, onnxruntime, openvino (one it kept)", _one_of("deployed", *BACKENDS)),
    ParamSpec("device", "auto", "auto (a CUDA GPU where torch sees one, else the CPU), cpu, cuda or cuda:N; on CUDA the model runs on torch in fp16, an int8 directory de-quantized", _device),
    ParamSpec("autostart", True, "configure and activate at start-up; false waits for lifecycle transitions"),
    ParamSpec("camera_topic", "/camera/image_raw", "camera input topic", _topic),
    ParamSpec("camera_type", "image", "image (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)", _one_of(*CAMERA_TYPE_NAMES)),
    ParamSpec("state_topic", "/odom", "vehicle state input topic", _topic),
    ParamSpec("state_type", "odometry", "odometry (nav_msgs/Odometry), twist (geometry_msgs/TwistStamped) or speed (std_msgs/Float32)", _one_of(*STATE_TYPE_NAMES)),
    ParamSpec("max_state_age_s", 0.5, "a state further than this from the frame's time is stale", _positive),
    ParamSpec("state_wait_s", 0.05, "longest wait for a vehicle state stamped at or after the frame before pairing it with the nearest one", _not_negative),
    ParamSpec("max_future_stamp_s", 1.0, "a frame or state stamped further than this ahead of the node's clock is rejected (stamp_future)", _positive),
    ParamSpec("max_speed_mps", 100.0, "a vehicle state faster than this is rejected (state_implausible_speed)", _positive),
    ParamSpec("max_rate_hz", 10.0, "upper bound on inferences per second", _positive),
    ParamSpec("max_new_tokens", 64, f"longest answer in tokens (1..{MAX_NEW_TOKENS_LIMIT})", _in_range(1, MAX_NEW_TOKENS_LIMIT)),
    ParamSpec("prompt", "", "question asked per frame; empty: the model's standard frame question"),
    ParamSpec("scene_topic", "owled/scene", "owled_msgs/SceneDescription output topic", _topic),
    ParamSpec("action_topic", "owled/action", "owled_msgs/ActionPrediction output topic", _topic),
    ParamSpec("diagnostics_period_s", 1.0, "period of diagnostic_msgs/DiagnosticArray on /diagnostics", _positive),
    ParamSpec("camera_timeout_s", 2.0, "warn when no camera frame arrived for this long while active", _positive),
    ParamSpec("max_image_side", 4096, "largest accepted image width or height in pixels", _in_range(16, 16384)),
    ParamSpec("ood_action", "publish", "for a frame out of the model's training distribution: publish (flagged) or unknown (ACTION_UNKNOWN with the reason)", _one_of(*OOD_ACTIONS)),
    ParamSpec("ood_warn_rate", 0.2, "/diagnostics warns when more than this share of the latest frames is out of distribution", _fraction),
)
PARAMETER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PARAMETERS)


def _typed(spec: ParamSpec, value: object) -> str | bool | int | float:
    """The value in the spec's type; int is accepted for float, nothing else converts."""
    want = type(spec.default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not want:
        raise ParamError(f"parameter {spec.name}: expected {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def _unknown_overrides(node: Node) -> list[str]:
    """Names given to this node (params file, -p) that it does not declare: usually typos.

    rclpy has no public accessor for the overrides, hence the attribute read.
    """
    overrides = getattr(node, "_parameter_overrides", {})
    known = set(PARAMETER_NAMES) | set(BUILTIN_PARAMETERS)
    return sorted(n for n in overrides if n not in known and not n.startswith("qos_overrides."))


def declare_parameters(node: Node) -> NodeParams:
    """Declare every parameter and return the validated values; ParamError on the first bad one."""
    unknown = _unknown_overrides(node)
    if unknown:
        raise ParamError(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMETER_NAMES)})")
    values = {}
    for spec in PARAMETERS:
        descriptor = ParameterDescriptor(description=spec.description, read_only=True, dynamic_typing=True)
        value = _typed(spec, node.declare_parameter(spec.name, spec.default, descriptor).value)
        problem = spec.check(value)
        if problem:
            raise ParamError(f"parameter {spec.name}={value!r} {problem}")
        values[spec.name] = value
    return NodeParams(**values)


def gate_config(params: NodeParams) -> GateConfig:
    """The input gate's settings from the node's parameters (a stream lock lasts camera_timeout_s)."""
    return GateConfig(
        camera_type=params.camera_type, state_type=params.state_type, max_image_side=params.max_image_side,
        max_state_age_s=params.max_state_age_s, state_wait_s=params.state_wait_s, max_future_stamp_s=params.max_future_stamp_s,
        max_speed_mps=params.max_speed_mps, stream_timeout_s=params.camera_timeout_s,
    )
