"""`owled sim frames`: N forward-camera frames of a MetaDrive drive, as PNG files + ground truth.

The ego is driven by the rule expert through our controller (no model), so the frames show
the road as a careful driver sees it: following, closing in, changing lanes. Output directory:
- frame_NNNNNN.png: 8-bit RGB PNG, the scenario's size (400x224 by default);
- frames.jsonl: one JSON object per frame, {"file", "seed", "t_s", "expert_action",
  "expert_target_speed_mps", "expert_reason", "truth": {...world ground truth...}};
- frames.json: {"scenario", "frames", "every_s", "source": "metadrive-simulator 0.3.0.1"}.
Written to a temporary directory and renamed when complete.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
from tqdm import tqdm

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.sim.client import WorldProcess
from owled_ros.sim.controller import Controller
from owled_ros.sim.scenario import STEP_S, Scenario
from owled_ros.sim.truth import expert_decision

DECIDE_EVERY_STEPS = 5
MAX_EPISODE_STEPS = 600


def dump_frames(out: Path, n: int, scenario: Scenario, every_s: float = 1.0, progress: bool = True) -> Path:
    """Drive seeds scenario.seed, +1, ... and keep one frame every `every_s` sim seconds until n are written."""
    if n < 1:
        raise OwledError(f"--frames must be at least 1, got {n}")
    every = max(1, round(every_s / STEP_S))
    with staged_dir(out) as staged:
        staged.mkdir()
        with WorldProcess(staged.parent / "world.log") as world, open(staged / "frames.jsonl", "w") as index:
            bar = tqdm(total=n, desc="sim frames", unit="frame", disable=not progress)
            written, seed = 0, scenario.seed
            while written < n:
                s = replace(scenario, seed=seed)
                truth = world.reset(s)
                controller = Controller()
                controller.reset(truth)
                for step in range(MAX_EPISODE_STEPS):
                    if step % DECIDE_EVERY_STEPS == 0:
                        decision = expert_decision(truth)
                        controller.apply(decision.action, decision.target_speed_mps, truth)
                    if step % every == 0:
                        frame = world.render()
                        name = f"frame_{written:06d}.png"
                        if not cv2.imwrite(str(staged / name), frame.bgr):
                            raise OwledError(f"{staged / name}: could not write the PNG")
                        index.write(json.dumps({
                            "file": name, "seed": seed, "t_s": frame.truth["t_s"], "expert_action": decision.action.name.lower(),
                            "expert_target_speed_mps": decision.target_speed_mps, "expert_reason": decision.reason, "truth": frame.truth,
                        }) + "\n")
                        written += 1
                        bar.update()
                        if written == n:
                            break
                    control = controller.control(truth)
                    truth = world.step(control.steer, control.throttle)
                    if truth["out_of_road"] or truth["arrived"]:
                        break
                seed += 1
            bar.close()
        (staged / "frames.json").write_text(json.dumps({
            "scenario": scenario.as_dict(), "frames": n, "every_s": every * STEP_S, "source": "metadrive-simulator 0.3.0.1",
        }, indent=1))
    return Path(out)
