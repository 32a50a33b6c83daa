"""owled_node with a model that carries OOD statistics: the flag in both messages, ood_action, /diagnostics.

The statistics are built so that every frame is out of distribution (centre far from any
frame, threshold tiny): this checks the wiring over real DDS; test_ood.py checks the maths.
"""
from __future__ import annotations

import time

import pytest
import rclpy
import torch

from owled_ros.model.ood import OodStats
from owled_ros.vocab import Action
from test_node_support import Harness, NodeProcess, image_msg, odometry_msg, save_tiny_model


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    from owled_ros.model.checkpoint import load_vlm, save_vlm

    vlm = load_vlm(save_tiny_model(tmp_path_factory.mktemp("model") / "plain"))
    dim = vlm.encoder.out_dim
    vlm.ood = OodStats(torch.full((dim,), 100.0), torch.eye(dim), 1e-3, {"sources": ["test"]})
    model = save_vlm(vlm, tmp_path_factory.mktemp("model") / "with_ood")
    proc = NodeProcess(
        tmp_path_factory.mktemp("log") / "owled_node.log",
        {"model": model, "max_new_tokens": 4, "max_rate_hz": 4.0, "diagnostics_period_s": 0.5,
         "ood_action": "unknown", "ood_warn_rate": 0.5},
    )
    yield proc
    proc.close()


def test_out_of_distribution_frames_are_flagged_withheld_and_counted(node) -> None:
    rclpy.init()
    harness = Harness()
    try:
        harness.wait_for_node(node)

        def publish() -> None:
            now = time.time_ns()
            harness.state.publish(odometry_msg(now, 8.0))
            harness.camera.publish(image_msg(now))

        ok = harness.spin_until(lambda: len(harness.scenes) >= 2 and len(harness.actions) >= 2, 60, every=publish)
        assert ok, f"no outputs:\n{node.log()}"
        for _, scene in harness.scenes:
            assert scene.out_of_distribution and scene.ood_score > 1
        for _, action in harness.actions:
            assert action.out_of_distribution and action.ood_score > 1
            assert action.action == int(Action.UNKNOWN) and action.confidence == 0.0
            assert action.reasoning.startswith("out of distribution")
        values = harness.wait_diag("frames_out_of_distribution", 2)
        assert values["ood_available"] == "True" and float(values["ood_rate"]) == 1.0
        assert "out of distribution" in values["_message"]
    finally:
        harness.close()
        rclpy.shutdown()
