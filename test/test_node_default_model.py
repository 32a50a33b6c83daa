"""owled_node with the bundled default model (untrained projector: the plumbing, not the answers),
fed 1280x720 frames at 30 Hz: outputs keep the camera header, surplus frames are dropped."""
from __future__ import annotations

import time

import pytest
import rclpy

from test_node_support import Harness, NodeProcess, image_msg, odometry_msg, stamp, stamp_key

STREAM_HZ = 30.0


@pytest.mark.slow
def test_default_model_at_camera_rate(tmp_path) -> None:
    node = NodeProcess(tmp_path / "owled_node.log", {"model": "default", "max_new_tokens": 8, "diagnostics_period_s": 1.0})
    rclpy.init()
    harness = Harness()
    try:
        harness.wait_for_node(node, timeout=180)
        frame = image_msg(time.time_ns(), width=1280, height=720)
        published_at: dict[tuple[int, int, str], float] = {}

        def publish() -> None:
            now = time.time_ns()
            frame.header.stamp = stamp(now)
            harness.state.publish(odometry_msg(now, 10.0))
            harness.camera.publish(frame)
            published_at[stamp_key(frame.header)] = time.monotonic()

        ok = harness.spin_until(lambda: len(harness.actions) >= 1, 120, every=publish, period=1 / STREAM_HZ)
        assert ok, node.log()
        last = stamp_key(frame.header)
        assert harness.spin_until(lambda: any(stamp_key(m.header) == last for _, m in harness.actions), 60)
        arrived = next(t for t, m in harness.actions if stamp_key(m.header) == last)
        slowest_s = max(m.model_latency_ms for _, m in harness.actions) / 1e3
        assert arrived - published_at[last] <= 2 * slowest_s + 1.0
        for _, msg in harness.scenes + harness.actions:
            assert stamp_key(msg.header) in published_at
        scene = harness.scenes[-1][1]
        assert scene.model_id == "owled-default" and scene.vehicle_state_fresh
        values = harness.wait_diag("frames_processed", len(harness.actions))
        assert int(values["frames_dropped"]) > 0 and int(values["frames_processed"]) < int(values["frames_received"])
    finally:
        harness.close()
        rclpy.shutdown()
        code, seconds = node.interrupt(timeout=30)
        node.close()
    assert code == 0 and seconds < 15, (code, seconds)


@pytest.mark.slow
def test_structured_default_model_answers_through_the_node(tmp_path) -> None:
    """Channel-pruned (smaller matrices, per-layer widths in its config), the model loads in the
    node and answers a camera frame with its header kept."""
    from owled_ros.cli import main
    from owled_ros.model.checkpoint import load_vlm

    pruned = tmp_path / "channels20"
    assert main(["prune", "--model", "default", "--structure", "channels", "--sparsity", "0.2",
                 "--calib", "scenes", "--calib-samples", "4", "--out", str(pruned)]) == 0
    dense_mlp = load_vlm("default").lm.model.layers[0].mlp.up_proj.weight.shape[0]
    pruned_mlps = [layer.mlp.up_proj.weight.shape[0] for layer in load_vlm(pruned).lm.model.layers]
    assert sum(pruned_mlps) < dense_mlp * len(pruned_mlps)  # physically smaller, not zeroed
    node = NodeProcess(tmp_path / "owled_node.log", {"model": str(pruned), "max_new_tokens": 8})
    rclpy.init()
    harness = Harness()
    try:
        harness.wait_for_node(node, timeout=300)
        now = time.time_ns()
        harness.state.publish(odometry_msg(now, 10.0))
        frame = image_msg(now, width=640, height=360, frame_id="structured")
        harness.camera.publish(frame)
        assert harness.spin_until(lambda: len(harness.scenes) >= 1, 300, every=lambda: harness.camera.publish(frame), period=2.0), node.log()
        scene = harness.scenes[0][1]
        assert scene.header.frame_id == "structured" and stamp_key(scene.header) == stamp_key(frame.header)
        assert scene.vehicle_state_fresh and scene.text
    finally:
        harness.close()
        rclpy.shutdown()
        code, _ = node.interrupt(timeout=30)
        node.close()
    assert code == 0, node.log()
