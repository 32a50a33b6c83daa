"""Where a model's wrong actions come from: what it saw, or what it decided from it.

For each generated frame, the model's answer is split at "Action:". The description is read
back into scene facts (the exact sentences `describe_scene` writes; an unreadable sentence is
dropped) and the rule-based expert is applied to them with the frame's true ego speed:
- action accuracy: the model's action against the expert's on the true scene;
- expert on the model's description: how often its perception alone would give the right
  action (the ceiling for a model that applied the rules perfectly to what it saw);
- consistency: how often the model's action is the expert's on its own description;
plus the most common (expected -> answered) confusions.
"""
from __future__ import annotations

import collections
import re
from dataclasses import replace

from owled_ros.data.expert import expert_action
from owled_ros.data.scenes import ObjectGT, Scene, render_scene
from owled_ros.model.prompt import ACTION_MARKER, FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.runtime.answer import parse_answer
from owled_ros.vocab import Action, ObjectPosition, LightState

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


def model_answers(vlm: DrivingVLM, scenes: list[Scene], batch: int = 8) -> tuple[list[str], list[Action]]:
    gens = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        gens += vlm.generate([render_scene(s) for s in chunk], [s.ego for s in chunk], [FRAME_QUESTION] * len(chunk), 64)
    return [g.text for g in gens], [parse_answer(g).action for g in gens]
