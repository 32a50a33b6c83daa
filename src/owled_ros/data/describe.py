"""The reference scene description (what the ROS node publishes) and its parser.

The description is short and regular so a 135M LM learns it quickly and so its facts
can be read back: one sentence per traffic light or stop sign and per road user (nearest
first), then the road and the weather, e.g.
"Red light at 30 m. Slow car in the ego lane at 15 m. Pedestrian crossing at 10 m. Straight road, night."
`parse_description` reads these sentences back exactly and reads model free text
leniently: a clause it does not understand is skipped, never raised on.
"""
from __future__ import annotations

import re

from owled_ros.data.expert import ExpertDecision
from owled_ros.data.scenes import ObjectGT, Scene
from owled_ros.schema import SceneObject, SceneResult
from owled_ros.vocab import LightState, ObjectPosition

_LIGHT_COLORS = ((LightState.RED, "red"), (LightState.YELLOW, "yellow|amber"), (LightState.GREEN, "green"))
_CLASS_WORDS = (
    ("car", r"cars?|vehicles?|sedans?|suvs?|vans?"),
    ("truck", r"trucks?|lorr(?:y|ies)|bus(?:es)?"),
    ("pedestrian", r"pedestrians?|persons?|people|walkers?"),
    ("cyclist", r"cyclists?|bicycles?|bikes?|bikers?"),
)
_POSITION_WORDS = (
    (ObjectPosition.EGO_LANE, r"ego lane|our lane|same lane|my lane|crossing"),
    (ObjectPosition.LEFT_LANE, r"left lane"),
    (ObjectPosition.RIGHT_LANE, r"right lane"),
    (ObjectPosition.ROADSIDE, r"roadside|sidewalk|side of the road|shoulder|kerb|curb"),
)
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[;!?\n]")
_CLAUSE = re.compile(r",|\band\b|\bbut\b")
_DISTANCE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:m|meters?|metres?)\b")


def _sentence(o: ObjectGT, light: LightState) -> str:
    d = f"{o.distance_m:g} m"
    if o.object_class == "traffic_light":
        return f"{light.name.capitalize()} light at {d}."
    if o.object_class == "stop_sign":
        return f"Stop sign at {d}."
    if o.crossing:
        return f"Pedestrian crossing at {d}."
    name = f"slow {o.object_class}" if o.slow else o.object_class
    return f"{name.capitalize()} {o.position.phrase} at {d}."


def describe_scene(scene: Scene) -> str:
    """The reference description of a generated scene (about 10 to 30 words)."""
    items = ([scene.control] if scene.control else []) + list(scene.objects)
    parts = [_sentence(o, scene.light) for o in items]
    parts.append(f"{scene.road.capitalize()}, {scene.weather}.")
    return " ".join(parts)


def scene_result(scene: Scene) -> SceneResult:
    """The structured facts `describe_scene` states, as `parse_description` reads them back."""
    items = ([scene.control] if scene.control else []) + list(scene.objects)
    objects = tuple(SceneObject(o.object_class, o.position, float(o.distance_m)) for o in items)
    return SceneResult(text=describe_scene(scene), objects=objects, traffic_light=scene.light)


def _first(patterns: tuple, text: str):
    best = None
    for value, pattern in patterns:
        m = re.search(rf"\b(?:{pattern})\b", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), value)
    return best[1] if best else None


def light_from_text(text: str) -> LightState:
    """The first light colour named in text (red, yellow or amber, green); NONE when there is none."""
    return _first(_LIGHT_COLORS, text.lower()) or LightState.NONE


def _names_thing(low: str) -> bool:
    return bool(re.search(r"\blights?\b|\bstop signs?\b", low)) or _first(_CLASS_WORDS, low) is not None


def _clauses(text: str) -> list[str]:
    """Lower-case clauses, one thing each; a clause naming nothing ("25 m away") joins the one before."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        parts: list[str] = []
        for clause in _CLAUSE.split(sentence.lower()):
            if parts and not _names_thing(clause):
                parts[-1] += " " + clause
            else:
                parts.append(clause)
        out += parts
    return out


def parse_description(text: str) -> SceneResult:
    """Objects and light state in a description; unknown, negated or garbled clauses are skipped."""
    objects: list[SceneObject] = []
    light = LightState.NONE
    for low in _clauses(text if isinstance(text, str) else ""):
        if re.search(r"\bno\b", low):
            continue
        m = _DISTANCE.search(low)
        distance = float(m.group(1)) if m else None
        color = light_from_text(low) if re.search(r"\blights?\b", low) else LightState.NONE
        if color is not LightState.NONE:
            objects.append(SceneObject("traffic_light", ObjectPosition.EGO_LANE, distance))
            light = light if light is not LightState.NONE else color
            continue
        if re.search(r"\bstop signs?\b", low):
            objects.append(SceneObject("stop_sign", ObjectPosition.ROADSIDE, distance))
            continue
        cls = _first(_CLASS_WORDS, low)
        if cls is not None:
            position = _first(_POSITION_WORDS, low) or ObjectPosition.UNKNOWN
            objects.append(SceneObject(cls, position, distance))
    return SceneResult(text=text, objects=tuple(objects), traffic_light=light)


def action_answer(decision: ExpertDecision) -> str:
    """Answer to "what should the ego vehicle do": the action phrase first, then the reason."""
    return f"{decision.action.phrase}. {decision.reason}"
