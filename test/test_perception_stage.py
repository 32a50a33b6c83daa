"""Training stage 1: labels follow the scene facts, training learns, resume is exact, bad settings fail."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene
from owled_ros.errors import OwledError
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
from owled_ros.train.config import EncoderTrainConfig
from owled_ros.train.perception import (
    CONTROL_CLASSES, GRID_DISTANCES, GRID_POSITIONS, USER_CLASSES, EncoderStage, perception_targets,
)


def imagenet_encoder() -> EfficientNetEncoder:
    encoder = EfficientNetEncoder(EncoderConfig())
    encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    return encoder


def test_targets_name_every_object_in_its_cell() -> None:
    for i in range(200):
        scene = generate_scene(SPLIT_SEEDS["train"], i)
        t = perception_targets(scene)
        assert int((t["grid"] > 0).sum()) == len(scene.objects)
        for o in scene.objects:
            label = USER_CLASSES[int(t["grid"][GRID_POSITIONS.index(o.position), GRID_DISTANCES.index(o.distance_m)])]
            assert o.object_class in label and ("slow" in label) == o.slow and ("crossing" in label) == o.crossing
        control = CONTROL_CLASSES[int(t["control"])]
        if scene.control is None:
            assert control == "none" and int(t["control_distance"]) == 0
        elif scene.stop_sign:
            assert control == "stop sign"
        else:
            assert control == f"{scene.light.name.lower()} light"
        assert int(t["action"]) == int(scene.expert.action)


def stage(tmp_path: Path, epochs: int, work: str) -> EncoderStage:
    cfg = EncoderTrainConfig(scenes=24, epochs=epochs, batch=8, lr=1e-3, first_block=16, val_scenes=8)
    return EncoderStage(imagenet_encoder(), cfg, tmp_path / work)


def test_resume_continues_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(24)]
    straight = stage(tmp_path, 2, "a")
    straight.fit(straight.prefix_outputs(scenes, "train", 1000), scenes)
    interrupted = stage(tmp_path, 2, "b")
    save = EncoderStage.save_checkpoint

    def save_then_interrupt(self: EncoderStage) -> None:  # Ctrl-C right after the first epoch's checkpoint
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(EncoderStage, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(interrupted.prefix_outputs(scenes, "train", 1000), scenes)
    monkeypatch.setattr(EncoderStage, "save_checkpoint", save)
    resumed = stage(tmp_path, 2, "b")
    assert resumed.load_checkpoint() and resumed.epoch == 1
    resumed.fit(resumed.prefix_outputs(scenes, "train", 1000), scenes)
    a, b = straight.suffix.state_dict(), resumed.suffix.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    changed = imagenet_encoder().backbone.blocks[16].state_dict()
    assert any(not torch.equal(v, a[f"0.{k}"]) for k, v in changed.items() if v.is_floating_point())


def test_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(8)]
    s = stage(tmp_path, 1, "w")
    s.fit(s.prefix_outputs(scenes, "train", 1000), scenes)
    other = EncoderStage(imagenet_encoder(), EncoderTrainConfig(scenes=24, epochs=1, batch=8, first_block=15), tmp_path / "w")
    with pytest.raises(OwledError, match="other encoder settings"):
        other.load_checkpoint()


def test_the_heads_learn_the_light_from_the_tokens(tmp_path: Path) -> None:
    """A few epochs on 96 scenes fit the light state of the training scenes far above the majority share."""
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(96)]
    cfg = EncoderTrainConfig(scenes=96, epochs=16, batch=16, lr=2e-3, first_block=16)
    s = EncoderStage(imagenet_encoder(), cfg, tmp_path / "w")
    x = s.prefix_outputs(scenes, "train", 1000)
    losses = s.fit(x, scenes)
    acc = s.evaluate(x, scenes)
    majority = max(sum(int(perception_targets(sc)["control"]) == c for sc in scenes) for c in range(len(CONTROL_CLASSES))) / 96
    assert losses[-1] < 0.7 * losses[0]
    assert acc["control"] >= majority + 0.1, (acc, majority)


@pytest.mark.parametrize(
    "args, needle",
    [(["--encoder-first-block", "0"], "--encoder-first-block must be in 1..17"),
     (["--encoder-epochs", "-1"], "--encoder-epochs must be 0 or more"),
     (["--encoder-scenes", "0"], "--encoder-scenes must be at least 1")],
)
def test_bad_stage1_settings(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "owled_ros.cli", "train", "--out", str(tmp_path / "m"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert needle in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m").exists()
