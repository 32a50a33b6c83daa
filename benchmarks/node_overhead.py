"""owled_node beyond the model: per-frame node overhead, memory under a 30 Hz camera, end-to-end latency.

The node runs as its own process (the `owled_node` console script) and this script feeds
it over confined DDS, exactly as a camera driver would:

    source scripts/env.sh
    nice -n 10 python benchmarks/node_overhead.py overhead --frames 150   # tiny model, 1280x720
    nice -n 10 python benchmarks/node_overhead.py soak --minutes 3        # default model, 30 Hz
    nice -n 10 python benchmarks/node_overhead.py soak --minutes 3 --model tiny --max-new-tokens 8  # many inferences
    nice -n 10 python benchmarks/node_overhead.py latency --frames 12     # default model, one frame at a time

Each prints one JSON object; --out FILE also writes it there.

Overhead is what the node itself adds around DrivingPipeline.run: the subscription
callback (field checks, state pairing, mailbox), the conversion to RGB, and building and
publishing both outputs; the node measures it per frame and reports p50/p95 on
/diagnostics. "external_overhead_ms" is measured here instead: output arrival minus frame
publication minus the model latency the node reports, so it adds DDS transport and the
(de)serialization of the frame and of both outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from sensor_msgs.msg import CompressedImage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from test_node_support import Harness, NodeProcess, image_msg, odometry_msg, save_tiny_model, stamp, stamp_key  # noqa: E402

WIDTH, HEIGHT = 1280, 720


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p95, worst = np.percentile(values, [50, 95, 100])
    return {"n": len(values), "p50": round(float(p50), 2), "p95": round(float(p95), 2), "max": round(float(worst), 2)}


def _jpeg_frame(now: int) -> CompressedImage:
    import cv2

    rgb = image_msg(now, WIDTH, HEIGHT)
    pixels = np.frombuffer(bytes(rgb.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
    smooth = cv2.GaussianBlur(pixels, (31, 31), 0)  # camera-like content, about 100 KB as JPEG
    msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", smooth)[1].tobytes())
    msg.header = rgb.header
    return msg


class Session:
    """One owled_node process plus the harness that feeds it."""

    def __init__(self, workdir: Path, params: dict[str, object], camera_type: type | None = None) -> None:
        self.node = NodeProcess(workdir / f"owled_node_{time.monotonic_ns()}.log", params)
        rclpy.init()
        self.harness = Harness(**({"camera_type": camera_type} if camera_type else {}))
        self.harness.wait_for_node(self.node, timeout=240)
        self.published_at: dict[tuple[int, int, str], float] = {}

    def publish(self, frame, speed: float = 10.0) -> None:
        now = time.time_ns()
        frame.header.stamp = stamp(now)
        self.harness.state.publish(odometry_msg(now, speed))
        self.harness.camera.publish(frame)
        self.published_at[stamp_key(frame.header)] = time.monotonic()

    def outputs(self) -> list[tuple[float, float, float]]:
        """(frame age at arrival s, model latency s, arrival time) for every action received."""
        return [
            (t - self.published_at[stamp_key(m.header)], m.model_latency_ms / 1e3, t)
            for t, m in self.harness.actions
            if stamp_key(m.header) in self.published_at
        ]

    def close(self) -> int:
        self.harness.close()
        rclpy.shutdown()
        code, _ = self.node.interrupt(timeout=60)
        self.node.close()
        return code


def overhead(args: argparse.Namespace) -> dict:
    model = save_tiny_model(args.workdir / "tiny")
    results = {}
    for name, make in (
        ("rgb8", lambda: image_msg(time.time_ns(), WIDTH, HEIGHT, "rgb8")),
        ("bgra8", lambda: image_msg(time.time_ns(), WIDTH, HEIGHT, "bgra8")),
        ("jpeg", lambda: _jpeg_frame(time.time_ns())),
    ):
        session = Session(
            args.workdir,
            {"model": model, "max_new_tokens": 1, "max_rate_hz": 100.0, "diagnostics_period_s": 1.0,
             "camera_type": "compressed" if name == "jpeg" else "image"},
            CompressedImage if name == "jpeg" else None,
        )
        frame = make()
        try:
            for _ in range(args.frames):  # one frame at a time (5 Hz at most): no queueing in the numbers
                before = len(session.harness.actions)
                session.publish(frame)
                session.harness.spin_until(lambda: len(session.harness.actions) > before, 10)
                session.harness.spin_for(0.1)
            values = session.harness.wait_diag("frames_processed", args.frames * 0.95)
            outs = session.outputs()
            results[name] = {
                "frames": args.frames,
                "processed": int(values["frames_processed"]),
                "node_overhead_ms": {"p50": float(values["overhead_ms_p50"]), "p95": float(values["overhead_ms_p95"])},
                "external_overhead_ms": _percentiles([(age - model_s) * 1e3 for age, model_s, _ in outs]),
                "model_latency_ms": _percentiles([model_s * 1e3 for _, model_s, _ in outs]),
            }
        finally:
            session.close()
    return {"benchmark": "overhead", "size": f"{WIDTH}x{HEIGHT}", "model": "tiny (max_new_tokens 1)", "results": results}


def _model(args: argparse.Namespace) -> str | Path:
    return save_tiny_model(args.workdir / "tiny") if args.model == "tiny" else args.model


def soak(args: argparse.Namespace) -> dict:
    session = Session(args.workdir, {"model": _model(args), "max_new_tokens": args.max_new_tokens, "diagnostics_period_s": 2.0})
    proc = psutil.Process(session.node.proc.pid)
    frame = image_msg(time.time_ns(), WIDTH, HEIGHT, "bgra8")
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    next_sample = start
    period = 1 / 30
    next_frame = start
    try:
        while time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if now >= next_frame:
                session.publish(frame)
                next_frame += period
            if now >= next_sample:
                rss.append((now - start, proc.memory_info().rss / 2**20))
                next_sample += 5.0
            rclpy.spin_once(session.harness.node, timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        values = session.harness.diag_values()
        sent = len(session.published_at)
        outs = session.outputs()
    finally:
        code = session.close()
    warm = [(t, m) for t, m in rss if t >= 30.0]
    slope = float(np.polyfit([t for t, _ in warm], [m for _, m in warm], 1)[0] * 60) if len(warm) > 2 else None
    return {
        "benchmark": "soak",
        "minutes": args.minutes,
        "input": f"{WIDTH}x{HEIGHT} bgra8 Image + Odometry at 30 Hz",
        "model": f"{args.model}, max_new_tokens {args.max_new_tokens}",
        "frames_sent": sent,
        "frames_received": int(values["frames_received"]),
        "frames_processed": int(values["frames_processed"]),
        "frames_dropped": int(values["frames_dropped"]),
        "rss_mb": {
            "after_30s": round(warm[0][1], 1) if warm else None,
            "end": round(rss[-1][1], 1),
            "max": round(max(m for _, m in rss), 1),
            "slope_mb_per_min_after_30s": round(slope, 3) if slope is not None else None,
            "samples": [(round(t), round(m, 1)) for t, m in rss],
        },
        "frame_age_at_output_ms": _percentiles([age * 1e3 for age, _, _ in outs]),
        "model_latency_ms": _percentiles([m * 1e3 for _, m, _ in outs]),
        "exit_code": code,
    }


def latency(args: argparse.Namespace) -> dict:
    session = Session(args.workdir, {"model": _model(args), "max_new_tokens": args.max_new_tokens, "diagnostics_period_s": 2.0})
    frame = image_msg(time.time_ns(), WIDTH, HEIGHT, "rgb8")
    try:
        for _ in range(args.frames):
            before = len(session.harness.actions)
            session.publish(frame)
            session.harness.spin_until(lambda: len(session.harness.actions) > before, 120)
        outs = session.outputs()
        values = session.harness.diag_values()
    finally:
        session.close()
    return {
        "benchmark": "latency",
        "input": f"{WIDTH}x{HEIGHT} rgb8, one frame at a time",
        "model": f"{args.model}, max_new_tokens {args.max_new_tokens}",
        "end_to_end_ms": _percentiles([age * 1e3 for age, _, _ in outs]),
        "model_latency_ms": _percentiles([m * 1e3 for _, m, _ in outs]),
        "node_overhead_ms": {"p50": float(values["overhead_ms_p50"]), "p95": float(values["overhead_ms_p95"])},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("overhead", "soak", "latency"))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--model", default="default", help="soak/latency: model dir, 'default', or 'tiny' (a test-size model)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=None, help="for logs and the tiny model (default: a new temp dir)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="owled_node_bench."))
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = {"overhead": overhead, "soak": soak, "latency": latency}[args.part](args)
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    result["wall_s"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
