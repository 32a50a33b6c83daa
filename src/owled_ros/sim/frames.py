"""Forward-camera frames of MetaDrive drives: `owled sim frames` (PNG + raw ground truth) and
`owled data make --source sim` (labelled frames in the DriveLM schema).

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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
from tqdm import tqdm

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.data.expert import ExpertDecision
from owled_ros.sim.client import Frame, WorldProcess
from owled_ros.sim.controller import Controller
from owled_ros.sim.scenario import STEP_S, Scenario
from owled_ros.sim.truth import expert_decision, scene_from_truth

DECIDE_EVERY_STEPS = 5
MAX_EPISODE_STEPS = 600


def steps_between_frames(every_s: float) -> int:
    """World steps between kept frames: every_s rounded to whole steps, at least one."""
    return max(1, round(every_s / STEP_S))


def expert_drive(world: WorldProcess, scenario: Scenario, n: int, every_s: float) -> Iterator[tuple[int, Frame, ExpertDecision]]:
    """Drive seeds scenario.seed, +1, ... with the rule expert and yield (seed, frame, the expert's
    decision at that frame) every `every_s` sim seconds until n frames."""
    every = steps_between_frames(every_s)
    written, seed = 0, scenario.seed
    while written < n:
        truth = world.reset(replace(scenario, seed=seed))
        controller = Controller()
        controller.reset(truth)
        for step in range(MAX_EPISODE_STEPS):
            if step % DECIDE_EVERY_STEPS == 0:
                decision = expert_decision(truth)
                controller.apply(decision.action, decision.target_speed_mps, truth)
            if step % every == 0:
                yield seed, world.render(), decision
                written += 1
                if written == n:
                    return
            control = controller.control(truth)
            truth = world.step(control.steer, control.throttle)
            if truth["out_of_road"] or truth["arrived"]:
                break
        seed += 1


def dump_frames(out: Path, n: int, scenario: Scenario, every_s: float = 1.0, progress: bool = True) -> Path:
    """PNG frames + frames.jsonl (ground truth and the expert's decision) + frames.json."""
    if n < 1:
        raise OwledError(f"--frames must be at least 1, got {n}")
    with staged_dir(out) as staged:
        staged.mkdir()
        with WorldProcess(staged.parent / "world.log") as world, open(staged / "frames.jsonl", "w") as index:
            for written, (seed, frame, decision) in enumerate(tqdm(expert_drive(world, scenario, n, every_s), total=n, desc="sim frames", unit="frame", disable=not progress)):
                name = f"frame_{written:06d}.png"
                if not cv2.imwrite(str(staged / name), frame.bgr):
                    raise OwledError(f"{staged / name}: could not write the PNG")
                index.write(json.dumps({
                    "file": name, "seed": seed, "t_s": frame.truth["t_s"], "expert_action": decision.action.name.lower(),
                    "expert_target_speed_mps": decision.target_speed_mps, "expert_reason": decision.reason, "truth": frame.truth,
                }) + "\n")
        (staged / "frames.json").write_text(json.dumps({
            "scenario": scenario.as_dict(), "frames": n, "every_s": steps_between_frames(every_s) * STEP_S, "source": "metadrive-simulator 0.3.0.1",
        }, indent=1))
    return Path(out)


def write_sim_split(out: Path, n: int, scenario: Scenario, every_s: float = 1.0, progress: bool = True) -> Path:
    """The same drive as labelled frames in the DriveLM schema `owled data make` writes
    (images/*.jpg + drivelm.json, one DriveLM scene per seed, so a drive never straddles the
    train / validation split): labels from the simulator's ground truth through
    sim/truth.scene_from_truth, so the rule expert and the description see what the sim placed.
    Returns the JSON path."""
    from owled_ros.data.drivelm import JSON_NAME, frame_record

    if n < 1:
        raise OwledError(f"--n must be at least 1, got {n}")
    data: dict[str, dict] = {}
    with staged_dir(out) as staged:
        (staged / "images").mkdir(parents=True)
        with WorldProcess(staged.parent / "world.log") as world:
            for i, (seed, frame, _decision) in enumerate(tqdm(expert_drive(world, scenario, n, every_s), total=n, desc="sim frames", unit="frame", disable=not progress)):
                rel = f"images/sim{seed}_{i:06d}.jpg"
                if not cv2.imwrite(str(staged / rel), frame.bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise OwledError(f"{staged / rel}: could not write image")
                scene = scene_from_truth(frame.truth, seed, i)
                drive = data.setdefault(f"scene-sim-{seed}", {
                    "scene_description": f"MetaDrive drive, seed {seed}, {scenario.lanes} lanes, traffic density {scenario.traffic_density:g}.",
                    "key_frames": {},
                })
                drive["key_frames"][f"sim{seed}-{i:06d}"] = frame_record(scene, rel) | {"sim": {"seed": seed, "t_s": frame.truth["t_s"]}}
        (staged / JSON_NAME).write_text(json.dumps(data, indent=1))
    return Path(out) / JSON_NAME
