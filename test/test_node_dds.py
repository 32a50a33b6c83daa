"""owled_node in its own process, fed and observed over (confined) DDS by this process.

One node (a tiny model) serves the tests of this module in order; the last one stops it
with SIGINT.
"""
from __future__ import annotations

import time

import pytest
import rclpy

from owled_ros.vocab import Action
from test_node_support import Harness, NodeProcess, image_msg, is_nan, odometry_msg, save_tiny_model, stamp_key

MAX_RATE_HZ = 4.0
CAMERA_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def node(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    proc = NodeProcess(
        tmp_path_factory.mktemp("log") / "owled_node.log",
        {
            "model": tiny_model, "max_new_tokens": 8, "max_rate_hz": MAX_RATE_HZ, "max_state_age_s": 0.5,
            "diagnostics_period_s": 0.5, "camera_timeout_s": CAMERA_TIMEOUT_S,
        },
    )
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def harness(node):
    rclpy.init()
    h = Harness()
    h.wait_for_node(node)
    yield h
    h.close()
    rclpy.shutdown()


def test_outputs_carry_the_camera_header_and_fresh_state(node, harness: Harness) -> None:
    sent: set[tuple[int, int, str]] = set()

    def publish() -> None:
        now = time.time_ns()
        harness.state.publish(odometry_msg(now, 8.0))
        frame = image_msg(now)
        sent.add(stamp_key(frame.header))
        harness.camera.publish(frame)

    ok = harness.spin_until(lambda: len(harness.scenes) >= 2 and len(harness.actions) >= 2, 60, every=publish)
    assert ok, f"no outputs:\n{node.log()}"
    scene_keys = {stamp_key(m.header) for _, m in harness.scenes}
    action_keys = {stamp_key(m.header) for _, m in harness.actions}
    assert scene_keys <= sent and action_keys <= sent
    assert scene_keys & action_keys, "no frame got both outputs"
    scene, action = harness.scenes[-1][1], harness.actions[-1][1]
    assert scene.header.frame_id == "camera_front"
    assert scene.vehicle_state_fresh and action.vehicle_state_fresh
    assert scene.ego_speed_mps == pytest.approx(8.0)
    assert scene.model_id == "tiny-test (untrained)"
    assert scene.model_latency_ms > 0 and action.model_latency_ms > 0
    assert 0.0 <= action.confidence <= 1.0
    assert action.action_name == Action(action.action).name.lower()


def test_stale_state_is_flagged(harness: Harness) -> None:
    harness.spin_for(1.0)  # no odometry from now on: the last one becomes older than max_state_age_s
    stale_before = float(harness.diag_values().get("frames_with_stale_state", "0"))
    sent: set[tuple[int, int, str]] = set()

    def publish() -> None:
        frame = image_msg(time.time_ns(), frame_id="stale")
        sent.add(stamp_key(frame.header))
        harness.camera.publish(frame)

    def got_stale() -> bool:
        return any(stamp_key(m.header) in sent for _, m in harness.scenes) and any(stamp_key(m.header) in sent for _, m in harness.actions)

    assert harness.spin_until(got_stale, 30, every=publish, period=0.3)
    scene = next(m for _, m in reversed(harness.scenes) if stamp_key(m.header) in sent)
    action = next(m for _, m in reversed(harness.actions) if stamp_key(m.header) in sent)
    assert not scene.vehicle_state_fresh and not action.vehicle_state_fresh
    assert is_nan(scene.ego_speed_mps)
    values = harness.wait_diag("frames_with_stale_state", stale_before + 1)
    assert values["state_fresh"] == "False"


def test_rate_is_capped_and_surplus_frames_dropped(harness: Harness) -> None:
    harness.spin_for(1.0)
    before = harness.diag_values()
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        harness.camera.publish(image_msg(time.time_ns()))
        sent += 1
        harness.spin_for(1 / 30)
    seconds = time.monotonic() - start
    harness.wait_diag("frames_received", int(before["frames_received"]) + sent * 0.9)
    harness.spin_for(1.5)  # the frame left in the mailbox finishes
    after = harness.diag_values()
    processed = int(after["frames_processed"]) - int(before["frames_processed"])
    dropped = int(after["frames_dropped"]) - int(before["frames_dropped"])
    assert 1 <= processed <= seconds * MAX_RATE_HZ + 3, (processed, seconds)
    assert dropped > sent / 2


def test_missing_camera_is_reported(node, harness: Harness) -> None:
    harness.spin_until(lambda: "no camera frame" in harness.diag_values().get("_message", ""), CAMERA_TIMEOUT_S + 10)
    values = harness.diag_values()
    assert "no camera frame" in values["_message"] and values["_level"] == "1", values
    assert int(values["camera_timeouts"]) >= 1
    assert "no camera frame on /camera/image_raw" in node.log()


def test_sigint_exits_cleanly(node) -> None:
    code, seconds = node.interrupt()
    log = node.log()
    assert code == 0, log
    assert seconds < 10, f"took {seconds:.1f} s to exit"
    assert "Traceback" not in log, log
