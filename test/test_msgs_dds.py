"""Both owled_msgs messages travel between two real processes over confined DDS."""
from __future__ import annotations

import math
import time

import rclpy
from rclpy.node import Node

from owled_ros.vocab import Action, LightState, ObjectPosition

from ros_helpers import start_python

PUBLISHER = r"""
import time, rclpy
from owled_msgs.msg import ActionPrediction, SceneDescription, SceneObject
rclpy.init()
node = rclpy.create_node("owled_test_pub")
pub_s = node.create_publisher(SceneDescription, "/test/scene", 10)
pub_a = node.create_publisher(ActionPrediction, "/test/action", 10)
deadline = time.time() + 30
while time.time() < deadline:
    s = SceneDescription()
    s.header.stamp.sec, s.header.stamp.nanosec, s.header.frame_id = 42, 7, "camera_front"
    s.text = "Red light ahead. Car in the ego lane at 15 m."
    s.objects = [SceneObject(object_class="car", position=SceneObject.POSITION_EGO_LANE, distance_m=15.0)]
    s.traffic_light = SceneDescription.LIGHT_RED
    s.vehicle_state_fresh = True
    s.ego_speed_mps = float("nan")
    a = ActionPrediction()
    a.header = s.header
    a.action, a.action_name, a.target_speed_mps, a.confidence = ActionPrediction.ACTION_STOP, "stop", 0.0, 0.9
    pub_s.publish(s); pub_a.publish(a)
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def test_vocab_matches_message_constants() -> None:
    from owled_msgs.msg import ActionPrediction, SceneDescription, SceneObject

    for action in Action:
        assert getattr(ActionPrediction, f"ACTION_{action.name}") == action.value
    for light in LightState:
        assert getattr(SceneDescription, f"LIGHT_{light.name}") == light.value
    for pos in ObjectPosition:
        assert getattr(SceneObject, f"POSITION_{pos.name}") == pos.value


def test_messages_between_processes() -> None:
    from owled_msgs.msg import ActionPrediction, SceneDescription

    proc = start_python(PUBLISHER)
    rclpy.init()
    got: dict[str, object] = {}
    try:
        node = Node("owled_test_sub")
        node.create_subscription(SceneDescription, "/test/scene", lambda m: got.setdefault("scene", m), 10)
        node.create_subscription(ActionPrediction, "/test/action", lambda m: got.setdefault("action", m), 10)
        deadline = time.time() + 25
        while time.time() < deadline and len(got) < 2:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        proc.kill()
        proc.wait()
    assert set(got) == {"scene", "action"}, f"received only {set(got)}"
    scene, action = got["scene"], got["action"]
    assert (scene.header.stamp.sec, scene.header.stamp.nanosec, scene.header.frame_id) == (42, 7, "camera_front")
    assert scene.objects[0].object_class == "car" and scene.objects[0].distance_m == 15.0
    assert scene.traffic_light == SceneDescription.LIGHT_RED and math.isnan(scene.ego_speed_mps)
    assert action.action == ActionPrediction.ACTION_STOP and action.header.frame_id == "camera_front"
