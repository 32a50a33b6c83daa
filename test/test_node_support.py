"""Shared by the node tests (no tests here): a tiny DrivingVLM on disk, owled_node as a
subprocess, and a test-side rclpy node that feeds it and records what it publishes."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from owled_msgs.msg import ActionPrediction, SceneDescription
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from ros_helpers import ros_env

OWLED_NODE = Path(sys.executable).with_name("owled_node")
ROOT_CONFIG = Path(__file__).resolve().parents[1] / "config"
START_TIMEOUT_S = 90.0  # imports torch + transformers on a loaded 2-core machine


def save_tiny_model(path: Path) -> Path:
    """A DrivingVLM small enough for tests: 64x64 EfficientNet input, 2-layer 32-wide Llama, real tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from owled_ros.model.checkpoint import save_vlm
    from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
    from owled_ros.model.lm import default_lm_dir
    from owled_ros.model.projector import MLPProjector, ProjectorConfig
    from owled_ros.model.vlm import DrivingVLM

    tokenizer = AutoTokenizer.from_pretrained(default_lm_dir())
    torch.manual_seed(0)
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    )
    encoder = EfficientNetEncoder(EncoderConfig(image_size=(64, 64), grid=(2, 2)))
    projector = MLPProjector(ProjectorConfig(encoder.out_dim, 32, encoder.n_tokens()))
    vlm = DrivingVLM(encoder, projector, lm, tokenizer, {"name": "tiny-test", "trained": False})
    return save_vlm(vlm.eval(), path)


def _ros_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class NodeProcess:
    """owled_node (the console script) in its own process; stdout and stderr go to a log file."""

    def __init__(self, log_path: Path, params: dict[str, object], params_file: Path | None = None, ros_args: tuple[str, ...] = ()) -> None:
        args = [str(OWLED_NODE), "--ros-args", *ros_args]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for name, value in params.items():
            args += ["-p", f"{name}:={_ros_value(value)}"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, env=ros_env(), stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def interrupt(self, timeout: float = 20.0) -> tuple[int, float]:
        """SIGINT, then (exit code, seconds to exit)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def stamp(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_msg(stamp_ns: int, width: int = 64, height: int = 48, encoding: str = "rgb8", frame_id: str = "camera_front") -> Image:
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    pixels = np.random.default_rng(stamp_ns % 1000).integers(0, 255, (height, width, channels), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
    msg.header.stamp, msg.header.frame_id = stamp(stamp_ns), frame_id
    msg.data = pixels.tobytes()
    return msg


def odometry_msg(stamp_ns: int, speed: float, frame_id: str = "odom") -> Odometry:
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id = stamp(stamp_ns), frame_id
    msg.twist.twist.linear.x = speed
    return msg


def stamp_key(header) -> tuple[int, int, str]:
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


class Harness:
    """The test's own rclpy node: publishes camera and state, records outputs and diagnostics."""

    def __init__(
        self,
        camera_type: type = Image,
        camera_topic: str = "/camera/image_raw",
        state_type: type = Odometry,
        state_topic: str = "/odom",
        output_prefix: str = "/owled",
    ) -> None:
        self.node = rclpy.create_node(f"owled_test_harness_{os.getpid()}")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.camera = self.node.create_publisher(camera_type, camera_topic, reliable)
        self.state = self.node.create_publisher(state_type, state_topic, reliable)
        self.scenes: list[tuple[float, SceneDescription]] = []
        self.actions: list[tuple[float, ActionPrediction]] = []
        self.diagnostics: list[tuple[float, DiagnosticArray]] = []
        self.node.create_subscription(SceneDescription, f"{output_prefix}/scene", lambda m: self.scenes.append((time.monotonic(), m)), 100)
        self.node.create_subscription(ActionPrediction, f"{output_prefix}/action", lambda m: self.actions.append((time.monotonic(), m)), 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any("owled_node" in s.name for s in msg.status):
            self.diagnostics.append((time.monotonic(), msg))

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    def spin_until(self, done: Callable[[], bool], timeout: float, every: Callable[[], None] | None = None, period: float = 0.2) -> bool:
        """Spin until `done()`; call `every()` each `period` seconds meanwhile (e.g. to keep publishing)."""
        end = time.monotonic() + timeout
        next_call = 0.0
        while time.monotonic() < end:
            if done():
                return True
            if every is not None and time.monotonic() >= next_call:
                every()
                next_call = time.monotonic() + period
            rclpy.spin_once(self.node, timeout_sec=0.02)
        return done()

    def wait_for_node(self, proc: NodeProcess, timeout: float = START_TIMEOUT_S) -> None:
        """Until the node's camera and state subscriptions are matched (it subscribes once active)."""

        def matched() -> bool:
            return self.camera.get_subscription_count() > 0 and self.state.get_subscription_count() > 0

        ok = self.spin_until(lambda: matched() or proc.proc.poll() is not None, timeout)
        assert ok and proc.proc.poll() is None, f"owled_node did not become active:\n{proc.log()}"

    def diag_values(self) -> dict[str, str]:
        """Key/values of the latest owled diagnostics status."""
        if not self.diagnostics:
            return {}
        status = next(s for s in self.diagnostics[-1][1].status if "owled_node" in s.name)
        return {kv.key: kv.value for kv in status.values} | {"_message": status.message, "_level": str(ord(status.level))}

    def wait_diag(self, key: str, at_least: float, timeout: float = 30.0) -> dict[str, str]:
        self.spin_until(lambda: float(self.diag_values().get(key, "-inf")) >= at_least, timeout)
        values = self.diag_values()
        assert float(values.get(key, "-inf")) >= at_least, f"{key} never reached {at_least}: {values}"
        return values

    def close(self) -> None:
        self.node.destroy_node()


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
