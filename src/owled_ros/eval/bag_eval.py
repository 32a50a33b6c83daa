"""`owled bag eval`: a model on a recorded drive, through the real node or offline.

Online (default), three processes, as one would run them by hand: owled_node on the model
(use_sim_time), `owled bag record` on the camera and the node's outputs, and `owled bag play`
with /clock once the node and the recorder are up. The recorded bag is then scored.
Offline: the same DrivingPipeline in this process, frame by frame, behind the node's own input
gate (runtime/gate.py: checks, decoding, stream references, nearest-stamp state pairing), with
the bag's log time as the clock: what the node publishes when it has time for every frame. Decoding is greedy in both, so a
frame both modes processed gets the same action and the same text.

Outputs carry their camera frame's header; they are matched to frames and ground truth by
stamp. latency_ms: online, end to end (recorder log time of the later output minus that of
its camera frame: one process, one clock; the recorder may log the frame after the node got it,
so on a loaded machine this can come out below the model latency); offline, the pipeline's
wall time on the worker thread (decoding is the gate's, before it).
model_latency_ms: the pipeline's own (the messages' model_latency_ms). frames_dropped =
frames_in - frames_published: frames the busy node replaced in its single-slot mailbox and
frames it rejected, such as out-of-order stamps, which are also counted on their own.
"""
from __future__ import annotations

import json
import math
import queue
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from owled_ros.data.bag_read import DriveBag, read_messages, stamp_ns, to_plain
from owled_ros.errors import OwledError
from owled_ros.fsutil import write_text_atomic
from owled_ros.processes import ChildProcesses, log_tail
from owled_ros.runtime.gate import GateConfig, InputGate, replay

if TYPE_CHECKING:
    from owled_ros.runtime.pipeline import DrivingPipeline

RECORDED = "recorded"
PLAY_DELAY_S = 1.0
"""Pause between the player seeing its subscribers and its first message (PlayOptions.delay_s)."""
REPORT_JSON, REPORT_MD, REPORT_PLOT = "report.json", "report.md", "report.png"


@dataclass(frozen=True)
class EvalConfig:
    model: str = "default"
    max_new_tokens: int = 64
    max_state_age_s: float = GateConfig.max_state_age_s
    state_wait_s: float = GateConfig.state_wait_s
    max_future_stamp_s: float = GateConfig.max_future_stamp_s
    max_speed_mps: float = GateConfig.max_speed_mps
    max_rate_hz: float = 10.0
    """The node's max_rate_hz (online only)."""
    hz: float | None = None
    """Camera rate of the replay; None: as recorded."""
    scene_topic: str = "/owled/scene"
    action_topic: str = "/owled/action"
    start_timeout_s: float = 300.0
    """Longest wait for the node to load its model, and for its first answer."""
    settle_s: float = 5.0
    """After playback: stop once no answer came for max(settle_s, 2.5 x the slowest answer)."""


@dataclass(frozen=True)
class FrameOutput:
    stamp_ns: int
    action: str
    text: str
    ego_speed_mps: float | None
    """The speed the model was given (None: no fresh vehicle state was paired with the frame)."""
    model_latency_ms: float
    latency_ms: float | None


@dataclass(frozen=True)
class RunResult:
    outputs: tuple[FrameOutput, ...]
    model_id: str
    wall_s: float
    rejected: dict[str, int] | None = None
    """Inputs the gate rejected, by reason (offline; online the node counts them on /diagnostics)."""


def gate_config(drive: DriveBag, config: EvalConfig) -> GateConfig:
    """The input gate the node runs for this bag, with the node's defaults for the rest."""
    return GateConfig(
        camera_type=drive.camera_type, state_type=drive.state_type, max_state_age_s=config.max_state_age_s,
        state_wait_s=config.state_wait_s, max_future_stamp_s=config.max_future_stamp_s, max_speed_mps=config.max_speed_mps,
    )


OnOutput = Callable[[FrameOutput], None]


class OutputCollector:
    """Joins a frame's SceneDescription and ActionPrediction (as plain dicts) by header stamp."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.camera_log_ns: dict[int, int] = {}
        self._partial: dict[int, dict[str, tuple[int, dict]]] = {}
        self.outputs: list[FrameOutput] = []
        self.model_id = ""

    def add(self, topic: str, log_ns: int, msg: dict) -> FrameOutput | None:
        """The frame's output once both messages of a stamp are in; None until then."""
        stamp = int(msg["header"]["stamp"]["sec"]) * 1_000_000_000 + int(msg["header"]["stamp"]["nanosec"])
        parts = self._partial.setdefault(stamp, {})
        parts[topic] = (log_ns, msg)
        if topic == self.config.scene_topic:
            self.model_id = msg["model_id"]
        if len(parts) < 2:
            return None
        del self._partial[stamp]
        (_, scene), (_, action) = parts[self.config.scene_topic], parts[self.config.action_topic]
        camera_ns = self.camera_log_ns.get(stamp)
        done_ns = max(ns for ns, _ in parts.values())
        speed = float(scene["ego_speed_mps"])
        out = FrameOutput(
            stamp, action["action_name"], scene["text"], None if math.isnan(speed) else speed, float(action["model_latency_ms"]),
            (done_ns - camera_ns) / 1e6 if camera_ns is not None else None,
        )
        self.outputs.append(out)
        return out


# ---- online ---------------------------------------------------------------------------------
def _owled_bag(*args: str) -> list[str]:
    """`owled bag ...` in this interpreter (the venv's console script may not be on PATH)."""
    return [sys.executable, "-m", "owled_ros.cli", "bag", *args]


def _node_args(drive: DriveBag, config: EvalConfig) -> list[str]:
    params = {
        "model": config.model, "camera_topic": drive.camera_topic, "camera_type": drive.camera_type,
        "max_new_tokens": config.max_new_tokens, "max_state_age_s": float(config.max_state_age_s),
        "state_wait_s": float(config.state_wait_s), "max_future_stamp_s": float(config.max_future_stamp_s),
        "max_speed_mps": float(config.max_speed_mps),
        "max_rate_hz": float(config.max_rate_hz), "scene_topic": config.scene_topic, "action_topic": config.action_topic,
        "use_sim_time": "true",
    }
    if drive.state_topic:
        params |= {"state_topic": drive.state_topic, "state_type": drive.state_type}
    args = [sys.executable, "-m", "owled_ros.ros.node", "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return args


def run_online(drive: DriveBag, config: EvalConfig, work: Path, on_output: OnOutput | None = None) -> RunResult:
    """Node + recorder + player; the outputs as recorded (work/recorded), with end-to-end latency."""
    recorded = work / RECORDED
    if recorded.exists():
        raise OwledError(f"{recorded}: already exists (choose another --out or remove it)")
    inputs = [t for t in (drive.camera_topic, drive.state_topic) if t]
    outputs = [config.scene_topic, config.action_topic]
    rate = config.hz / drive.hz if config.hz and drive.hz else 1.0
    live = OutputCollector(config)
    children = ChildProcesses(work)
    started = time.monotonic()
    try:
        children.start("node", _node_args(drive, config))
        children.start("record", _owled_bag("record", "--topics", *inputs, *outputs, "--out", str(recorded), "--echo", *outputs), pipe_stdout=True)
        ready: set[str] = set()

        def drain(timeout: float) -> None:
            try:
                line = children.lines.get(timeout=timeout)
            except queue.Empty:
                return
            if line.startswith("{"):
                item = json.loads(line)
                out = live.add(item["topic"], item["log_ns"], item["msg"])
                if out is not None and on_output is not None:
                    on_output(out)
            elif line.startswith("recording "):
                ready.add(line.split()[1])

        while not set(outputs) <= ready:  # the recorder sees the node's publishers once its model is loaded
            children.check_alive("node")
            children.check_alive("record")
            if time.monotonic() - started > config.start_timeout_s:
                raise OwledError(f"owled_node did not come up within {config.start_timeout_s:.0f} s; last lines of {work}/node.log:\n{log_tail(work / 'node.log')}")
            drain(0.2)
        # Two subscribers per input topic: the node (active) and the recorder; the delay lets
        # them match the player back, or the node's best-effort inputs drop the first messages.
        player = children.start(
            "play", _owled_bag("play", str(drive.path), "--topics", *inputs, "--rate", f"{rate:g}", "--wait-subscribers", "2", "--delay", f"{PLAY_DELAY_S:g}")
        )
        while player.poll() is None:
            children.check_alive("node")
            drain(0.1)
        if player.returncode != 0:
            raise OwledError(f"bag play failed (code {player.returncode}); last lines of {work}/play.log:\n{log_tail(work / 'play.log')}")
        played = last = time.monotonic()
        seen = len(live.outputs)
        while True:
            children.check_alive("node")
            drain(0.1)
            if len(live.outputs) > seen:
                seen, last = len(live.outputs), time.monotonic()
            slowest_s = max((o.model_latency_ms for o in live.outputs), default=0.0) / 1e3
            quiet_s = max(config.settle_s, 2.5 * slowest_s) if live.outputs else config.start_timeout_s
            if time.monotonic() - max(last, played) > quiet_s:
                break
        if children.stop("record", 30.0) != 0:
            raise OwledError(f"bag record failed; last lines of {work}/record.log:\n{log_tail(work / 'record.log')}")
        children.stop("node", 60.0)
    finally:
        children.stop_all()
    final = OutputCollector(config)
    for m in read_messages(recorded, [drive.camera_topic, *outputs]):
        if m.topic == drive.camera_topic:
            final.camera_log_ns.setdefault(stamp_ns(m.msg.header), m.log_ns)
        else:
            final.add(m.topic, m.log_ns, to_plain(m.msg))
    return RunResult(tuple(final.outputs), final.model_id, time.monotonic() - started)


# ---- offline --------------------------------------------------------------------------------
def run_offline(
    drive: DriveBag, config: EvalConfig, on_output: OnOutput | None = None, pipeline: DrivingPipeline | None = None
) -> RunResult:
    """Every frame the node would accept, through the node's input gate (runtime.gate.replay).

    pipeline: one already loaded for config.model (a fleet worker loads its model once for many
    bags); None loads it here.

    The model runs on one worker thread, as in the node: torch's intra-op threading behaves
    differently on the main thread (on the loaded 2-core machine the main thread ran the
    same model 5 to 40 times slower), and the same threading keeps the arithmetic the same.
    """
    from concurrent.futures import ThreadPoolExecutor

    from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline

    started = time.monotonic()
    if pipeline is None:
        pipeline = load_pipeline(config.model, PipelineConfig(config.max_new_tokens))
    gate = InputGate(gate_config(drive, config))
    rejected: Counter = Counter()
    messages = ((m.topic == drive.camera_topic, m.log_ns, m.msg) for m in drive.stream())
    outputs = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="owled_inference") as worker:
        for frame, pairing in replay(messages, gate, rejected):
            t0 = time.perf_counter()
            result = worker.submit(pipeline.run, frame.rgb, pairing.state, pairing.fresh).result()
            speed = pairing.state.speed_mps if pairing.fresh else None
            out = FrameOutput(
                frame.stamp_ns, result.action.action.name.lower(), result.scene.text, speed, result.latency_ms, (time.perf_counter() - t0) * 1e3
            )
            outputs.append(out)
            if on_output is not None:
                on_output(out)
    return RunResult(tuple(outputs), pipeline.model_id, time.monotonic() - started, dict(rejected))


# ---- scoring --------------------------------------------------------------------------------
def _p50_p95(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def score(drive: DriveBag, run: RunResult, mode: str, config: EvalConfig) -> dict:
    """report.json: summary metrics and one record per camera frame of the bag."""
    from owled_ros.eval.metrics import rouge_l

    by_stamp = {}
    for out in run.outputs:
        by_stamp.setdefault(out.stamp_ns, out)
    check = drive.stamp_check()
    frames, refs, hyps, correct, matched = [], [], [], [], set()
    for f in drive.frames:
        out = by_stamp.get(f.stamp_ns) if f.stamp_ns not in matched else None
        matched.add(f.stamp_ns)
        truth = drive.truth.get(f.stamp_ns)
        record = {
            "index": f.index, "stamp_ns": f.stamp_ns, "published": out is not None,
            "out_of_order": f.index in check.out_of_order, "after_gap": f.index in check.gaps,
            "truth_action": truth.action.name.lower() if truth else None,
            "action": out.action if out else None, "text": out.text if out else None,
            "ego_speed_mps": out.ego_speed_mps if out else None,
            "latency_ms": out.latency_ms if out else None, "model_latency_ms": out.model_latency_ms if out else None,
            "correct": None, "rouge_l": None,
        }
        if out is not None and truth is not None:
            record["correct"] = out.action == record["truth_action"]
            record["rouge_l"] = rouge_l([truth.description], [out.text])
            refs.append(truth.description)
            hyps.append(out.text)
            correct.append(record["correct"])
        frames.append(record)
    published = sum(r["published"] for r in frames)
    stamps = {f.stamp_ns for f in drive.frames}
    latency = _p50_p95([o.latency_ms for o in run.outputs if o.latency_ms is not None])
    model_latency = _p50_p95([o.model_latency_ms for o in run.outputs])
    return {
        "bag": str(drive.path), "mode": mode, "model": config.model, "model_id": run.model_id,
        "camera_topic": drive.camera_topic, "state_topic": drive.state_topic,
        "bag_hz": drive.hz, "replay_hz": (config.hz or drive.hz) if mode == "online" else None,
        "frames_in": len(drive.frames), "frames_published": published, "frames_dropped": len(drive.frames) - published,
        "out_of_order": len(check.out_of_order), "gaps": len(check.gaps), "frames_missing_in_gaps": check.missing,
        "outputs_unmatched": sum(o.stamp_ns not in stamps for o in run.outputs),
        "frames_scored": len(correct),
        "action_accuracy": sum(correct) / len(correct) if correct else None,
        "rouge_l": rouge_l(refs, hyps) if refs else None,
        "latency_p50_ms": latency[0], "latency_p95_ms": latency[1],
        "model_latency_p50_ms": model_latency[0], "model_latency_p95_ms": model_latency[1],
        "inputs_rejected": run.rejected,
        "max_new_tokens": config.max_new_tokens, "wall_s": run.wall_s,
        "bag_info": drive.info,
        "frames": frames,
    }


def _fmt(value: object, spec: str = ".3f") -> str:
    return "n/a" if value is None else (format(value, spec) if isinstance(value, float) else str(value))


def report_markdown(report: dict) -> str:
    keys = (
        "mode", "model", "model_id", "frames_in", "frames_published", "frames_dropped", "out_of_order", "gaps",
        "frames_missing_in_gaps", "frames_scored", "action_accuracy", "rouge_l", "latency_p50_ms", "latency_p95_ms",
        "model_latency_p50_ms", "model_latency_p95_ms",
    )
    lines = [f"# Bag evaluation: {report['bag']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(report[k])} |" for k in keys]
    lines += ["", "| # | stamp (s) | truth | predicted | ok | latency ms | description |", "|---|---|---|---|---|---|---|"]
    for f in report["frames"]:
        flags = (" (out of order)" if f["out_of_order"] else "") + (" (after gap)" if f["after_gap"] else "")
        ok = {True: "yes", False: "no", None: ""}[f["correct"]]
        text = (f["text"] or "not published").replace("|", "/")
        lines.append(
            f"| {f['index']}{flags} | {f['stamp_ns'] / 1e9:.3f} | {f['truth_action'] or ''} | {f['action'] or ''} | {ok} "
            f"| {_fmt(f['latency_ms'], '.0f')} | {text} |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: Path) -> None:
    """Per-frame latency (top) and a correctness timeline (bottom): green right, red wrong, grey not published."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = report["frames"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    pub = [f for f in frames if f["published"]]
    if any(f["latency_ms"] is not None for f in pub):
        top.plot([f["index"] for f in pub], [f["latency_ms"] for f in pub], "o-", label="end to end" if report["mode"] == "online" else "decode + model")
    top.plot([f["index"] for f in pub], [f["model_latency_ms"] for f in pub], "s--", label="model")
    top.set_ylabel("latency (ms)")
    top.legend(loc="upper right")
    top.set_title(f"{report['model_id'] or report['model']} ({report['mode']}): {report['frames_published']}/{report['frames_in']} published")
    colors = {True: "tab:green", False: "tab:red", None: "tab:blue"}
    bottom.bar(
        [f["index"] for f in frames], 1.0, width=0.9,
        color=[colors[f["correct"]] if f["published"] else "lightgrey" for f in frames],
    )
    for f in frames:
        if f["out_of_order"] or f["after_gap"]:
            bottom.text(f["index"], 0.5, "o" if f["out_of_order"] else "g", ha="center", va="center")
    bottom.set_yticks([])
    bottom.set_xlabel("camera frame (green correct, red wrong, grey not published; o out of order, g after a gap)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    write_text_atomic(out / REPORT_MD, report_markdown(report))
    plot_report(report, out / REPORT_PLOT)


def evaluate_bag(drive: DriveBag, config: EvalConfig, out: Path, offline: bool = False, on_output: OnOutput | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run = run_offline(drive, config, on_output) if offline else run_online(drive, config, out, on_output)
    report = score(drive, run, "offline" if offline else "online", config)
    write_report(report, out)
    return report
