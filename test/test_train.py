"""`owled train` checkpoints and resumes exactly, and exports a model that loads."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene
from owled_ros.data.targets import frame_answer
from owled_ros.errors import OwledError
from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.model.prompt import state_text
from owled_ros.schema import VehicleState
from owled_ros.train.config import EncoderTrainConfig, TrainConfig
from owled_ros.train.trainer import sample_batch, train
from tiny_models import save_tiny_vlm


def test_speed_resample_relabels_the_same_image() -> None:
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(40)]
    plain = sample_batch(scenes, TrainConfig(batch=64), random.Random(7))
    assert all(e.scene is scenes[e.index] for e in plain)  # share 0: the scenes as generated
    redrawn = sample_batch(scenes, TrainConfig(batch=64, speed_resample=1.0, frame_share=1.0), random.Random(7))
    moved = [e for e in redrawn if e.scene.ego.speed_mps != scenes[e.index].ego.speed_mps]
    assert len(moved) > 40
    assert any(e.scene.expert.action is not scenes[e.index].expert.action for e in moved)
    for e in moved[:5]:
        original = scenes[e.index]
        assert e.answer == frame_answer(e.scene) and e.scene.objects == original.objects
        assert e.scene.ego.yaw_rate_rps == e.scene.ego.speed_mps * original.curvature
        assert np.array_equal(render_scene(e.scene), render_scene(original))  # features stay valid


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = dict(scenes=8, batch=2, checkpoint_every=1, threads=0, lora_rank=2)
    train(tmp_path / "straight", tmp_path / "w1", TrainConfig(steps=3, **cfg), resume=False, command="test")
    train(tmp_path / "resumed", tmp_path / "w2", TrainConfig(steps=2, **cfg), resume=False, command="test")
    train(tmp_path / "resumed", tmp_path / "w2", TrainConfig(steps=3, **cfg), resume=True, command="test")
    for name in ("projector.safetensors", "lora.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6), k
    vlm = load_vlm(tmp_path / "resumed")
    assert vlm.meta["trained"] and vlm.meta["train"]["steps"] == 3


def test_prompt_cues_are_the_speeds_distances_and_travel_with_the_model(tmp_path: Path) -> None:
    # 14 m/s: 2 s gap 28 m; stop zone 15 + 14 + 14^2 / 6 = 61.7 m; braking 14^2 / 6 = 32.7 m
    assert state_text(VehicleState(14.0, None, None), cues=True) == "Speed 14 m/s. Gap 28 m, stop zone 62 m, braking 33 m."
    assert state_text(VehicleState(14.0, None, None)) == "Speed 14 m/s."
    assert state_text(VehicleState(None, None, None), cues=True) == "Speed unknown."
    vlm = load_vlm(save_tiny_vlm(tmp_path / "tiny"))
    assert not vlm.prompt_cues
    visual = vlm.visual_embeds([np.zeros((64, 64, 3), np.uint8)])
    plain, _, _ = vlm.lm_inputs(visual, [VehicleState(14.0, None, None)], ["Q?"], None, left_pad=True)
    vlm.meta["prompt_cues"] = True
    cued, _, _ = vlm.lm_inputs(visual, [VehicleState(14.0, None, None)], ["Q?"], None, left_pad=True)
    assert cued.shape[1] > plain.shape[1] + 10
    assert load_vlm(save_vlm(vlm, tmp_path / "cued")).prompt_cues  # prune and deploy save meta the same way


@pytest.mark.slow
def test_init_from_starts_stage_two_from_a_trained_model(tmp_path: Path) -> None:
    enc = EncoderTrainConfig(scenes=8, epochs=1, batch=4, first_block=16, val_scenes=4)
    train(tmp_path / "a", tmp_path / "wa", TrainConfig(scenes=4, steps=1, batch=2, lora_rank=2), resume=False, command="test", encoder_cfg=enc)
    cfg = TrainConfig(scenes=4, steps=1, batch=2, lora_rank=2, lr=1e-12, prompt_cues=True, init_from=str(tmp_path / "a"))
    train(tmp_path / "b", tmp_path / "wb", cfg, resume=False, command="test", encoder_cfg=enc)
    assert not list((tmp_path / "wb").glob("encoder_*"))  # stage 1 skipped
    for name in ("encoder.safetensors", "projector.safetensors", "lora.safetensors"):  # lr ~0: b is a's weights
        a, b = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), (name, k)
    vlm = load_vlm(tmp_path / "b")
    assert vlm.prompt_cues and vlm.meta["train"]["encoder"]["init_from"] == str(tmp_path / "a")
    with pytest.raises(OwledError, match="LoRA tensors do not match"):
        train(tmp_path / "c", tmp_path / "wc", TrainConfig(scenes=4, steps=1, batch=2, lora_rank=4, init_from=str(tmp_path / "a")),
              resume=False, command="test")
    with pytest.raises(OwledError, match="not an owled model directory"):
        train(tmp_path / "c", tmp_path / "wc", TrainConfig(scenes=4, steps=1, init_from=str(tmp_path)), resume=False, command="test")


@pytest.mark.slow
def test_trained_encoder_ships_in_fp16_and_loads(tmp_path: Path) -> None:
    enc = EncoderTrainConfig(scenes=8, epochs=1, batch=4, first_block=16, val_scenes=4)
    cfg = TrainConfig(scenes=4, steps=1, batch=2, lora_rank=2)
    train(tmp_path / "m", tmp_path / "w", cfg, resume=False, command="test", encoder_cfg=enc)
    stored = load_file(str(tmp_path / "m" / "encoder.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    vlm = load_vlm(tmp_path / "m")
    record = vlm.meta["train"]["encoder"]
    assert record["first_block"] == 16 and set(record["val_accuracy"]) >= {"action", "control", "grid_scene"}
    loaded = vlm.encoder.state_dict()
    assert all(torch.equal(loaded[k].half(), v) for k, v in stored.items() if v.is_floating_point())
