"""Out-of-distribution statistics (model/ood.py), their storage with a model, and the pipeline's flag."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.model.ood import OOD_FILE, OodStats, fit_ood, ledoit_wolf, pooled
from owled_ros.runtime.ood import apply_ood_action
from owled_ros.runtime.pipeline import DrivingPipeline, PipelineConfig
from owled_ros.runtime.stats import FrameStats
from owled_ros.schema import ActionResult, FrameResult, SceneResult
from owled_ros.vocab import Action
from test_node_support import save_tiny_model


def test_ledoit_wolf_matches_the_per_sample_definition() -> None:
    x = np.random.default_rng(0).normal(size=(30, 6)) * np.array([1, 2, 3, 0.5, 1, 4])
    mean, cov, shrinkage = ledoit_wolf(x)
    xc = x - x.mean(0)
    n, p = xc.shape
    sample = xc.T @ xc / n
    mu = np.trace(sample) / p
    d2 = ((sample - mu * np.eye(p)) ** 2).sum()
    b2 = sum(((np.outer(v, v) - sample) ** 2).sum() for v in xc) / n**2
    expect = min(b2, d2) / d2
    assert shrinkage == pytest.approx(expect, rel=1e-9) and 0 < shrinkage < 1
    np.testing.assert_allclose(cov, (1 - expect) * sample + expect * mu * np.eye(p), rtol=1e-9)
    np.testing.assert_allclose(mean, x.mean(0))


def test_threshold_separates_held_out_frames_from_shifted_ones() -> None:
    gen = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.2, 3.0, 64)
    fit, held, test = (torch.randn(n, 64, generator=gen) * scale for n in (2000, 500, 500))
    stats = fit_ood(fit, held, quantile=0.99, info={"sources": ["synthetic"]})
    inside = (stats.distance(test) / stats.threshold <= 1).float().mean().item()
    assert 0.95 <= inside <= 1.0
    shifted = test + 1.5 * scale  # 1.5 standard deviations along every axis
    assert (stats.distance(shifted) / stats.threshold > 1).all()
    assert stats.info["fit_frames"] == 2000 and stats.info["holdout_frames"] == 500 and stats.info["sources"] == ["synthetic"]
    with pytest.raises(ValueError):
        fit_ood(fit, held, quantile=1.0)


def _road_like(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Sky over grey road with noise: the 'training distribution' of the tiny model's test."""
    frames = []
    for _ in range(n):
        img = np.empty((64, 64, 3), np.float32)
        horizon = rng.integers(24, 40)
        img[:horizon] = (110, 150, 220) + rng.normal(0, 12, 3)
        img[horizon:] = (95, 95, 100) + rng.normal(0, 12, 3)
        img += rng.normal(0, 6, img.shape)
        frames.append(img.clip(0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def tiny_with_ood(tmp_path_factory: pytest.TempPathFactory):
    """The tiny model with statistics fitted on road-like frames through its own encoder."""
    vlm = load_vlm(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))
    rng = np.random.default_rng(1)
    with torch.no_grad():
        fit, held = (pooled(vlm.encode(_road_like(rng, n))) for n in (300, 100))
    vlm.ood = fit_ood(fit, held)
    return vlm


def test_statistics_travel_with_the_model_and_score_the_same(tiny_with_ood, tmp_path) -> None:
    path = save_vlm(tiny_with_ood, tmp_path / "with_ood")
    assert (path / OOD_FILE).is_file()
    loaded = load_vlm(path)
    assert loaded.ood is not None and loaded.ood.threshold == tiny_with_ood.ood.threshold
    assert loaded.ood.info == tiny_with_ood.ood.info
    tokens = loaded.encode(_road_like(np.random.default_rng(5), 4))
    torch.testing.assert_close(loaded.ood.score(tokens), tiny_with_ood.ood.score(tokens))
    again = save_vlm(loaded, tmp_path / "copy")  # what prune and deploy do: load, change, save
    assert load_vlm(again).ood.threshold == tiny_with_ood.ood.threshold


def test_a_model_without_statistics_runs_with_the_flag_unavailable(tmp_path) -> None:
    vlm = load_vlm(save_tiny_model(tmp_path / "plain"))
    assert vlm.ood is None
    result = DrivingPipeline(vlm, PipelineConfig(max_new_tokens=2, ood_action="unknown")).run(np.zeros((32, 32, 3), np.uint8), None, False)
    assert result.ood_score is None and not result.out_of_distribution


def test_unreadable_statistics_are_one_clear_error(tmp_path) -> None:
    from owled_ros.errors import OwledError

    path = save_tiny_model(tmp_path / "bad")
    (path / OOD_FILE).write_bytes(b"not safetensors")
    with pytest.raises(OwledError, match=OOD_FILE):
        load_vlm(path)


def test_pipeline_flags_unlike_frames_and_can_withhold_the_action(tiny_with_ood) -> None:
    rng = np.random.default_rng(9)
    like = _road_like(rng, 1)[0]
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    publish = DrivingPipeline(tiny_with_ood, PipelineConfig(max_new_tokens=3))
    inside, outside = publish.run(like, None, False), publish.run(noise, None, False)
    assert inside.ood_score is not None and inside.ood_score <= 1 and not inside.out_of_distribution
    assert outside.ood_score > 1 and outside.out_of_distribution
    withhold = DrivingPipeline(tiny_with_ood, PipelineConfig(max_new_tokens=3, ood_action="unknown"))
    held = withhold.run(noise, None, False)
    assert held.action.action is Action.UNKNOWN and held.action.confidence == 0.0 and held.action.target_speed_mps is None
    assert held.action.reasoning.startswith("out of distribution") and held.ood_score == pytest.approx(outside.ood_score)
    assert held.scene == outside.scene  # the description is still published, flagged
    assert withhold.run(like, None, False).action == inside.action
    with pytest.raises(ValueError, match="ood_action"):
        PipelineConfig(ood_action="drop")


def test_apply_ood_action_leaves_unscored_and_inside_frames_alone() -> None:
    base = FrameResult(SceneResult("Clear."), ActionResult(Action.ACCELERATE, 12.0, 0.9, "Lane clear."), 10.0, True)
    assert apply_ood_action(base, "unknown") is base  # no statistics: nothing to act on
    inside = FrameResult(base.scene, base.action, 10.0, True, ood_score=0.4)
    assert apply_ood_action(inside, "unknown") is inside
    outside = FrameResult(base.scene, base.action, 10.0, True, ood_score=7.5)
    assert apply_ood_action(outside, "publish") is outside
    assert "7.50" in apply_ood_action(outside, "unknown").action.reasoning


def test_frame_stats_count_out_of_distribution_frames() -> None:
    stats = FrameStats()
    assert stats.snapshot().ood_rate is None
    for flag in (None, False, True, True, False):
        stats.frame_done(1.0, 0.1, 2.0, True, flag)
    snap = stats.snapshot()
    assert snap.processed == 5 and snap.out_of_distribution == 2
    assert math.isclose(snap.ood_rate, 0.5)  # unscored frames are not in the rate
