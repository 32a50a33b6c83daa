"""A model slower than the camera: the newest frame wins, surplus frames are dropped, no backlog forms.
The node runs in a namespace with a remapped camera topic, as owled.launch.py starts it."""
from __future__ import annotations

import time

import rclpy

from test_node_support import ROOT_CONFIG, Harness, NodeProcess, image_msg, save_tiny_model, stamp, stamp_key

STREAM_HZ = 100.0
STREAM_S = 6.0


def test_slow_model_drops_frames_without_backlog(tmp_path) -> None:
    model = save_tiny_model(tmp_path / "tiny")
    # 64 answer tokens: about 0.08 s a frame for the tiny model, 8 camera frames per answer.
    # Also what owled.launch.py does: owled.yaml, a namespace and a remapped camera topic.
    node = NodeProcess(
        tmp_path / "owled_node.log",
        {"model": model, "max_new_tokens": 64, "max_rate_hz": 1000.0, "diagnostics_period_s": 0.5},
        params_file=ROOT_CONFIG / "owled.yaml",
        ros_args=("-r", "__ns:=/robot1", "-r", "/camera/image_raw:=/front/image"),
    )
    rclpy.init()
    harness = Harness(camera_topic="/front/image", output_prefix="/robot1/owled")
    try:
        harness.wait_for_node(node)
        frame = image_msg(time.time_ns(), width=320, height=240)
        published_at: dict[tuple[int, int, str], float] = {}
        start = time.monotonic()
        while time.monotonic() - start < STREAM_S:
            frame.header.stamp = stamp(time.time_ns())
            harness.camera.publish(frame)
            published_at[stamp_key(frame.header)] = time.monotonic()
            harness.spin_for(1 / STREAM_HZ)
        last = stamp_key(frame.header)
        ok = harness.spin_until(lambda: any(stamp_key(m.header) == last for _, m in harness.actions), 60)
        assert ok, f"the last frame was never processed:\n{node.log()}"
        arrived = next(t for t, m in harness.actions if stamp_key(m.header) == last)
        slowest_s = max(m.model_latency_ms for _, m in harness.actions) / 1e3
        # The last frame waits for at most the inference in flight, then runs: two inferences, not a queue.
        assert arrived - published_at[last] <= 2 * slowest_s + 1.0, (arrived - published_at[last], slowest_s)
        assert all(stamp_key(m.header) in published_at for _, m in harness.actions)
        values = harness.wait_diag("frames_processed", len(harness.actions))
        sent = len(published_at)
        assert int(values["frames_received"]) >= 0.9 * sent, (values, sent)
        assert int(values["frames_dropped"]) > 0
        # One frame per inference, never a queue: no more answers than inferences fit in the stream.
        fastest_s = min(m.model_latency_ms for _, m in harness.actions) / 1e3
        assert fastest_s > 2 / STREAM_HZ, fastest_s  # else this test shows nothing about dropping
        assert int(values["frames_processed"]) <= STREAM_S / fastest_s + 2, (values, fastest_s)
        assert int(values["frames_processed"]) < int(values["frames_received"]) / 2, values
    finally:
        harness.close()
        rclpy.shutdown()
        code, _ = node.interrupt()
        node.close()
    assert code == 0
    assert "active: /front/image (image) + /odom (odometry) -> /robot1/owled/scene, /robot1/owled/action" in node.log()
