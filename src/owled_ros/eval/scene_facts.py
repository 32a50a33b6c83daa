"""The facts of a description a vehicle stack acts on, scored against the reference description.

Text metrics (BLEU, ROUGE) reward wording; a planner cares whether the model invented a
pedestrian, missed the car in its lane or called a sunny road "night". Per corpus of
(reference, answer) descriptions, both read by runtime/answer.parse_description:
- vulnerable_false_rate: share of frames whose reference has no pedestrian or cyclist where the
  answer names one (None when every reference has one);
- ego_vehicle precision / recall: a car or truck in the ego lane, stated vs. present, per frame
  (None when undefined: no stated or no present);
- weather_accuracy, road_accuracy: the closing "<road>, <weather>." sentence's words.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from owled_ros.runtime.answer import parse_description
from owled_ros.vocab import ObjectPosition

_VULNERABLE = ("pedestrian", "cyclist")
_VEHICLES = ("car", "truck")
_ROAD = re.compile(r"\b(straight road|left curve|right curve)\b")
_WEATHER = re.compile(r"\b(day|night|rain)\b")


def _facts(text: str) -> tuple[bool, bool, str | None, str | None]:
    scene = parse_description(text)
    vulnerable = any(o.object_class in _VULNERABLE for o in scene.objects)
    ego_vehicle = any(o.object_class in _VEHICLES and o.position is ObjectPosition.EGO_LANE for o in scene.objects)
    low = text.lower()
    road, weather = _ROAD.findall(low), _WEATHER.findall(low)
    return vulnerable, ego_vehicle, (road[-1] if road else None), (weather[-1] if weather else None)


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def fact_scores(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float | int | None]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} answers")
    pairs = [(_facts(r), _facts(h)) for r, h in zip(refs, hyps)]
    clear = [h[0] for r, h in pairs if not r[0]]
    stated = [r[1] for r, h in pairs if h[1]]
    present = [h[1] for r, h in pairs if r[1]]
    return {
        "vulnerable_false_rate": _share(sum(clear), len(clear)),
        "frames_without_vulnerable": len(clear),
        "ego_vehicle_precision": _share(sum(stated), len(stated)),
        "ego_vehicle_recall": _share(sum(present), len(present)),
        "frames_with_ego_vehicle": len(present),
        "weather_accuracy": _share(sum(r[3] == h[3] for r, h in pairs), len(pairs)),
        "road_accuracy": _share(sum(r[2] == h[2] for r, h in pairs), len(pairs)),
    }
