"""`owled bag play` -> DDS -> `owled bag record`, two real processes: the same messages come back, with /clock."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from owled_ros.data.bag_make import DEFAULT_TOPICS, BagSpec, make_bag
from owled_ros.data.bag_read import read_messages, to_plain

from ros_helpers import ros_env

BAG_TOOL = [sys.executable, "-m", "owled_ros.cli", "bag"]


def test_play_into_record_round_trip(tmp_path: Path) -> None:
    bag = make_bag(BagSpec(frames=4, compressed=True), tmp_path / "in").path
    topics = [DEFAULT_TOPICS.camera + "/compressed", DEFAULT_TOPICS.odometry]
    out = tmp_path / "recorded"
    recorder = subprocess.Popen(
        [*BAG_TOOL, "record", "--topics", *topics, "/clock", "--out", str(out), "--echo", DEFAULT_TOPICS.odometry],
        env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        player = subprocess.run(
            [*BAG_TOOL, "play", str(bag), "--topics", *topics, "--wait-subscribers", "1", "--wait-timeout", "60"],
            env=ros_env(), capture_output=True, text=True, timeout=120,
        )
        assert player.returncode == 0, player.stderr
        assert "played 8 messages" in player.stdout
    finally:
        recorder.send_signal(signal.SIGINT)
        stdout, stderr = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, stderr
    assert f"recording {DEFAULT_TOPICS.odometry} (nav_msgs/msg/Odometry)" in stdout
    assert "recording /clock (rosgraph_msgs/msg/Clock)" in stdout
    echoed = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(echoed) == 4 and f'"topic": "{DEFAULT_TOPICS.odometry}"' in echoed[0]

    played = [(m.topic, to_plain(m.msg)) for m in read_messages(bag, topics)]
    recorded = [(m.topic, to_plain(m.msg)) for m in read_messages(out, topics)]
    assert recorded == played  # decoded messages, not bytes: CDR padding may differ

    clock = [m.msg.clock.sec * 1_000_000_000 + m.msg.clock.nanosec for m in read_messages(out, ["/clock"])]
    log_times = [m.log_ns for m in read_messages(bag, topics)]
    assert len(clock) >= len(log_times) and clock == sorted(clock)  # bag time, ticking between messages too
    assert log_times[0] <= clock[0] and clock[-1] == log_times[-1]
