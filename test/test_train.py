"""`owled train` checkpoints and resumes exactly, and exports a model that loads."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from owled_ros.model.checkpoint import load_vlm
from owled_ros.train.config import TrainConfig
from owled_ros.train.trainer import train


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
