"""Scores of a closed-loop episode, read back from its rosbag2 (no ROS needed).

Ground truth: one std_msgs/String JSON record per world step on /owled_sim/ground_truth
({"stamp_ns", "t_s", "speed_mps", "route_s", "route_length_m", "crash_vehicle", "crash_object",
"out_of_road", "arrived", "gap_m", "time_gap_s", "frame", "expert_action" on frame steps, ...}).
Actions: owled_msgs/ActionPrediction as the node published them, matched to frames by stamp.

- distance_m / route_completion: route progress over the episode, and the share of the route
  ahead of the start that was driven;
- collisions: contacts with vehicles or objects (each contact counted once, however long);
- off_road: 1 when the episode ended off the road;
- unsafe_gap_s: sim seconds with a vehicle ahead in the ego lane closer than UNSAFE_GAP_S;
- action_agreement: the node's action equals the rule expert's on the ground truth of the same
  frame, over the frames the node answered;
- latency: the model's own (model_latency_ms) and frame-to-answer on the wall clock (bag log
  times of the camera frame and the answer).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from owled_ros.data.bag_read import read_messages, stamp_ns

UNSAFE_GAP_S = 1.0
GROUND_TRUTH_TOPIC = "/owled_sim/ground_truth"
CAMERA_TOPIC = "/carla/ego_vehicle/rgb_front/image"
ACTION_TOPIC = "/owled/action"


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def score_records(steps: list[dict], actions: list[dict], camera_log_ns: dict[int, int]) -> dict:
    """steps: ground-truth records in order; actions: {"stamp_ns", "log_ns", "action_name", "model_latency_ms"}."""
    if not steps:
        return {"steps": 0}
    dt = steps[1]["t_s"] - steps[0]["t_s"] if len(steps) > 1 else 0.0
    start, end = steps[0], steps[-1]
    route_left = start["route_length_m"] - start["route_s"]
    distance = (end["route_s"] - start["route_s"]) if math.isfinite(end["route_s"]) else float("nan")
    collisions = 0
    was = False
    for s in steps:
        now = bool(s["crash_vehicle"] or s["crash_object"])
        collisions += now and not was
        was = now
    frames = {s["stamp_ns"]: s for s in steps if s.get("frame")}
    answered = [a for a in actions if a["stamp_ns"] in frames]
    agree = [a["action_name"] == frames[a["stamp_ns"]]["expert_action"] for a in answered]
    model_ms = [a["model_latency_ms"] for a in answered]
    wall_ms = [(a["log_ns"] - camera_log_ns[a["stamp_ns"]]) / 1e6 for a in answered if a["stamp_ns"] in camera_log_ns]
    return {
        "steps": len(steps), "sim_s": round(end["t_s"] - start["t_s"] + dt, 3),
        "distance_m": distance, "route_completion": distance / route_left if route_left > 0 else None,
        "mean_speed_mps": float(np.mean([s["speed_mps"] for s in steps])),
        "collisions": collisions, "off_road": int(bool(end["out_of_road"])), "arrived": bool(end["arrived"]),
        "unsafe_gap_s": round(dt * sum(1 for s in steps if s["time_gap_s"] is not None and s["time_gap_s"] < UNSAFE_GAP_S), 3),
        "frames": len(frames), "answered": len({a["stamp_ns"] for a in answered}), "answers": len(answered),
        "action_agreement": float(np.mean(agree)) if agree else None,
        "actions": {name: sum(a["action_name"] == name for a in answered) for name in sorted({a["action_name"] for a in answered})},
        "model_latency_p50_ms": _p(model_ms, 50), "model_latency_p95_ms": _p(model_ms, 95),
        "answer_latency_p50_ms": _p(wall_ms, 50), "answer_latency_p95_ms": _p(wall_ms, 95),
    }


def read_episode(bag: Path) -> tuple[list[dict], list[dict], dict[int, int]]:
    steps, actions, camera = [], [], {}
    for m in read_messages(Path(bag), [GROUND_TRUTH_TOPIC, ACTION_TOPIC, CAMERA_TOPIC]):
        if m.topic == GROUND_TRUTH_TOPIC:
            steps.append(json.loads(m.msg.data))
        elif m.topic == CAMERA_TOPIC:
            camera.setdefault(stamp_ns(m.msg.header), m.log_ns)
        else:
            actions.append({
                "stamp_ns": stamp_ns(m.msg.header), "log_ns": m.log_ns, "action_name": m.msg.action_name,
                "model_latency_ms": float(m.msg.model_latency_ms),
            })
    return steps, actions, camera


def score_bag(bag: Path) -> dict:
    return score_records(*read_episode(bag))


def summarize(episodes: list[dict]) -> dict:
    """Mean over episodes (sums for counts) of one model's scores."""
    def mean(key: str) -> float | None:
        values = [e[key] for e in episodes if e.get(key) is not None and not (isinstance(e[key], float) and math.isnan(e[key]))]
        return float(np.mean(values)) if values else None

    return {
        "episodes": len(episodes), "route_completion": mean("route_completion"), "distance_m": mean("distance_m"),
        "mean_speed_mps": mean("mean_speed_mps"), "collisions": sum(e.get("collisions", 0) for e in episodes),
        "off_road": sum(e.get("off_road", 0) for e in episodes), "unsafe_gap_s": mean("unsafe_gap_s"),
        "action_agreement": mean("action_agreement"), "answered": sum(e.get("answered", 0) for e in episodes),
        "model_latency_p50_ms": mean("model_latency_p50_ms"), "answer_latency_p50_ms": mean("answer_latency_p50_ms"),
    }


def markdown(models: dict[str, dict]) -> str:
    """One row per model: the side-by-side table `owled sim run` prints."""
    def f(v: object, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        "| model | episodes | route completion | distance m | mean speed m/s | collisions | off-road | unsafe gap s | action agreement | answers | model p50 ms | answer p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in models.items():
        lines.append(
            f"| {name} | {s['episodes']} | {f(s['route_completion'], '.3f')} | {f(s['distance_m'], '.0f')} | {f(s['mean_speed_mps'], '.1f')} "
            f"| {s['collisions']} | {s['off_road']} | {f(s['unsafe_gap_s'], '.1f')} | {f(s['action_agreement'], '.3f')} | {s['answered']} "
            f"| {f(s['model_latency_p50_ms'], '.0f')} | {f(s['answer_latency_p50_ms'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(episodes: dict[str, list[dict]], path: Path) -> None:
    """Speed and gap to the lead vehicle over time, one line per model and episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_g) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for label, steps in episodes.items():
        t = [s["t_s"] for s in steps]
        ax_v.plot(t, [s["speed_mps"] for s in steps], label=label)
        ax_g.plot(t, [s["gap_m"] if s["gap_m"] is not None else np.nan for s in steps], label=label)
    ax_v.set_ylabel("speed m/s")
    ax_g.set_ylabel("gap to lead m")
    ax_g.set_xlabel("sim time s")
    ax_v.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
