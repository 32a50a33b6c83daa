"""Calibrated action confidence (runtime/confidence.py): the fit, the error measure and the pipeline's use."""
from __future__ import annotations

import numpy as np
import pytest

from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.vlm import Generation
from owled_ros.runtime.confidence import META_KEY, ConfidenceCalibration, expected_calibration_error, fit_platt
from owled_ros.runtime.pipeline import DrivingPipeline, PipelineConfig
from owled_ros.vocab import Action
from test_node_support import save_tiny_model


def test_platt_fit_recovers_the_true_mapping_and_lowers_the_error() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.5, 0.9999, 20000)  # an over-confident model
    truth = ConfidenceCalibration(0.4, -0.3)
    correct = rng.random(raw.size) < np.array([truth.apply(c) for c in raw])
    fitted = fit_platt(raw, correct)
    assert fitted.a == pytest.approx(0.4, abs=0.05) and fitted.b == pytest.approx(-0.3, abs=0.1)
    calibrated = np.array([fitted.apply(c) for c in raw])
    assert expected_calibration_error(calibrated, correct) < 0.02 < expected_calibration_error(raw, correct)


def test_expected_calibration_error_by_hand() -> None:
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.15, 0.15])
    correct = np.array([1, 1, 1, 0, 0, 0])
    # bin 9: 4/6 of frames, accuracy 0.75 vs 0.95; bin 1: 2/6, accuracy 0 vs 0.15
    assert expected_calibration_error(conf, correct) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.15)


def test_pipeline_publishes_the_calibrated_confidence(tmp_path, monkeypatch) -> None:
    vlm = load_vlm(save_tiny_model(tmp_path / "tiny"))
    answer = Generation("Clear. Action: keep speed. Lane clear.", ("Clear.", " Action:", " keep", " speed", "."), (1.0, 1.0, 0.9, 0.9, 1.0))
    monkeypatch.setattr(vlm, "generate", lambda *a, **k: [answer])
    image = np.zeros((16, 16, 3), np.uint8)
    raw = DrivingPipeline(vlm, PipelineConfig()).run(image, None, False).action
    assert raw.action is Action.KEEP_SPEED and raw.confidence == pytest.approx(0.81)
    vlm.meta[META_KEY] = {"a": 0.5, "b": 0.0, "method": "platt"}
    calibrated = DrivingPipeline(vlm, PipelineConfig()).run(image, None, False).action
    assert calibrated.confidence == pytest.approx(ConfidenceCalibration(0.5, 0.0).apply(0.81))
    assert 0.5 < calibrated.confidence < raw.confidence  # a = 0.5 pulls it toward 1/2
