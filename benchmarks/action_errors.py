"""Where the model's wrong actions come from: what it saw, or what it decided from it.

For each generated test frame, the model's per-frame answer is split at "Action:". The
description is read back into scene facts (the exact sentences `describe_scene` writes;
an unreadable sentence is dropped) and the rule-based expert is applied to them with the
frame's true ego speed. Three numbers follow:
- action accuracy: the model's action against the expert's on the true scene;
- expert on the model's description: how often its perception alone would give the
  right action (the ceiling for a model that applied the rules perfectly to what it saw);
- consistency: how often the model's action is the expert's on its own description.
Plus the most common (expected, answered) confusions.

    source scripts/env.sh
    OMP_NUM_THREADS=1 python benchmarks/action_errors.py --model default --frames 200
    python benchmarks/action_errors.py --answers runs/dense.jsonl --split test   # from an eval's answers
"""
from __future__ import annotations

import argparse
import collections
import json
import re
from dataclasses import replace
from pathlib import Path

from owled_ros.data.expert import expert_action
from owled_ros.data.scenes import SPLIT_SEEDS, ObjectGT, Scene, generate_scene, render_scene
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import ACTION_MARKER, FRAME_QUESTION
from owled_ros.runtime.pipeline import parse_answer
from owled_ros.vocab import Action, LightState, ObjectPosition

_POSITIONS = {p.phrase: p for p in ObjectPosition}
_LIGHT = re.compile(r"(Red|Yellow|Green) light at (\d+) m")
_SIGN = re.compile(r"Stop sign at (\d+) m")
_CROSSING = re.compile(r"Pedestrian crossing at (\d+) m")
_USER = re.compile(r"(Slow )?(car|truck|pedestrian|cyclist) (" + "|".join(_POSITIONS) + r") at (\d+) m", re.I)


def _thing(cls: str, position: ObjectPosition, distance: str, **flags: bool) -> ObjectGT:
    return ObjectGT(cls, position, float(distance), 0.0, (0, 0, 0, 0), "", **flags)


def scene_as_described(scene: Scene, description: str) -> Scene:
    """The true scene with its road users, light and sign replaced by the described ones."""
    users, control, light = [], None, LightState.NONE
    for sentence in re.split(r"(?<!\d)\.\s*", description):
        if m := _LIGHT.match(sentence):
            light, control = LightState[m.group(1).upper()], _thing("traffic_light", ObjectPosition.EGO_LANE, m.group(2))
        elif m := _SIGN.match(sentence):
            control = _thing("stop_sign", ObjectPosition.ROADSIDE, m.group(1))
        elif m := _CROSSING.match(sentence):
            users.append(_thing("pedestrian", ObjectPosition.EGO_LANE, m.group(1), crossing=True))
        elif m := _USER.match(sentence):
            users.append(_thing(m.group(2).lower(), _POSITIONS[m.group(3)], m.group(4), slow=bool(m.group(1))))
    return replace(scene, objects=tuple(sorted(users, key=lambda o: o.distance_m)), control=control, light=light)


def analyse(scenes: list[Scene], texts: list[str], actions: list[Action]) -> dict:
    """The three numbers of the module docstring, from each frame's scene, answer text and parsed action."""
    right = from_description = consistent = 0
    confusions: collections.Counter = collections.Counter()
    for scene, text, said in zip(scenes, texts, actions):
        truth = scene.expert.action
        seen = expert_action(scene_as_described(scene, text.split(ACTION_MARKER)[0])).action
        right += said is truth
        from_description += seen is truth
        consistent += said is seen
        if said is not truth:
            confusions[f"{truth.phrase} -> {said.phrase}"] += 1
    n = len(scenes)
    return {
        "frames": n, "action_accuracy": right / n,
        "expert_on_model_description": from_description / n, "consistency": consistent / n,
        "top_confusions": confusions.most_common(8),
    }


def model_answers(model: str, scenes: list[Scene], batch: int = 8) -> tuple[list[str], list[Action]]:
    vlm = load_vlm(model)
    gens = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        gens += vlm.generate([render_scene(s) for s in chunk], [s.ego for s in chunk], [FRAME_QUESTION] * len(chunk), 64)
    return [g.text for g in gens], [parse_answer(g).action for g in gens]


def file_answers(path: Path) -> tuple[list[int], list[str], list[Action]]:
    """Frame indices, texts and actions of an `owled eval driving-qa --answers` file (no model run needed)."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (write it with owled eval driving-qa --answers)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_phrase = {a.phrase: a for a in Action}
    if not rows or any(not isinstance(r, dict) or not isinstance(r.get("text"), str) or not isinstance(r.get("frame"), int)
                       or r.get("answered") not in by_phrase for r in rows):
        raise SystemExit(f"{path}: needs one record per frame with 'frame', 'text' and 'answered' (owled eval driving-qa --answers)")
    return [r["frame"] for r in rows], [r["text"] for r in rows], [by_phrase[r["answered"]] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--answers", type=Path, default=None, help="analyse this --answers file instead of running --model")
    p.add_argument("--split", default="test", choices=tuple(SPLIT_SEEDS), help="the split the --answers file was made on")
    args = p.parse_args()
    if args.answers is not None:
        frames, texts, actions = file_answers(args.answers)
        result = {"answers": str(args.answers), **analyse([generate_scene(SPLIT_SEEDS[args.split], i) for i in frames], texts, actions)}
    else:
        scenes = [generate_scene(SPLIT_SEEDS["test"], i) for i in range(args.frames)]
        result = {"model": args.model, **analyse(scenes, *model_answers(args.model, scenes))}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
