"""owled_node: a managed (lifecycle) node that runs the DrivingPipeline on a camera stream.

Transitions: configure starts the worker thread, which loads the model, and creates the publishers;
activate subscribes to the camera and the vehicle state; deactivate unsubscribes;
cleanup and shutdown release the model. With `autostart` (the default) the node
configures and activates itself, so a plain launch needs no lifecycle manager.

Threads: the executor thread passes incoming messages through the input gate
(runtime/gate.py: checks, decoding, the stream's stamp and shape, the state buffer) and posts
accepted frames into a single-slot mailbox (newest frame wins, older waiting frames are
dropped and counted), so a rejected message never takes a valid frame's place; one worker
thread loads the model (all torch work stays in it), pairs each frame with the state nearest
its stamp, runs the model at most max_rate_hz times a second and publishes. However fast the
camera, no backlog forms.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from owled_msgs.msg import ActionPrediction, SceneDescription
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from owled_ros.ros.conversions import CAMERA_MSG_TYPES, STATE_MSG_TYPES, action_message, key_values, scene_message
from owled_ros.ros.params import NodeParams, ParamError, declare_parameters, gate_config
from owled_ros.runtime.decode import InputError
from owled_ros.runtime.gate import STATE_PREFIX, GateConfig, GatedFrame, InputGate
from owled_ros.runtime.mailbox import LatestMailbox
from owled_ros.runtime.pairing import Pairing
from owled_ros.runtime.stats import FrameStats

if TYPE_CHECKING:
    from owled_ros.runtime.pipeline import DrivingPipeline

NODE_NAME = "owled_node"
WARN_THROTTLE_S = 5.0
WORKER_JOIN_S = 60.0  # the longest answer of a slow model on a loaded CPU
OUTPUT_DEPTH = 10


@dataclass(frozen=True)
class PendingFrame:
    frame: GatedFrame
    received: float  # perf_counter when the callback started
    callback_s: float  # node time spent in the callback (checks and decoding)


class OwledNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params: NodeParams = declare_parameters(self)  # ParamError before anything else starts
        self._gate = InputGate(gate_config(self.params))
        self._stats = FrameStats()
        self._mailbox: LatestMailbox[PendingFrame] = LatestMailbox()
        self._last_pairing: Pairing | None = None
        self._last_frame_at = time.monotonic()
        self._reported_rejects = 0
        self._camera_missing = False
        self._pipeline = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._active = threading.Event()
        self._subscriptions_io: list = []
        self._scene_pub = self._action_pub = None
        self._diag_pub = None
        self._diag_timer = None
        self.finalized = False

    # ---- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Imported here so that a bad parameter fails fast, before torch and transformers load.
        from owled_ros.model.prompt import FRAME_QUESTION
        from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline

        started = time.perf_counter()
        backend = None if self.params.backend == "deployed" else self.params.backend
        config = PipelineConfig(self.params.max_new_tokens, self.params.prompt or FRAME_QUESTION, self.params.ood_action)
        loaded: Future = Future()
        self._stop.clear()
        self._worker = threading.Thread(
            target=self._work, args=(lambda: load_pipeline(self.params.model, config, self.params.precision, backend, self.params.device), loaded),
            name="owled_inference", daemon=True,
        )
        self._worker.start()
        try:
            self._pipeline = loaded.result()
        except Exception as err:  # any loader failure leaves the node unconfigured, not dead
            self._worker.join(WORKER_JOIN_S)
            self._worker = None
            self.get_logger().error(f"cannot load model {self.params.model!r}: {err}")
            return TransitionCallbackReturn.FAILURE
        self._scene_pub = self.create_lifecycle_publisher(SceneDescription, self.params.scene_topic, OUTPUT_DEPTH)
        self._action_pub = self.create_lifecycle_publisher(ActionPrediction, self.params.action_topic, OUTPUT_DEPTH)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_DEPTH)
        self._diag_timer = self.create_timer(self.params.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"configured: model {self._pipeline.model_id} on backend {self._pipeline.backend} loaded in {time.perf_counter() - started:.1f} s"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._mailbox.clear()
        self._gate.reset()
        self._last_frame_at = time.monotonic()
        try:
            self._subscriptions_io = [
                self.create_subscription(CAMERA_MSG_TYPES[self.params.camera_type], self.params.camera_topic, self._on_camera, qos_profile_sensor_data),
                self.create_subscription(STATE_MSG_TYPES[self.params.state_type], self.params.state_topic, self._on_state, qos_profile_sensor_data),
            ]
        except Exception as err:  # rclpy reports nothing itself: say why activation failed
            self._stop_input()
            self.get_logger().error(f"cannot subscribe to the inputs: {err}")
            return TransitionCallbackReturn.FAILURE
        self._active.set()
        camera, state_sub = self._subscriptions_io  # topic_name: after remapping
        self.get_logger().info(
            f"active: {camera.topic_name} ({self.params.camera_type}) + {state_sub.topic_name} ({self.params.state_type})"
            f" -> {self._scene_pub.topic_name}, {self._action_pub.topic_name}"
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.finalized = True
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _stop_input(self) -> None:
        self._active.clear()
        for sub in self._subscriptions_io:
            self.destroy_subscription(sub)
        self._subscriptions_io = []
        self._mailbox.clear()

    def release(self) -> None:
        """Stop input, join the worker and drop the model; safe to call in any state."""
        self._stop_input()
        self._stop.set()
        if self._worker is not None:
            self._worker.join(WORKER_JOIN_S)
            if self._worker.is_alive():
                self.get_logger().error(f"inference worker did not stop within {WORKER_JOIN_S:.0f} s")
            self._worker = None
        self._pipeline = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self.destroy_publisher(self._diag_pub)
            self._diag_timer = self._diag_pub = None
        for pub in (self._scene_pub, self._action_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._scene_pub = self._action_pub = None

    # ---- input callbacks (executor thread) ------------------------------------------------------
    def _on_camera(self, msg: Image | CompressedImage) -> None:
        received = time.perf_counter()
        self._stats.add("received")
        self._last_frame_at = time.monotonic()
        try:
            frame = self._gate.frame(msg, time.monotonic_ns(), self.get_clock().now().nanoseconds)
        except InputError as err:
            self._reject(err)
            return
        if self._mailbox.put(PendingFrame(frame, received, time.perf_counter() - received)):
            self._stats.add("dropped")

    def _on_state(self, msg: object) -> None:
        try:
            self._gate.state(msg, time.monotonic_ns(), self.get_clock().now().nanoseconds)
        except InputError as err:
            self._reject(err)

    def _reject(self, err: InputError) -> None:
        """Count it; warn at most every WARN_THROTTLE_S, frames and states apart (a throttle is per call site)."""
        self._stats.reject(err.reason)
        so_far = f"{err}; {self._stats.snapshot().rejected_total} inputs rejected so far"
        if err.reason.startswith(STATE_PREFIX):
            self.get_logger().warning(f"vehicle state rejected ({err.reason}): {so_far}", throttle_duration_sec=WARN_THROTTLE_S)
        else:
            self.get_logger().warning(f"camera frame rejected ({err.reason}): {so_far}", throttle_duration_sec=WARN_THROTTLE_S)

    # ---- inference (worker thread) --------------------------------------------------------------
    def _work(self, load: Callable[[], DrivingPipeline], loaded: Future) -> None:
        """Loads the model, then runs every frame, all in this one thread.

        torch's OpenMP pool is per calling thread: a model loaded in the executor thread and run
        in this one gave two pools on two cores, and libgomp's oversubscribed waits halved the
        int8 speed (1.37 s a frame against 0.68; BENCHMARKS 7.13)."""
        try:
            loaded.set_result(load())
        except Exception as err:
            loaded.set_exception(err)
            return
        period = 1.0 / self.params.max_rate_hz
        next_start = 0.0
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, next_start - time.perf_counter())):
                break
            frame = self._mailbox.take(timeout=0.25)
            if frame is None or not self._active.is_set():
                continue
            next_start = time.perf_counter() + period
            try:
                self._process(frame)
            except Exception as err:  # a model or publish failure must not kill the node
                if self._stop.is_set():
                    break
                self._stats.add("errors")
                self.get_logger().error(f"frame failed: {err!r}", throttle_duration_sec=WARN_THROTTLE_S)

    def _process(self, pending: PendingFrame) -> None:
        start = time.perf_counter()
        pairing = self._gate.wait_and_pair(pending.frame)  # waits at most state_wait_s for a later state
        paired = time.perf_counter()
        result = self._pipeline.run(pending.frame.rgb, pairing.state, pairing.fresh)
        returned = time.perf_counter()
        if not self._active.is_set():
            return  # deactivated during inference: the result is dropped
        header = pending.frame.header
        self._scene_pub.publish(scene_message(header, result, pairing.state, self._pipeline.model_id))
        self._action_pub.publish(action_message(header, result))
        published = time.perf_counter()
        overhead_ms = (pending.callback_s + (paired - start) + (published - returned)) * 1e3
        self._last_pairing = pairing
        self._stats.frame_done(result.latency_ms, overhead_ms, (published - pending.received) * 1e3, result.state_fresh,
                               None if result.ood_score is None else result.out_of_distribution)

    # ---- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        camera_age = time.monotonic() - self._last_frame_at
        missing = self._active.is_set() and camera_age > self.params.camera_timeout_s
        if missing and not self._camera_missing:
            self._stats.add("camera_timeouts")
        self._camera_missing = missing
        snap = self._stats.snapshot()
        pairing = self._last_pairing
        level, message = DiagnosticStatus.OK, "running"
        if not self._active.is_set():
            message = "inactive"
        elif missing:
            level, message = DiagnosticStatus.WARN, f"no camera frame for {camera_age:.1f} s"
            self.get_logger().warning(
                f"no camera frame on {self._subscriptions_io[0].topic_name} for {camera_age:.1f} s",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
        elif snap.rejected_total > self._reported_rejects:
            level, message = DiagnosticStatus.WARN, f"{snap.rejected_total - self._reported_rejects} inputs rejected"
        elif snap.ood_rate is not None and snap.ood_rate > self.params.ood_warn_rate:
            level, message = DiagnosticStatus.WARN, f"{snap.ood_rate:.0%} of the latest frames out of distribution"
            self.get_logger().warning(
                f"{message}: the model's answers are not grounded on this camera (see docs/ood.md)",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
        elif pairing is not None and not pairing.fresh:
            level, message = DiagnosticStatus.WARN, "vehicle state stale or missing"
        self._reported_rejects = snap.rejected_total
        values: dict[str, object] = {
            "frames_received": snap.received,
            "frames_processed": snap.processed,
            "frames_dropped": snap.dropped,
            "frames_rejected": sum(n for r, n in snap.rejected.items() if not r.startswith(STATE_PREFIX)),
            "states_rejected": sum(n for r, n in snap.rejected.items() if r.startswith(STATE_PREFIX)),
            "clock_resets": self._gate.clock_resets,
            "states_buffered": self._gate.states_buffered,
            "errors": snap.errors,
            "camera_timeouts": snap.camera_timeouts,
            **{f"rejected.{reason}": n for reason, n in sorted(snap.rejected.items())},
            "state_fresh": pairing.fresh if pairing else False,
            "state_age_s": f"{pairing.age_s:.3f}" if pairing and pairing.age_s is not None else "none",
            "frames_with_stale_state": snap.stale_state,
            "camera_age_s": f"{camera_age:.3f}",
            "ood_available": self._pipeline is not None and self._pipeline.vlm.ood is not None,
            "frames_out_of_distribution": snap.out_of_distribution,
            "ood_rate": "none" if snap.ood_rate is None else f"{snap.ood_rate:.3f}",
        }
        for name, window in (("latency_ms", snap.latency_ms), ("overhead_ms", snap.overhead_ms), ("frame_age_ms", snap.age_ms)):
            if window is not None:
                values[f"{name}_p50"], values[f"{name}_p95"] = f"{window[0]:.2f}", f"{window[1]:.2f}"
        model_id = self._pipeline.model_id if self._pipeline is not None else ""
        values["model_id"] = model_id
        values["backend"] = self._pipeline.backend if self._pipeline is not None else ""
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [
            DiagnosticStatus(
                level=level, name=f"{self.get_fully_qualified_name()}: inference", message=message,
                hardware_id=model_id, values=key_values(values),
            )
        ]
        self._diag_pub.publish(array)


def _autostart(node: OwledNode) -> bool:
    for step in (node.trigger_configure, node.trigger_activate):
        if step() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal(f"autostart failed at {step.__name__}; see the error above")
            return False
    return True


def main(args: list[str] | None = None) -> int:
    """Entry point `owled_node`: exit 0 on SIGINT/SIGTERM or the shutdown transition, 1 if autostart fails, 2 on bad parameters."""
    rclpy.init(args=args)
    try:
        node = OwledNode()
    except ParamError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid configuration: {err}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.params.autostart and not _autostart(node):
            code = 1
        while code == 0 and rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
