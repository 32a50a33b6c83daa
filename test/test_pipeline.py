"""DrivingPipeline and the runtime helpers, in-process and without ROS."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.vlm import Generation
from owled_ros.runtime.answer import action_confidence, parse_answer
from owled_ros.runtime.mailbox import LatestMailbox
from owled_ros.runtime.pipeline import DrivingPipeline, PipelineConfig, load_pipeline, model_id, rule_target_speed
from owled_ros.runtime.stats import FrameStats
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action, LightState
from test_node_support import save_tiny_model


def _generation(pieces: list[tuple[str, float]]) -> Generation:
    return Generation("".join(t for t, _ in pieces).strip(), tuple(t for t, _ in pieces), tuple(p for _, p in pieces))


ANSWER = [
    ("Red", 0.9), (" light", 0.9), (" at", 0.9), (" 20", 0.9), (" m", 0.9), (".", 0.9),
    (" Action", 0.9), (":", 0.9), (" slow", 0.5), (" down", 0.8), (".", 0.9),
    (" Approaching", 0.9), (" red", 0.9), (" light", 0.9), (" at", 0.9), (" 20", 0.9), (" m", 0.9), (".", 0.9),
]


def test_answer_is_split_on_the_action_marker() -> None:
    parsed = parse_answer(_generation(ANSWER))
    assert parsed.description == "Red light at 20 m."
    assert parsed.action is Action.SLOW_DOWN
    assert parsed.reasoning == "Approaching red light at 20 m."
    assert parsed.stated_target_mps is None
    assert parsed.confidence == pytest.approx(0.5 * 0.8)  # only the tokens of "slow down"


def test_stated_target_speed_wins_and_decimals_do_not_end_the_action() -> None:
    gen = _generation([("Clear road.", 1.0), (" Action:", 1.0), (" accelerate", 0.7), (", target 12.5 m/s.", 1.0), (" Lane clear.", 1.0)])
    parsed = parse_answer(gen)
    assert parsed.action is Action.ACCELERATE and parsed.stated_target_mps == 12.5
    assert parsed.reasoning == "Lane clear." and parsed.confidence == pytest.approx(0.7)


def test_no_marker_means_unknown_action() -> None:
    gen = _generation([("A stop sign far away.", 0.9)])
    parsed = parse_answer(gen)
    assert parsed.action is Action.UNKNOWN and parsed.confidence == 0.0
    assert parsed.description == "A stop sign far away." and parsed.reasoning == ""
    assert action_confidence(_generation([(" Action:", 1.0), (" fly", 0.3)])) == 0.0


@pytest.mark.parametrize(
    "action,speed,target",
    [
        (Action.STOP, None, 0.0),
        (Action.STOP, 10.0, 0.0),
        (Action.SLOW_DOWN, 10.0, 7.0),
        (Action.KEEP_SPEED, 10.0, 10.0),
        (Action.ACCELERATE, 10.0, 12.0),
        (Action.CHANGE_LANE_LEFT, 10.0, 10.0),
        (Action.SLOW_DOWN, None, None),
        (Action.UNKNOWN, 10.0, None),
    ],
)
def test_rule_target_speed(action: Action, speed: float | None, target: float | None) -> None:
    assert rule_target_speed(action, speed) == (pytest.approx(target) if target is not None else None)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory):
    return load_vlm(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def test_pipeline_runs_the_model_and_times_it(tiny_vlm) -> None:
    pipeline = DrivingPipeline(tiny_vlm, PipelineConfig(max_new_tokens=4))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    result = pipeline.run(image, VehicleState(speed_mps=5.0), True)
    assert set(result.timings_ms) == {"encode", "generate"}
    assert all(v > 0 for v in result.timings_ms.values())
    assert result.latency_ms >= sum(result.timings_ms.values()) * 0.999
    assert result.state_fresh and 0.0 <= result.action.confidence <= 1.0
    assert pipeline.model_id == "tiny-test (untrained)"
    with pytest.raises(ValueError):
        pipeline.run(image[..., 0], None, False)


def test_a_stale_state_is_not_shown_to_the_model(tiny_vlm, monkeypatch) -> None:
    pipeline = DrivingPipeline(tiny_vlm, PipelineConfig(max_new_tokens=2, question="What now?"))
    seen = []
    answer = Generation("Clear. Action: slow down. Nothing ahead.", (), ())

    def fake_generate(images, states, questions, max_new_tokens):
        seen.append((states[0], questions[0], max_new_tokens))
        return [answer]

    monkeypatch.setattr(tiny_vlm, "generate", fake_generate)
    image = np.zeros((8, 8, 3), np.uint8)
    stale = pipeline.run(image, VehicleState(speed_mps=10.0), False)
    fresh = pipeline.run(image, VehicleState(speed_mps=10.0), True)
    assert seen == [(None, "What now?", 2), (VehicleState(speed_mps=10.0), "What now?", 2)]
    assert stale.action.target_speed_mps is None and not stale.state_fresh
    assert fresh.action.target_speed_mps == pytest.approx(7.0)
    assert fresh.scene.traffic_light is LightState.NONE and fresh.scene.text == "Clear."


def test_load_pipeline_reports_the_pruning_in_the_model_id(tmp_path) -> None:
    path = save_tiny_model(tmp_path / "tiny")
    (path / "prune_report.json").write_text(json.dumps({"method": "wanda", "ratios": "owl", "achieved_sparsity": {"overall": 0.5}}))
    pipeline = load_pipeline(path, PipelineConfig(max_new_tokens=1))
    assert pipeline.model_id == "tiny-test (wanda/owl 50% sparse, untrained)"
    (path / "prune_report.json").write_text("{}")
    assert model_id(pipeline.vlm, path) == "tiny-test (unreadable prune_report.json, untrained)"


def test_pipeline_config_is_validated() -> None:
    with pytest.raises(ValueError):
        PipelineConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        PipelineConfig(question="  ")


def test_mailbox_keeps_only_the_newest() -> None:
    box: LatestMailbox[int] = LatestMailbox()
    assert box.take(timeout=0.01) is None
    assert [box.put(i) for i in range(5)] == [False, True, True, True, True]
    assert box.take(timeout=0.01) == 4 and box.take(timeout=0.01) is None
    box.put(7)
    assert box.clear() and not box.clear()


def test_mailbox_wakes_a_waiting_taker() -> None:
    box: LatestMailbox[str] = LatestMailbox()
    threading.Timer(0.05, box.put, args=("frame",)).start()
    start = time.monotonic()
    assert box.take(timeout=5.0) == "frame"
    assert time.monotonic() - start < 2.0


def test_stats_percentiles_and_counts() -> None:
    stats = FrameStats()
    assert stats.snapshot().latency_ms is None
    for i in range(1, 101):
        stats.frame_done(float(i), 1.0, 2.0 * i, state_fresh=i % 2 == 0)
    stats.add("received", 120)
    stats.add("dropped", 20)
    stats.reject("bad_size")
    snap = stats.snapshot()
    assert (snap.received, snap.processed, snap.dropped, snap.stale_state) == (120, 100, 20, 50)
    assert snap.latency_ms == pytest.approx((50.5, 95.05)) and snap.rejected == {"bad_size": 1}
