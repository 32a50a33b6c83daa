"""Tiny models of every supported family load, assemble, save, reload and generate identically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from owled_ros.model.checkpoint import assemble_vlm, load_vlm, save_vlm
from owled_ros.model.encoders import EncoderConfig
from owled_ros.schema import VehicleState

from tiny_models import save_tiny_llava, save_tiny_lm, save_tiny_tower

IMAGE = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)


def roundtrip(vlm, tmp_path: Path) -> None:
    before = vlm.generate([IMAGE], [VehicleState(8.0)], ["What is ahead?"], max_new_tokens=6)[0]
    saved = save_vlm(vlm, tmp_path / "saved")
    assert not list(saved.rglob("*.bin")) and list(saved.rglob("*.safetensors"))
    after = load_vlm(saved).generate([IMAGE], [VehicleState(8.0)], ["What is ahead?"], max_new_tokens=6)[0]
    assert 1 <= len(before.token_probs) <= 6
    assert after.text == before.text and np.allclose(after.token_probs, before.token_probs, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_lm_families_with_default_encoder(family: str, tmp_path: Path) -> None:
    lm_dir = save_tiny_lm(family, tmp_path / family)
    vlm = assemble_vlm(str(lm_dir), "efficientnet-lite0", EncoderConfig(image_size=(64, 64), grid=(2, 2)))
    assert vlm.lm.config.model_type == family and vlm.projector.config.n_tokens == 4
    roundtrip(vlm, tmp_path)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_vision_towers(kind: str, tmp_path: Path) -> None:
    lm_dir = save_tiny_lm("llama", tmp_path / "lm")
    tower_dir = save_tiny_tower(kind, tmp_path / kind)
    vlm = assemble_vlm(str(lm_dir), str(tower_dir), EncoderConfig(grid=(2, 2)))
    assert vlm.encoder.config.kind == kind and vlm.encoder.config.image_size == (32, 32)
    roundtrip(vlm, tmp_path)


def test_native_llava(tmp_path: Path) -> None:
    vlm = load_vlm(save_tiny_llava(tmp_path / "llava"))
    assert vlm.encoder.config.feature_layer == -2 and vlm.projector.config.n_tokens == 16
    roundtrip(vlm, tmp_path)
