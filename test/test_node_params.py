"""Parameter validation at start-up: a bad value stops owled_node with one clear line and a non-zero exit."""
from __future__ import annotations

import subprocess

import pytest
import rclpy

from owled_ros.ros.params import PARAMETER_NAMES, PARAMETERS, declare_parameters
from test_node_support import OWLED_NODE, ROOT_CONFIG
from ros_helpers import ros_env

BAD_VALUES = [
    ("max_rate_hz:=0.0", "parameter max_rate_hz=0.0 must be a finite number > 0"),
    ("max_state_age_s:=-1.0", "parameter max_state_age_s=-1.0 must be a finite number > 0"),
    ("camera_type:=raw", "parameter camera_type='raw' must be one of image, compressed"),
    ("state_type:=imu", "parameter state_type='imu' must be one of odometry, twist, speed"),
    ("max_new_tokens:=1000", "parameter max_new_tokens=1000 must be in 1..256"),
    ("max_new_tokens:=many", "parameter max_new_tokens: expected int, got str 'many'"),
    ("model:=/no/such/model", "parameter model='/no/such/model' must be 'default' or an existing model directory"),
    ("state_topic:=two words", "parameter state_topic='two words' is not a valid topic name"),
    ("camera_topic:=bad//topic", "parameter camera_topic='bad//topic' is not a valid topic name (Invalid topic name: topic name must not contain repeated '/'"),
    ("state_wait_s:=-0.1", "parameter state_wait_s=-0.1 must be a finite number >= 0"),
    ("max_speed_mps:=0.0", "parameter max_speed_mps=0.0 must be a finite number > 0"),
    ("backend:=tensorrt", "parameter backend='tensorrt' must be one of deployed, torch, onnxruntime, openvino"),
    ("device:=gpu", "parameter device='gpu' must be auto, cpu, cuda or cuda:N"),
    ("max_rate:=5.0", "unknown parameter(s) max_rate"),
]


def test_a_bad_value_stops_the_entry_point_with_one_clear_line() -> None:
    proc = subprocess.run(
        [str(OWLED_NODE), "--ros-args", "-p", "max_rate_hz:=0.0"], env=ros_env(), capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.strip().count("\n") == 0 and "invalid configuration: parameter max_rate_hz=0.0 must be a finite number > 0" in out, out


@pytest.mark.parametrize("arg,expected", BAD_VALUES)
def test_bad_values_are_refused_at_start_up(arg: str, expected: str, capfd) -> None:
    from owled_ros.ros.node import main

    assert main(["owled_node", "--ros-args", "-p", arg]) == 2
    err = capfd.readouterr().err
    assert expected in err and "Traceback" not in err, err


def test_a_directory_that_is_not_a_model_fails_autostart(tmp_path, capfd) -> None:
    from owled_ros.ros.node import main

    assert main(["owled_node", "--ros-args", "-p", f"model:={tmp_path}"]) == 1
    err = capfd.readouterr().err
    assert f"cannot load model '{tmp_path}'" in err and "not an owled model directory" in err, err


@pytest.fixture
def ros_context():
    yield lambda args: rclpy.init(args=["owled_node", "--ros-args", *args])
    rclpy.try_shutdown()


def test_config_files_and_int_for_float_are_accepted(ros_context) -> None:
    from owled_ros.ros.node import OwledNode

    ros_context(["--params-file", str(ROOT_CONFIG / "owled.yaml"), "--params-file", str(ROOT_CONFIG / "carla.yaml"), "-p", "max_rate_hz:=5"])
    node = OwledNode()
    try:
        assert node.params.max_rate_hz == 5.0 and isinstance(node.params.max_rate_hz, float)
        assert node.params.camera_topic == "/carla/ego_vehicle/rgb_front/image"
        assert node.get_parameter("use_sim_time").value is True
        assert not node.set_parameters([rclpy.parameter.Parameter("max_rate_hz", value=1.0)])[0].successful  # read-only
    finally:
        node.destroy_node()


def test_defaults_in_the_table_pass_their_own_checks(ros_context) -> None:
    ros_context([])
    node = rclpy.create_node("owled_node")
    try:
        params = declare_parameters(node)
    finally:
        node.destroy_node()
    assert tuple(vars(params)) == PARAMETER_NAMES
    assert {spec.name: spec.default for spec in PARAMETERS} == vars(params)

