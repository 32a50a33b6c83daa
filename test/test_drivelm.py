"""DriveLM JSON: loader on a hand-written file, clear errors on bad ones, writer round trip, scoring, CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from owled_ros.commands import data as data_command
from owled_ros.data.describe import describe_scene
from owled_ros.data.drivelm import (
    QUESTION_DESCRIBE,
    QUESTION_LIGHT,
    load_drivelm,
    score_answer,
    write_split,
)
from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene
from owled_ros.errors import OwledError
from owled_ros.imageio import read_image_rgb
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action


def _qa(q: str, a: str) -> dict:
    return {"Q": q, "A": a, "C": None, "con_up": None, "con_down": None, "cluster": None, "layer": None}


def _real_style(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A file shaped like DriveLM-nuScenes v1.1 (nuScenes-style relative paths, no "owled" key)."""
    root = tmp_path / "data" / "QA_dataset_nus"
    image = tmp_path / "data" / "nuscenes" / "samples" / "CAM_FRONT" / "n008__CAM_FRONT__1.jpg"
    image.parent.mkdir(parents=True)
    root.mkdir(parents=True)
    cv2.imwrite(str(image), np.full((90, 160, 3), (10, 200, 30), np.uint8))
    doc = {
        "abc": {
            "scene_description": "The ego vehicle waits at the intersection.",
            "key_frames": {
                "f1": {
                    "key_object_infos": {
                        "<c1,CAM_FRONT,80.0,45.0>": {"Category": "Vehicle", "Status": "Moving", "Visual_description": "White sedan.", "2d_bbox": [60.0, 30.0, 100.0, 60.0]}
                    },
                    "QA": {
                        "perception": [_qa("What are the important objects in the current scene?", "There is a white sedan to the front.")],
                        "prediction": [_qa("Is <c1,CAM_FRONT,80.0,45.0> a traffic sign or a road barrier?", "No.")],
                        "planning": [_qa("What actions could the ego vehicle take?", "Keep speed, because the road is clear.")],
                        "behavior": [_qa("Predict the behavior of the ego vehicle.", "The ego vehicle is going straight.")],
                    },
                    "image_paths": {"CAM_FRONT": "../nuscenes/samples/CAM_FRONT/n008__CAM_FRONT__1.jpg", "CAM_BACK": "../nuscenes/samples/CAM_BACK/x.jpg"},
                }
            },
        }
    }
    path = root / "v1_1_train_nus.json"
    path.write_text(json.dumps(doc))
    return path, root, doc


def test_loads_a_real_style_file(tmp_path):
    path, root, _ = _real_style(tmp_path)
    (frame,) = load_drivelm(path, root)
    assert (frame.scene_token, frame.frame_id) == ("abc", "f1")
    assert frame.image_path == tmp_path / "data" / "nuscenes" / "samples" / "CAM_FRONT" / "n008__CAM_FRONT__1.jpg"
    assert [q.category for q in frame.qa] == ["perception", "prediction", "planning", "behavior"]
    assert frame.qa[2].answer == "Keep speed, because the road is clear."
    assert frame.ego is None and frame.description is None and frame.expert_action is None
    assert np.abs(read_image_rgb(frame.image_path)[0, 0].astype(int) - [30, 200, 10]).max() <= 3  # RGB order (JPEG)


def test_reads_the_owled_extra(tmp_path):
    path, root, doc = _real_style(tmp_path)
    doc["abc"]["key_frames"]["f1"]["owled"] = {
        "ego": {"speed_mps": 12, "accel_mps2": -0.5, "yaw_rate_rps": None},
        "description": "Car in the ego lane at 20 m. Straight road, day.",
        "expert": {"action": "slow_down", "target_speed_mps": 10.0, "reason": "x"},
    }
    path.write_text(json.dumps(doc))
    (frame,) = load_drivelm(path, root)
    assert frame.ego == VehicleState(12.0, -0.5, None)
    assert frame.description.startswith("Car in the ego lane")
    assert frame.expert_action is Action.SLOW_DOWN


def _break(doc: dict, how: str) -> None:
    frame = doc["abc"]["key_frames"]["f1"]
    if how == "qa":
        del frame["QA"]
    elif how == "answer":
        del frame["QA"]["planning"][0]["A"]
    elif how == "camera":
        del frame["image_paths"]["CAM_FRONT"]
    elif how == "key_frames":
        doc["abc"]["key_frames"] = []
    elif how == "image":
        frame["image_paths"]["CAM_FRONT"] = "../nuscenes/samples/CAM_FRONT/missing.jpg"
    elif how == "speed":
        frame["owled"] = {"ego": {"speed_mps": "fast"}}


@pytest.mark.parametrize(
    "how, message",
    [
        ("qa", "v1_1_train_nus.json: scene 'abc' key_frames.'f1'.QA missing"),
        ("answer", "v1_1_train_nus.json: scene 'abc' key_frames.'f1'.QA.planning[0].A missing"),
        ("camera", "v1_1_train_nus.json: scene 'abc' key_frames.'f1'.image_paths.CAM_FRONT missing"),
        ("key_frames", "v1_1_train_nus.json: scene 'abc' key_frames must be an object, got list"),
        ("image", "missing.jpg not found"),
        ("speed", "key_frames.'f1'.owled.ego.speed_mps must be a number, got str"),
    ],
)
def test_rejects_malformed_files_naming_file_and_field(tmp_path, how, message):
    path, root, doc = _real_style(tmp_path)
    _break(doc, how)
    path.write_text(json.dumps(doc))
    with pytest.raises(OwledError) as err:
        load_drivelm(path, root)
    assert message in str(err.value)


def test_rejects_bad_json_and_missing_paths(tmp_path):
    path, root, _ = _real_style(tmp_path)
    path.write_text('{"abc": {"key_frames": ')
    with pytest.raises(OwledError, match=r"v1_1_train_nus.json: not valid JSON"):
        load_drivelm(path, root)
    with pytest.raises(OwledError, match="image root not found"):
        load_drivelm(path, tmp_path / "nowhere")
    with pytest.raises(OwledError, match="DriveLM file not found"):
        load_drivelm(tmp_path / "none.json", root)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(OwledError, match="not a readable image"):
        read_image_rgb(broken)
    with pytest.raises(OwledError, match="image not found"):
        read_image_rgb(tmp_path / "gone.png")


def test_write_split_round_trip(tmp_path):
    out = tmp_path / "split"
    path = write_split(out, seed=31, n=4, size=(192, 112), progress=False)
    assert path == out / "drivelm.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]  # no temporary directory left behind
    frames = load_drivelm(path, out)
    assert len(frames) == 4
    raw = json.loads(path.read_text())
    for i, frame in enumerate(frames):
        scene = generate_scene(31, i, size=(192, 112))
        assert frame.description == describe_scene(scene)
        assert frame.expert_action is scene.expert.action
        assert frame.ego.speed_mps == scene.ego.speed_mps
        assert read_image_rgb(frame.image_path).shape == (112, 192, 3)
        record = raw[frame.scene_token]["key_frames"][frame.frame_id]
        assert set(record) == {"key_object_infos", "QA", "image_paths", "owled"}
        assert len(record["key_object_infos"]) == len(scene.objects) + (scene.control is not None)
        for item in (q for qs in record["QA"].values() for q in qs):
            assert set(item) == {"Q", "A", "C", "con_up", "con_down", "cluster", "layer"}
        for q in frame.qa:  # the reference always scores as correct against itself
            assert score_answer(q.category, q.question, q.answer, q.answer)
    with pytest.raises(OwledError, match="already exists"):
        write_split(out, seed=31, n=1, progress=False)


@pytest.mark.parametrize(
    "category, question, reference, prediction, correct",
    [
        ("planning", "What should the ego vehicle do, and why?", "slow down. Car ahead at 15 m is too close.", "slow down. Red light.", True),
        ("planning", "What should the ego vehicle do, and why?", "slow down. Car ahead at 15 m is too close.", "stop. Car ahead.", False),
        ("behavior", "Predict the behavior of the ego vehicle.", "change lane left at 14 m/s.", "Change lane left now", True),
        ("behavior", "Predict the behavior of the ego vehicle.", "change lane left at 14 m/s.", "change lane right", False),
        ("perception", "Is there a vehicle in the ego lane?", "Yes, a car at 15 m.", "Yes, a car at 20 m.", True),
        ("perception", "Is there a vehicle in the ego lane?", "Yes, a car at 15 m.", "Yes, a truck.", False),
        ("perception", "Is there a vehicle in the ego lane?", "No.", "Yes, a car.", False),
        ("prediction", "Will the pedestrian at 10 m cross?", "Yes, it is crossing.", "yes", True),
        ("perception", QUESTION_LIGHT, "There is no traffic light.", "No traffic light.", True),
        ("perception", QUESTION_LIGHT, "Red.", "The light is red.", True),
        ("perception", QUESTION_LIGHT, "Red.", "Green.", False),
        ("perception", QUESTION_DESCRIBE, "Red light at 30 m. Car in the ego lane at 15 m. Straight road, day.", "Car in our lane at 20 m. The light is red.", True),
        ("perception", QUESTION_DESCRIBE, "Red light at 30 m. Car in the ego lane at 15 m. Straight road, day.", "Red light at 30 m. Car in the left lane at 15 m.", False),
        ("perception", "What are the important objects?", "A white sedan.", "a white sedan", True),
        ("perception", "What are the important objects?", "A white sedan.", "A black sedan.", False),
    ],
)
def test_score_answer_rules(category, question, reference, prediction, correct):
    assert score_answer(category, question, reference, prediction) is correct


def test_data_make_command_uses_the_split_seed(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "make", "--split", "val", "--n", "2", "--out", str(tmp_path / "val"), "--size", "160x96"])
    assert data_command.run(args) == 0
    frames = load_drivelm(tmp_path / "val" / "drivelm.json", tmp_path / "val")
    assert [f.frame_id for f in frames] == [f"{SPLIT_SEEDS['val']}-000000", f"{SPLIT_SEEDS['val']}-000001"]
    assert "wrote 2 val scenes" in capsys.readouterr().out
    bad = parser.parse_args(["data", "make", "--split", "test", "--n", "2", "--out", str(tmp_path / "t"), "--size", "big"])
    with pytest.raises(OwledError, match="--size"):
        data_command.run(bad)
