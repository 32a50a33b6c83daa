"""The simulator's side of the ROS graph: MetaDrive exposed under the carla-ros-bridge names.

Per world step (STEP_S = 0.1 s of sim time) it publishes /clock; when a camera frame is due
(camera_hz) it renders and publishes, all stamped with the sim time:
/carla/ego_vehicle/odometry (nav_msgs/Odometry, ENU: x forward at start, y left),
/carla/ego_vehicle/speedometer (std_msgs/Float32, m/s), then
/carla/ego_vehicle/rgb_front/image (sensor_msgs/Image bgra8) and .../camera_info.
It subscribes to the node's owled_msgs/ActionPrediction and feeds each one to our controller
(sim/controller.py), whose steering and throttle drive the next steps.

Lock-step mode waits, after each frame, for the node's answer to that frame (matched by stamp),
so the model's speed does not matter; real-time mode never waits and runs the world no faster
than the wall clock, so a slow model acts on old frames, as it would on a vehicle.

Everything published, every action received and one ground-truth record per step
(std_msgs/String JSON on GROUND_TRUTH_TOPIC, see sim/scoring.py) go to an mcap rosbag2
written with rosbags; sim/scoring.py scores that bag.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from owled_msgs.msg import ActionPrediction
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, String

from owled_ros.data.bag_make import open_bag_writer
from owled_ros.errors import OwledError
from owled_ros.ros.bag_record import installed_typestore
from owled_ros.sim.client import WorldProcess
from owled_ros.sim.controller import Controller
from owled_ros.sim.scenario import STEP_S, Scenario
from owled_ros.sim.scoring import ACTION_TOPIC, CAMERA_TOPIC, GROUND_TRUTH_TOPIC
from owled_ros.sim.truth import expert_decision, lead_gap
from owled_ros.vocab import Action

ROLE = "ego_vehicle"
CAMERA_INFO_TOPIC = f"/carla/{ROLE}/rgb_front/camera_info"
ODOMETRY_TOPIC = f"/carla/{ROLE}/odometry"
SPEEDOMETER_TOPIC = f"/carla/{ROLE}/speedometer"
CLOCK_TOPIC = "/clock"
SIM_START_NS = 1_000_000_000  # a zero stamp means "no stamp" to the node's pairing
TYPES = {
    CLOCK_TOPIC: (Clock, "rosgraph_msgs/msg/Clock"), ODOMETRY_TOPIC: (Odometry, "nav_msgs/msg/Odometry"),
    SPEEDOMETER_TOPIC: (Float32, "std_msgs/msg/Float32"), CAMERA_TOPIC: (Image, "sensor_msgs/msg/Image"),
    CAMERA_INFO_TOPIC: (CameraInfo, "sensor_msgs/msg/CameraInfo"), GROUND_TRUTH_TOPIC: (String, "std_msgs/msg/String"),
}
ACTION_TYPE = "owled_msgs/msg/ActionPrediction"


@dataclass(frozen=True)
class RunOptions:
    duration_s: float = 30.0
    camera_hz: float = 2.0
    lockstep: bool = True
    action_topic: str = ACTION_TOPIC
    start_timeout_s: float = 300.0
    """Longest wait for the node to subscribe to the camera (it loads its model first)."""
    answer_timeout_s: float = 60.0
    """Lock-step: longest wait for the node's answer to one frame."""

    def __post_init__(self) -> None:
        if not 0 < self.duration_s <= 3600:
            raise OwledError(f"--duration must be in (0, 3600] s, got {self.duration_s}")
        if not 0.1 <= self.camera_hz <= 1 / STEP_S:
            raise OwledError(f"--camera-hz must be in [0.1, {1 / STEP_S:g}], got {self.camera_hz}")


def _stamp(msg_header_or_clock, t_ns: int) -> None:
    msg_header_or_clock.sec, msg_header_or_clock.nanosec = divmod(t_ns, 1_000_000_000)


def _image(bgr: np.ndarray, t_ns: int) -> Image:
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    msg = Image(height=bgra.shape[0], width=bgra.shape[1], encoding="bgra8", is_bigendian=0, step=bgra.shape[1] * 4)
    _stamp(msg.header.stamp, t_ns)
    msg.header.frame_id = f"{ROLE}/rgb_front"
    msg.data = bgra.tobytes()
    return msg


def _camera_info(width: int, height: int, fov_deg: float, t_ns: int) -> CameraInfo:
    f = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    msg.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    _stamp(msg.header.stamp, t_ns)
    msg.header.frame_id = f"{ROLE}/rgb_front"
    return msg


def _odometry(truth: dict, t_ns: int) -> Odometry:
    """MetaDrive's frame has y to the right; ROS (ENU) has y to the left, so y and yaw flip sign."""
    msg = Odometry(child_frame_id=ROLE)
    _stamp(msg.header.stamp, t_ns)
    msg.header.frame_id = "map"
    yaw = -truth["yaw"]
    msg.pose.pose.position.x, msg.pose.pose.position.y = truth["x"], -truth["y"]
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    msg.twist.twist.linear.x = truth["speed_mps"]
    return msg


class SimBridge:
    """Publishers, the action subscription and the bag of one run (several episodes, one bag each)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.node = Node("owled_sim_bridge")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.pubs = {topic: self.node.create_publisher(cls, topic, 10) for topic, (cls, _) in TYPES.items() if topic != GROUND_TRUTH_TOPIC}
        self.pubs[GROUND_TRUTH_TOPIC] = self.node.create_publisher(String, GROUND_TRUTH_TOPIC, 100)
        self.received: list[tuple[int, bytes, ActionPrediction]] = []
        self.node.create_subscription(ActionPrediction, options.action_topic, self._on_action, 100, raw=True)
        self.typestore = installed_typestore()

    def _on_action(self, raw: bytes) -> None:
        self.received.append((time.time_ns(), raw, deserialize_message(raw, ActionPrediction)))

    def wait_for_node(self, stop: threading.Event, alive: Callable[[], None] = lambda: None) -> None:
        """Until the camera has a subscriber (the node is active) and the node publishes actions."""
        end = time.monotonic() + self.options.start_timeout_s
        camera = self.pubs[CAMERA_TOPIC]
        while camera.get_subscription_count() < 1 or self.node.count_publishers(self.options.action_topic) < 1:
            alive()
            if stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() > end:
                raise OwledError(f"no node subscribed to {CAMERA_TOPIC} and published {self.options.action_topic} within {self.options.start_timeout_s:.0f} s")
            self.executor.spin_once(timeout_sec=0.2)

    def run_episode(self, world: WorldProcess, scenario: Scenario, bag: Path, stop: threading.Event, alive: Callable[[], None] = lambda: None) -> None:
        """One episode into `bag` (an mcap rosbag2, complete even after Ctrl-C / a timeout)."""
        o = self.options
        frame_every = max(1, round(1 / (o.camera_hz * STEP_S)))
        self.received.clear()
        with open_bag_writer(bag) as writer:
            writer.set_custom_data("owled_sim", json.dumps({"scenario": scenario.as_dict(), "lockstep": o.lockstep, "camera_hz": o.camera_hz, "step_s": STEP_S}))
            conns = {t: writer.add_connection(t, name, typestore=self.typestore) for t, (_, name) in TYPES.items()}
            conns["action"] = writer.add_connection(o.action_topic, ACTION_TYPE, typestore=self.typestore)

            def publish(topic: str, msg: object) -> None:
                self.pubs[topic].publish(msg)
                writer.write(conns[topic], time.time_ns(), serialize_message(msg))

            truth = world.reset(scenario)
            controller = Controller()
            controller.reset(truth)
            wall_start = time.monotonic()
            timed_out: int | None = None
            for step in range(max(1, round(o.duration_s / STEP_S))):
                alive()
                if stop.is_set():
                    break
                t_ns = SIM_START_NS + round(truth["t_s"] * 1e9)
                clock = Clock()
                _stamp(clock.clock, t_ns)
                publish(CLOCK_TOPIC, clock)
                record = {"stamp_ns": t_ns, "seed": scenario.seed, "frame": step % frame_every == 0}
                if record["frame"]:
                    frame = world.render()
                    publish(ODOMETRY_TOPIC, _odometry(truth, t_ns))
                    publish(SPEEDOMETER_TOPIC, Float32(data=float(truth["speed_mps"])))
                    publish(CAMERA_TOPIC, _image(frame.bgr, t_ns))
                    publish(CAMERA_INFO_TOPIC, _camera_info(scenario.width, scenario.height, truth["camera_fov_deg"], t_ns))
                    decision = expert_decision(truth)
                    record |= {"expert_action": decision.action.name.lower(), "expert_reason": decision.reason, "vehicles": truth["vehicles"]}
                    if o.lockstep and not self._wait_answer(t_ns, stop, alive):
                        timed_out = t_ns
                        break
                else:
                    self.executor.spin_once(timeout_sec=0)
                if not o.lockstep:  # no faster than the wall clock
                    time.sleep(max(0.0, wall_start + truth["t_s"] - time.monotonic()))
                self._apply_actions(controller, truth, writer, conns["action"])
                control = controller.control(truth)
                gap = lead_gap(truth)
                record |= {
                    key: truth[key] for key in ("t_s", "speed_mps", "route_s", "route_length_m", "lane_index", "lane_count", "crash_vehicle", "crash_object", "out_of_road", "arrived")
                } | {
                    "gap_m": gap[0] if gap else None, "time_gap_s": gap[1] if gap and math.isfinite(gap[1]) else None,
                    "steer": control.steer, "throttle": control.throttle,
                    "target_speed_mps": controller.command.target_speed_mps, "target_lane": controller.command.target_lane,
                }
                publish(GROUND_TRUTH_TOPIC, String(data=json.dumps(record)))
                if truth["out_of_road"] or truth["arrived"]:
                    break
                truth = world.step(control.steer, control.throttle)
            self.executor.spin_once(timeout_sec=0)
            self._apply_actions(controller, truth, writer, conns["action"])
        if timed_out is not None:
            raise OwledError(
                f"the node did not answer the frame stamped {timed_out / 1e9:.2f} s within {o.answer_timeout_s:.0f} s "
                f"(lock-step); the simulator stopped, {bag} holds the episode so far"
            )

    def _wait_answer(self, t_ns: int, stop: threading.Event, alive: Callable[[], None]) -> bool:
        """True once the node answered the frame stamped t_ns (or on stop); False on timeout."""
        end = time.monotonic() + self.options.answer_timeout_s
        while not any(_stamp_ns(msg) == t_ns for _, _, msg in self.received):
            alive()
            if stop.is_set():
                return True
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def _apply_actions(self, controller: Controller, truth: dict, writer: object, conn: object) -> None:
        for log_ns, raw, msg in self.received:
            writer.write(conn, log_ns, raw)
            controller.apply(Action(msg.action) if msg.action in Action._value2member_map_ else Action.UNKNOWN, msg.target_speed_mps, truth)
        self.received.clear()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _stamp_ns(msg: ActionPrediction) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec



def node_args(model: str) -> list[str]:
    """owled_node as owled_carla.launch.py starts it: owled.yaml, then carla.yaml, then the model."""
    share = Path(__file__).resolve().parents[3] / "config"
    return [
        sys.executable, "-m", "owled_ros.ros.node", "--ros-args", "--params-file", str(share / "owled.yaml"),
        "--params-file", str(share / "carla.yaml"), "-p", f"model:={model}", "-p", "use_sim_time:=true",
    ]


def run_models(
    models: list[str], seeds: list[int], scenario: Scenario, options: RunOptions, out: Path, start_node: bool = True,
    world_factory: Callable[[Path], WorldProcess] = WorldProcess,
) -> dict:
    """Every model on every seed; out/<label>/seed_<N> bags, report.json/.md/.png. SIGINT stops cleanly.

    world_factory(log_path) opens the world (a context manager); tests pass a recorded episode."""
    from owled_ros.processes import ChildProcesses, log_tail
    from owled_ros.fsutil import write_text_atomic
    from owled_ros.sim.scoring import markdown, plot, read_episode, score_records, summarize

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OwledError(f"{out}: already exists and is not empty (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    labels = [f"{i}:{Path(m).name or m}" if len(set(models)) < len(models) else (Path(m).name or m) for i, m in enumerate(models)]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    report: dict = {"scenario": scenario.as_dict(), "seeds": seeds, "options": asdict(options), "models": {}, "episodes": {}}
    traces: dict[str, list[dict]] = {}
    children = ChildProcesses(out)
    rclpy.init()
    bridge = SimBridge(options)
    try:
        with world_factory(out / "world.log") as world:
            for model, label in zip(models, labels):
                alive = lambda: None  # noqa: E731
                if start_node:
                    children.start(f"node_{label}", node_args(model))
                    alive = lambda name=f"node_{label}": children.check_alive(name)  # noqa: E731
                bridge.wait_for_node(stop, alive)
                episodes = []
                for seed in seeds:
                    if stop.is_set():
                        break
                    bag = out / label / f"seed_{seed}"
                    started = time.monotonic()
                    bridge.run_episode(world, replace(scenario, seed=seed), bag, stop, alive)
                    steps, actions, camera = read_episode(bag)
                    episode = score_records(steps, actions, camera) | {"seed": seed, "bag": str(bag), "wall_s": round(time.monotonic() - started, 1)}
                    episodes.append(episode)
                    traces[f"{label} seed {seed}"] = steps
                    print(json.dumps({"model": label, **{k: v for k, v in episode.items() if k != "actions"}}), flush=True)
                report["episodes"][label] = episodes
                report["models"][label] = summarize(episodes) | {"model": model}
                if start_node:
                    children.stop(f"node_{label}", 60.0)
    except OwledError as err:
        logs = [p for p in out.glob("node_*.log")]
        raise OwledError(f"{err}" + (f"; last lines of {logs[-1]}:\n{log_tail(logs[-1])}" if logs else "")) from None
    finally:
        children.stop_all()
        bridge.close()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        report["interrupted"] = stop.is_set()
        write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str))
        write_text_atomic(out / "report.md", markdown(report["models"]))
        if traces:
            plot(traces, out / "report.png")
    return report
