"""`owled bag make` writes deterministic, self-describing mcap bags (rosbags only, no DDS)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from owled_ros.data.bag_make import CARLA_TOPICS, DEFAULT_TOPICS, GROUND_TRUTH_TOPIC, START_NS, BagSpec, make_bag
from owled_ros.data.bag_read import bag_info, open_drive_bag, read_messages, stamp_ns, to_plain
from owled_ros.data.describe import describe_scene
from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene
from owled_ros.errors import OwledError


def _all(path: Path) -> list:
    topics = list(bag_info(path)["topics"].values())
    return [(m.topic, m.log_ns, to_plain(m.msg)) for m in read_messages(path, topics)]


def test_scene_bag_topics_stamps_and_ground_truth(tmp_path: Path) -> None:
    summary = make_bag(BagSpec(frames=4, hz=10.0), tmp_path / "scenes")
    drive = open_drive_bag(summary.path)
    assert (drive.camera_topic, drive.camera_type, drive.state_topic) == (DEFAULT_TOPICS.camera, "image", DEFAULT_TOPICS.odometry)
    assert [f.stamp_ns - START_NS for f in drive.frames] == [0, 100_000_000, 200_000_000, 300_000_000]
    assert {f.frame_id for f in drive.frames} == {"camera_front"} and drive.hz == pytest.approx(10.0)
    assert drive.info["synthetic_odometry"] is False and drive.info["seed"] == SPLIT_SEEDS["test"]

    msgs = list(read_messages(summary.path, [DEFAULT_TOPICS.camera, DEFAULT_TOPICS.odometry, DEFAULT_TOPICS.camera_info]))
    for i in range(4):
        scene = generate_scene(SPLIT_SEEDS["test"], i)
        odom, image, info = msgs[3 * i : 3 * i + 3]
        assert odom.topic == DEFAULT_TOPICS.odometry and odom.log_ns < image.log_ns  # the state arrives before its frame
        assert stamp_ns(image.msg.header) == stamp_ns(odom.msg.header)  # one tick: the node pairs them by stamp
        assert odom.msg.twist.twist.linear.x == scene.ego.speed_mps and odom.msg.twist.twist.angular.z == pytest.approx(scene.ego.yaw_rate_rps)
        pixels = np.asarray(image.msg.data).reshape(image.msg.height, image.msg.width, 3)
        assert image.msg.encoding == "rgb8" and np.array_equal(pixels, render_scene(scene))
        k = info.msg.k.reshape(3, 3)
        assert info.msg.width == 384 and k[0, 0] > 0 and k[0, 2] == 192 and k[2, 2] == 1 and info.msg.distortion_model == "plumb_bob"
        truth = drive.truth[stamp_ns(image.msg.header)]
        assert truth.description == describe_scene(scene) and truth.action is scene.expert.action
        assert set(truth.record) >= {"scene", "target_speed_mps", "reason", "objects", "traffic_light", "ego_speed_mps"}


def test_same_arguments_same_bag(tmp_path: Path) -> None:
    a = make_bag(BagSpec(frames=3, seed=7), tmp_path / "a")
    b = make_bag(BagSpec(frames=3, seed=7), tmp_path / "b")
    c = make_bag(BagSpec(frames=3, seed=8), tmp_path / "c")
    assert _all(a.path) == _all(b.path)
    assert _all(a.path) != _all(c.path)


def test_carla_names_bgra8_and_compressed(tmp_path: Path) -> None:
    carla = open_drive_bag(make_bag(BagSpec(frames=2, carla=True), tmp_path / "carla").path)
    assert (carla.camera_topic, carla.state_topic) == (CARLA_TOPICS.camera, CARLA_TOPICS.odometry)
    image = next(read_messages(carla.path, [CARLA_TOPICS.camera])).msg
    assert image.encoding == "bgra8" and image.step == 4 * image.width and image.header.frame_id == "ego_vehicle/rgb_front"

    jpeg = open_drive_bag(make_bag(BagSpec(frames=2, compressed=True), tmp_path / "jpeg").path)
    assert jpeg.camera_topic == DEFAULT_TOPICS.camera + "/compressed" and jpeg.camera_type == "compressed"
    msg = next(read_messages(jpeg.path, [jpeg.camera_topic])).msg
    decoded = cv2.cvtColor(cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - render_scene(generate_scene(SPLIT_SEEDS["test"], 0))).mean() < 4


def test_dashcam_bag_is_marked_synthetic(tmp_path: Path) -> None:
    drive = open_drive_bag(make_bag(BagSpec(source="dashcam", frames=3, hz=5.0), tmp_path / "dash").path)
    assert drive.info["synthetic_odometry"] is True and drive.truth == {} and GROUND_TRUTH_TOPIC not in drive.info["topics"]
    speeds = [m.msg.twist.twist.linear.x for m in read_messages(drive.path, [drive.state_topic])]
    assert len(speeds) == 3 and all(20 < v < 33 for v in speeds)
    image = next(read_messages(drive.path, [drive.camera_topic])).msg
    assert (image.width, image.height) == (640, 360)


def test_demo_sized_bag_stays_small_and_writes_atomically(tmp_path: Path) -> None:
    summary = make_bag(BagSpec(frames=25), tmp_path / "demo")
    assert summary.frames == 25 and summary.size_bytes < 20e6
    with pytest.raises(OwledError, match="already exists"):
        make_bag(BagSpec(frames=1), tmp_path / "demo")
    with pytest.raises(OwledError, match="--frames"):
        BagSpec(frames=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary directory left behind
