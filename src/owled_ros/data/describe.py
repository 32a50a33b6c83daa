"""The reference scene description: what the model is trained to say about a generated scene.

The description is short and regular so a 135M LM learns it quickly and so its facts
can be read back: one sentence per traffic light or stop sign and per road user (nearest
first), then the road and the weather, e.g.
"Red light at 30 m. Slow car in the ego lane at 15 m. Pedestrian crossing at 10 m. Straight road, night."
`parse_description` (runtime/answer.py, imported here for the data modules) reads these
sentences back exactly and reads model free text leniently: a clause it does not understand
is skipped, never raised on.
"""
from __future__ import annotations

from owled_ros.data.expert import ExpertDecision
from owled_ros.data.scenes import ObjectGT, Scene
from owled_ros.runtime.answer import light_from_text, parse_description
from owled_ros.schema import SceneObject, SceneResult
from owled_ros.vocab import LightState

__all__ = ["action_answer", "describe_scene", "light_from_text", "parse_description", "scene_result"]


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


def action_answer(decision: ExpertDecision) -> str:
    """Answer to "what should the ego vehicle do": the action phrase first, then the reason."""
    return f"{decision.action.phrase}. {decision.reason}"
