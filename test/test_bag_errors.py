"""Bad bags give one line naming the file (and the topic) and exit 2, before any process starts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from owled_ros.cli import main
from owled_ros.data.bag_make import BagSpec, bag_records, make_bag, write_bag


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bag(BagSpec(frames=2), tmp_path_factory.mktemp("bags") / "good").path


def _fails(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and all(n in err for n in needles), err
    return err


def _eval(bag: Path | str, tmp_path: Path, *extra: str) -> list[str]:
    return ["bag", "eval", str(bag), "--model", "default", "--out", str(tmp_path / "out"), *extra]


def test_missing_bag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(capsys, _eval(tmp_path / "nope", tmp_path), f"{tmp_path / 'nope'}: bag not found")
    _fails(capsys, ["bag", "play", str(tmp_path / "nope")], "bag not found")


def test_corrupt_bag(good_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)
    _fails(capsys, _eval(garbage, tmp_path), str(garbage), "not a readable rosbag2")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in good_bag.iterdir():
        data = f.read_bytes()
        (truncated / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".mcap" else data)
    _fails(capsys, _eval(truncated, tmp_path), str(truncated), "not a readable rosbag2")


def test_bag_without_the_expected_topics(good_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    no_camera = write_bag(tmp_path / "no_camera", (r for r in bag_records(BagSpec(frames=2)) if "image" not in r.topic), {}).path
    _fails(capsys, _eval(no_camera, tmp_path), str(no_camera), "no camera topic", "/odom (nav_msgs/msg/Odometry)")
    _fails(capsys, _eval(good_bag, tmp_path, "--camera-topic", "/front/image"), str(good_bag), "camera topic /front/image not in the bag")
    _fails(capsys, _eval(good_bag, tmp_path, "--camera-topic", "/camera/camera_info"), "topic /camera/camera_info has message type sensor_msgs/msg/CameraInfo")
    _fails(capsys, ["bag", "play", str(good_bag), "--topics", "/lidar"], str(good_bag), "topic /lidar not in the bag")


def test_unknown_message_type(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("uint32 width\nuint8[] pixels", "acme_msgs/msg/Frame"))
    bag = tmp_path / "acme"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/camera/image_raw", "acme_msgs/msg/Frame", typestore=store)
        frame = store.types["acme_msgs/msg/Frame"](width=2, pixels=np.zeros(4, np.uint8))
        writer.write(conn, 1, store.serialize_cdr(frame, "acme_msgs/msg/Frame"))
    _fails(capsys, _eval(bag, tmp_path), str(bag), "/camera/image_raw (acme_msgs/msg/Frame)")
    _fails(capsys, _eval(bag, tmp_path, "--camera-topic", "/camera/image_raw"), "topic /camera/image_raw has message type acme_msgs/msg/Frame")
    _fails(capsys, ["bag", "play", str(bag)], str(bag), "topic /camera/image_raw: message type acme_msgs/msg/Frame is not installed")


def test_bad_arguments(good_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(capsys, _eval(good_bag, tmp_path, "--hz", "0"), "--hz must be positive")
    _fails(capsys, ["bag", "eval", str(good_bag), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "model directory does not exist")
    _fails(capsys, ["bag", "make", "--frames", "0", "--out", str(tmp_path / "x")], "--frames must be at least 1")
    _fails(capsys, ["bag", "make", "--out", str(good_bag)], f"{good_bag}: already exists")
    _fails(capsys, ["bag", "record", "--topics", "/a", "--out", str(good_bag)], f"{good_bag}: already exists")
    _fails(capsys, ["bag", "play", str(good_bag), "--rate", "0"], "--rate must be positive")
    _fails(capsys, ["bag", "play", str(good_bag), "--delay", "-1"], "--delay must be >= 0")


def test_online_eval_refuses_unconfined_dds(good_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    _fails(capsys, _eval(good_bag, tmp_path), "DDS is not confined to this machine")
