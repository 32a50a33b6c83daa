"""The hand-labelled real road set: its labels, the stored set they make, its splits, and the
scene-fact scores the real-road benchmark reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from owled_ros.data.drivelm import JSON_NAME, load_drivelm
from owled_ros.data.real_roads import COLUMNS, SET_DIR, SPEEDS_MPS, SPLITS, VIDEO_SPLITS, read_labels, write_real_set
from owled_ros.data.sources import load_source, parse_data_spec
from owled_ros.errors import OwledError
from owled_ros.eval.scene_facts import fact_scores
from owled_ros.vocab import Action, ObjectPosition

HEADER = ",".join(COLUMNS)


def test_labels_cover_150_frames_and_no_drive_is_in_two_splits() -> None:
    kept, excluded = read_labels()
    assert len(kept) >= 150
    assert all(reason for _, _, reason in excluded)
    split_of: dict[str, set[str]] = {}
    for video, (drive, split) in VIDEO_SPLITS.items():
        split_of.setdefault(drive, set()).add(split)
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert {label.split for label in kept} == set(SPLITS)
    assert sum(label.split == "test" for label in kept) >= 40


def test_the_expert_labels_each_speed() -> None:
    kept, _ = read_labels()
    clear = next(label for label in kept if not label.objects)
    assert [clear.scene(v).expert.action for v in SPEEDS_MPS] == [Action.ACCELERATE, Action.ACCELERATE, Action.KEEP_SPEED, Action.SLOW_DOWN]
    near = next(label for label in kept if any(o.position is ObjectPosition.RIGHT_LANE and o.distance_m <= 10 for o in label.objects))
    assert near.scene(29.0).expert.action is Action.SLOW_DOWN  # a car in the next lane is no lead: the speed limit decides
    assert near.scene(20.0).expert.action is Action.ACCELERATE


def test_the_stored_set_is_what_the_labels_and_the_videos_make(tmp_path: Path) -> None:
    made = write_real_set(tmp_path / "set", progress=False)
    for split in SPLITS:
        stored = SET_DIR / split / JSON_NAME
        assert json.loads(made[split].read_text()) == json.loads(stored.read_text()), split
        names = sorted(p.name for p in (SET_DIR / split / "images").iterdir())
        assert names == sorted(p.name for p in (tmp_path / "set" / split / "images").iterdir())
        for name in names[:: max(1, len(names) // 5)]:
            a = cv2.imread(str(SET_DIR / split / "images" / name)).astype(np.int16)
            b = cv2.imread(str(tmp_path / "set" / split / "images" / name)).astype(np.int16)
            assert a.shape == b.shape and np.abs(a - b).mean() < 1.0, name


def test_a_presplit_directory_keeps_its_split_and_never_reads_test(tmp_path: Path) -> None:
    spec = parse_data_spec(f"drivelm:{SET_DIR}")
    train, val = load_source(spec, "train", 10**6), load_source(spec, "val", 10**6)
    assert {f.group for f in train}.isdisjoint({f.group for f in val})
    assert len(train) == len(load_drivelm(SET_DIR / "train" / JSON_NAME, SET_DIR / "train"))
    assert all(f.frame_answer and f.action is not None for f in train + val)
    copy = tmp_path / "copy"
    for split in ("train", "val"):
        (copy / split).mkdir(parents=True)
        (copy / split / JSON_NAME).write_text((SET_DIR / split / JSON_NAME).read_text())
        (copy / split / "images").symlink_to(SET_DIR / split / "images")
    (copy / "test").mkdir()
    (copy / "test" / JSON_NAME).write_text("{not json")  # never read
    assert len(load_source(parse_data_spec(f"drivelm:{copy}"), "val", 10**6)) == len(val)


@pytest.mark.parametrize("row, needle", [
    ("challenge01,12,straight,day,bus:ego:20,,", "class 'bus'"),
    ("challenge01,12,straight,day,car:ego:80,,", "outside (0, 60]"),
    ("challenge01,12,straight,day,car:roadside:20,,", "cannot be at 'roadside'"),
    ("challenge01,12,uphill,day,,,", "road 'uphill'"),
    ("challenge01,12,straight,fog,,,", "weather 'fog'"),
    ("nope,12,straight,day,,,", "unknown video 'nope'"),
    ("challenge01,x,straight,day,,,", "frame 'x'"),
    ("challenge01,12,straight,day,,purple_light:30,", "control 'purple_light:30'"),
    ("challenge01,12,straight,day,,", "expected 7 fields"),
])
def test_bad_label_rows_are_named_by_file_and_line(tmp_path: Path, row: str, needle: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{HEADER}\nchallenge01,37,straight,day,,,\n{row}\n")
    with pytest.raises(OwledError) as err:
        read_labels(path)
    assert f"{path}:3" in str(err.value) and needle in str(err.value)


def test_bad_labels_stop_data_make_with_one_line_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{HEADER}\nchallenge01,37,straight,day,car:ego:twenty,,\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "owled_ros.cli", "data", "make", "--source", "real", "--labels", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "distance 'twenty' is not a number" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_fact_scores_count_invented_road_users_and_the_ego_lane() -> None:
    refs = ["Car in the ego lane at 20 m. Straight road, day.", "Straight road, day.", "Straight road, day.",
            "Pedestrian at the roadside at 15 m. Left curve, night."]
    hyps = ["Car in the ego lane at 25 m. Straight road, day.", "Cyclist at the roadside at 40 m. Straight road, night.",
            "Truck in the ego lane at 50 m. Right curve, day.", "Left curve, night."]
    s = fact_scores(refs, hyps)
    assert s["frames_without_vulnerable"] == 3 and s["vulnerable_false_rate"] == pytest.approx(1 / 3)
    assert s["ego_vehicle_precision"] == pytest.approx(1 / 2) and s["ego_vehicle_recall"] == 1.0
    assert s["weather_accuracy"] == pytest.approx(3 / 4) and s["road_accuracy"] == pytest.approx(3 / 4)
    assert fact_scores(["Straight road, day."], ["Straight road, day."])["ego_vehicle_recall"] is None
