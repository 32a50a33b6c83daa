"""Soak of owled_node's input gate: the default model under a 30 Hz camera for 30 minutes.

owled_node runs as its own process (the console script) and this script feeds it over
confined DDS as a CARLA bridge would: 800x600 bgra8 frames and odometry stamped like each
frame at 30 Hz, the odometry's speed changing every frame, plus a steady share of malformed
frames and states (a rotating set of the gate's rejection categories). Measured: the node's
RSS every 5 s (growth from the first sample after warm-up to the end), the age of each
answered frame at its output (bounded when no queue builds up), the state buffer's length,
the gate's counters on /diagnostics, and whether every answered frame carried the speed of
the odometry stamped like it.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/input_soak.py --minutes 30 --results benchmarks/input_soak.json
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
import rclpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from test_node_support import Harness, NodeProcess, image_msg, odometry_msg, stamp, stamp_key  # noqa: E402

from owled_ros.fsutil import write_text_atomic  # noqa: E402
from owled_ros.machine import machine_info, machine_line  # noqa: E402

WIDTH, HEIGHT, HZ = 800, 600, 30.0
WARMUP_S = 120.0  # model load and first inferences; RSS growth is measured after this
RSS_PERIOD_S = 5.0
BAD_EVERY = 10  # one camera message in BAD_EVERY, and one odometry message in BAD_EVERY, is malformed


def _speed(i: int) -> float:
    return float(i % 25)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _bad_frame(now: int, k: int):
    msg = image_msg(now, WIDTH, HEIGHT, "bgra8")
    kind = k % 4
    if kind == 0:
        msg.data = bytes(msg.data) + b"\x00" * 64  # long_data
    elif kind == 1:
        msg.header.stamp.sec = 2**31 - 1  # stamp_future
    elif kind == 2:
        msg.header.stamp = stamp(now - 10_000_000_000)  # stamp_backwards
    else:
        msg.encoding = "yuv422"  # unknown_encoding
    return msg


def _bad_odometry(now: int, k: int):
    return [odometry_msg(now, 1e9), odometry_msg(now, float("nan")), odometry_msg(now - 10_000_000_000, 1.0)][k % 3]


def soak(minutes: float, model: str, max_new_tokens: int, workdir: Path) -> dict:
    node = NodeProcess(
        workdir / "owled_node.log",
        {"model": model, "max_new_tokens": max_new_tokens, "diagnostics_period_s": 2.0, "camera_topic": "/camera/image_raw"},
    )
    rclpy.init()
    harness = Harness()
    speed_of: dict[tuple[int, int, str], float] = {}
    sent_at: dict[tuple[int, int, str], float] = {}
    rss: list[tuple[float, float]] = []
    buffered: list[int] = []
    frame = image_msg(time.time_ns(), WIDTH, HEIGHT, "bgra8")
    try:
        harness.wait_for_node(node, timeout=300)
        start = next_frame = next_sample = time.monotonic()
        i = 0
        while time.monotonic() - start < minutes * 60:
            now_m = time.monotonic()
            if now_m >= next_frame:
                now = time.time_ns()
                if i % BAD_EVERY == BAD_EVERY - 1:
                    harness.camera.publish(_bad_frame(now, i // BAD_EVERY))
                    harness.state.publish(_bad_odometry(now, i // BAD_EVERY))
                else:
                    frame.header.stamp = stamp(now)
                    harness.state.publish(odometry_msg(now, _speed(i)))
                    harness.camera.publish(frame)
                    speed_of[stamp_key(frame.header)], sent_at[stamp_key(frame.header)] = _speed(i), now_m
                i += 1
                next_frame += 1 / HZ
            if now_m >= next_sample:
                rss.append((now_m - start, _rss_mb(node.proc.pid)))
                buffered.append(int(harness.diag_values().get("states_buffered", 0)))
                next_sample += RSS_PERIOD_S
            rclpy.spin_once(harness.node, timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        harness.spin_for(5.0)
        values = harness.diag_values()
    finally:
        harness.close()
        rclpy.shutdown()
        code, _ = node.interrupt(timeout=60)
        node.close()
    scenes = [(t, m) for t, m in harness.scenes if stamp_key(m.header) in speed_of]
    wrong = sum(not (m.vehicle_state_fresh and m.ego_speed_mps == speed_of[stamp_key(m.header)]) for _, m in scenes)
    ages = [(t - sent_at[stamp_key(m.header)]) * 1e3 for t, m in scenes]
    warm = [m for t, m in rss if t >= WARMUP_S]
    return {
        "minutes": minutes,
        "model": model,
        "max_new_tokens": max_new_tokens,
        "input": f"{WIDTH}x{HEIGHT} bgra8 Image + Odometry at {HZ:g} Hz, 1 in {BAD_EVERY} of each malformed",
        "camera_messages": i,
        "frames_valid_sent": len(speed_of),
        "answered": len(scenes),
        "answered_with_wrong_speed": wrong,
        "rss_mb": {
            "after_warmup": round(warm[0], 1) if warm else None,
            "end": round(rss[-1][1], 1),
            "max_after_warmup": round(max(warm), 1) if warm else None,
            "growth_pct": round((warm[-1] / warm[0] - 1) * 100, 2) if len(warm) > 1 else None,
            "samples": [(round(t), round(m, 1)) for t, m in rss],
        },
        "frame_age_at_output_ms": {k: round(float(v), 1) for k, v in zip(("p50", "p95", "max"), np.percentile(ages, [50, 95, 100]))} if ages else {},
        "states_buffered_max": max(buffered, default=0),
        "diagnostics": {k: v for k, v in values.items() if k.startswith(("frames_", "states_", "rejected.", "clock_", "errors"))},
        "exit_code": code,
    }


def markdown(results: dict) -> str:
    r = results
    d, rss, age = r["diagnostics"], r["rss_mb"], r["frame_age_at_output_ms"]
    rejects = ", ".join(f"{k.removeprefix('rejected.')} {v}" for k, v in sorted(d.items()) if k.startswith("rejected."))
    rows = [
        ("input", r["input"]),
        ("model", f"{r['model']}, max_new_tokens {r['max_new_tokens']}"),
        ("duration", f"{r['minutes']:g} min"),
        ("camera messages sent / valid", f"{r['camera_messages']} / {r['frames_valid_sent']}"),
        ("frames received / processed / dropped (mailbox)", f"{d.get('frames_received')} / {d.get('frames_processed')} / {d.get('frames_dropped')}"),
        ("answered frames with a speed other than their odometry's", f"{r['answered_with_wrong_speed']} of {r['answered']}"),
        ("rejected (by reason)", rejects or "none"),
        ("node RSS after warm-up -> end (growth)", f"{rss['after_warmup']} -> {rss['end']} MB ({rss['growth_pct']} %)"),
        ("frame age at output p50 / p95 / max", f"{age.get('p50')} / {age.get('p95')} / {age.get('max')} ms"),
        ("states buffered (max seen)", str(r["states_buffered_max"])),
        ("node exit code on SIGINT", str(r["exit_code"])),
    ]
    lines = [machine_line(r["machine"]), "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    # A DDS domain of this process's own, as scripts/env.sh gives each shell: regenerate.py runs
    # benchmarks side by side from one environment, and two DDS benchmarks must never meet.
    os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 90 + 10)
    with tempfile.TemporaryDirectory() as tmp:
        results = soak(args.minutes, args.model, args.max_new_tokens, Path(tmp))
    results["machine"] = machine_info(command=" ".join(["python", *sys.argv]))
    write_text_atomic(args.results, json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
