"""owled_node with config/carla.yaml: carla-ros-bridge topic names, bgra8 frames, simulation time."""
from __future__ import annotations

import rclpy
from rosgraph_msgs.msg import Clock

from test_node_support import ROOT_CONFIG, Harness, NodeProcess, image_msg, odometry_msg, save_tiny_model, stamp, stamp_key

SIM_START_NS = 100 * 1_000_000_000
TICK_NS = 50_000_000  # CARLA fixed_delta_seconds 0.05


def test_carla_topics_bgra8_and_sim_time(tmp_path) -> None:
    model = save_tiny_model(tmp_path / "tiny")
    node = NodeProcess(
        tmp_path / "owled_node.log",
        {"model": model, "max_new_tokens": 4, "diagnostics_period_s": 0.5},
        params_file=ROOT_CONFIG / "carla.yaml",
    )
    rclpy.init()
    harness = Harness(camera_topic="/carla/ego_vehicle/rgb_front/image", state_topic="/carla/ego_vehicle/odometry")
    clock = harness.node.create_publisher(Clock, "/clock", 10)
    sim = {"now": SIM_START_NS}
    sent: set[tuple[int, int, str]] = set()

    def tick() -> None:
        sim["now"] += TICK_NS
        clock.publish(Clock(clock=stamp(sim["now"])))
        harness.state.publish(odometry_msg(sim["now"], 12.0, frame_id="map"))
        frame = image_msg(sim["now"], width=800, height=600, encoding="bgra8", frame_id="ego_vehicle/rgb_front")
        sent.add(stamp_key(frame.header))
        harness.camera.publish(frame)

    try:
        harness.wait_for_node(node)
        ok = harness.spin_until(lambda: len(harness.scenes) >= 2 and len(harness.actions) >= 2, 60, every=tick, period=0.1)
        assert ok, node.log()
        for _, msg in harness.scenes + harness.actions:
            assert stamp_key(msg.header) in sent
            assert msg.header.frame_id == "ego_vehicle/rgb_front"
        scene = harness.scenes[-1][1]
        assert scene.vehicle_state_fresh and abs(scene.ego_speed_mps - 12.0) < 1e-4
        harness.spin_until(lambda: len(harness.diagnostics) > 0, 10, every=tick, period=0.1)
        diag_stamp = harness.diagnostics[-1][1].header.stamp
        assert SIM_START_NS <= diag_stamp.sec * 1_000_000_000 + diag_stamp.nanosec <= sim["now"], "diagnostics not on sim time"
        assert harness.diag_values()["frames_rejected"] == "0"
    finally:
        harness.close()
        rclpy.shutdown()
        code, _ = node.interrupt()
        node.close()
    assert code == 0
    assert "/carla/ego_vehicle/rgb_front/image (image) + /carla/ego_vehicle/odometry (odometry)" in node.log()
