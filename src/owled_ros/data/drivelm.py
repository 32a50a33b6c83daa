"""Driving QA in the DriveLM-nuScenes v1.1 JSON layout: writer for generated scenes, loader, scoring.

Layout (one key frame per generated scene):
    {scene_token: {"scene_description": str, "key_frames": {frame_token: {
        "key_object_infos": {"<c1,CAM_FRONT,x,y>": {"Category", "Status", "Visual_description", "2d_bbox"}},
        "QA": {"perception" | "prediction" | "planning" | "behavior": [{"Q", "A", "C", "con_up", "con_down", "cluster", "layer"}]},
        "image_paths": {"CAM_FRONT": path relative to the image root},
        "owled": {"ego": {...}, "description": str, "expert": {...}}}}}}
"owled" is ours (ego state, reference description, expert action); real DriveLM files lack
it and load the same. The ego speed is not in the questions: the model gets it as vehicle
state, as on the vehicle.

Scoring (`score_answer`), by the key fact of each answer:
| category            | reference                       | correct when the prediction ...                  |
|---------------------|---------------------------------|--------------------------------------------------|
| planning, behavior  | names an action                 | names the same action first (Action.from_text)   |
| any                 | starts with yes / no            | starts with the same word, and names every object |
|                     |                                 | class the reference names                        |
| perception          | QUESTION_LIGHT                  | gives the same light colour (or "no")            |
| perception          | QUESTION_DESCRIBE               | has the same light state and the same multiset of |
|                     |                                 | (class, position) objects (parse_description)    |
| anything else       |                                 | equals it after lower-casing and dropping        |
|                     |                                 | punctuation                                      |
Accuracy of a category is the mean of `score_answer` over its QA pairs.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2

from owled_ros.data.describe import action_answer, describe_scene, light_from_text, parse_description
from owled_ros.data.expert import ExpertDecision, lead_vehicle
from owled_ros.data.scenes import DEFAULT_SIZE, ObjectGT, Scene, generate_scene, render_scene
from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action, LightState

CATEGORIES: tuple[str, ...] = ("perception", "prediction", "planning", "behavior")
QUESTION_DESCRIBE = "Describe the driving scene in front of the ego vehicle."
QUESTION_LIGHT = "What is the state of the traffic light ahead?"
QUESTION_LEAD = "Is there a vehicle in the ego lane?"
QUESTION_BRAKING = "Is the vehicle ahead in the ego lane braking?"
QUESTION_PLAN = "What should the ego vehicle do, and why?"
QUESTION_BEHAVIOR = "Predict the behavior of the ego vehicle."
JSON_NAME = "drivelm.json"
CAMERA = "CAM_FRONT"


def crossing_question(distance_m: float) -> str:
    return f"Will the pedestrian at {distance_m:g} m cross in front of the ego vehicle?"


class QA(NamedTuple):
    category: str
    question: str
    answer: str


@dataclass(frozen=True)
class DriveFrame:
    scene_token: str
    frame_id: str
    image_path: Path
    qa: tuple[QA, ...]
    ego: VehicleState | None = None
    description: str | None = None
    expert_action: Action | None = None


# ----------------------------------------------------------------------------------------------
# Writing


def behavior_answer(decision: ExpertDecision) -> str:
    """The action with its target speed, e.g. "slow down to 7.5 m/s."."""
    a, v = decision.action, decision.target_speed_mps
    if a is Action.STOP:
        return "stop."
    preposition = "to" if a in (Action.SLOW_DOWN, Action.ACCELERATE) else "at"
    return f"{a.phrase} {preposition} {v:g} m/s."


def _qa(q: str, a: str) -> dict[str, Any]:
    return {"Q": q, "A": a, "C": None, "con_up": None, "con_down": None, "cluster": None, "layer": None}


def _key_object(o: ObjectGT, light: LightState) -> dict[str, Any]:
    if o.object_class == "traffic_light":
        category, status, visual = "Traffic element", "None", f"{light.name.capitalize()} traffic light"
    elif o.object_class == "stop_sign":
        category, status, visual = "Traffic element", "None", "Stop sign"
    elif o.object_class == "pedestrian":
        category = "Pedestrian"
        status, visual = ("Moving", f"Pedestrian in {o.color}, crossing") if o.crossing else ("Stationary", f"Pedestrian in {o.color}")
    else:
        category, status = "Vehicle", "Moving"
        noun = "bicycle with rider" if o.object_class == "cyclist" else o.object_class
        visual = f"{o.color} {noun}".strip().capitalize()  # no colour for simulator vehicles
        visual += ", brake lights on" if o.slow else ""
    return {"Category": category, "Status": status, "Visual_description": visual, "2d_bbox": [float(v) for v in o.bbox]}


def frame_qa(scene: Scene) -> dict[str, list[dict[str, Any]]]:
    """The four QA lists of a scene, answers from its ground truth."""
    lead = lead_vehicle(scene)
    light = {LightState.NONE: "There is no traffic light."}.get(scene.light, f"{scene.light.name.capitalize()}.")
    perception = [
        _qa(QUESTION_DESCRIBE, describe_scene(scene)),
        _qa(QUESTION_LIGHT, light),
        _qa(QUESTION_LEAD, f"Yes, a {lead.object_class} at {lead.distance_m:g} m." if lead else "No."),
    ]
    prediction = []
    if lead is not None:
        prediction.append(_qa(QUESTION_BRAKING, "Yes, its brake lights are on." if lead.slow else "No."))
    for o in scene.objects:
        if o.object_class == "pedestrian":
            prediction.append(_qa(crossing_question(o.distance_m), "Yes, it is crossing." if o.crossing else "No, it stays at the roadside."))
    return {
        "perception": perception,
        "prediction": prediction,
        "planning": [_qa(QUESTION_PLAN, action_answer(scene.expert))],
        "behavior": [_qa(QUESTION_BEHAVIOR, behavior_answer(scene.expert))],
    }


def frame_record(scene: Scene, image_path: str) -> dict[str, Any]:
    items = ([scene.control] if scene.control else []) + list(scene.objects)
    infos = {}
    for k, o in enumerate(items, 1):
        x1, y1, x2, y2 = o.bbox
        infos[f"<c{k},{CAMERA},{(x1 + x2) / 2:.1f},{(y1 + y2) / 2:.1f}>"] = _key_object(o, scene.light)
    e = scene.expert
    return {
        "key_object_infos": infos,
        "QA": frame_qa(scene),
        "image_paths": {CAMERA: image_path},
        "owled": {
            "ego": {"speed_mps": scene.ego.speed_mps, "accel_mps2": scene.ego.accel_mps2, "yaw_rate_rps": scene.ego.yaw_rate_rps},
            "description": describe_scene(scene),
            "expert": {"action": e.action.name.lower(), "target_speed_mps": e.target_speed_mps, "reason": e.reason},
            "scene": {"seed": scene.seed, "index": scene.index, "weather": scene.weather, "curvature": scene.curvature, "road": scene.road},
        },
    }


def write_split(out_dir: str | Path, seed: int, n: int, size: tuple[int, int] = DEFAULT_SIZE, progress: bool = True) -> Path:
    """Render scenes 0..n-1 of stream `seed` into out_dir/images/*.jpg (q95) + out_dir/drivelm.json.

    Written into a temporary sibling directory and renamed at the end, so an interrupted run
    leaves no half split. Refuses a non-empty out_dir. Returns the JSON path.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    with staged_dir(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        data: dict[str, Any] = {}
        for index in tqdm(range(n), desc=f"scenes (seed {seed})", unit="scene", disable=not progress):
            scene = generate_scene(seed, index, size)
            rel = f"images/{seed}_{index:06d}.jpg"
            bgr = cv2.cvtColor(render_scene(scene), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(tmp / rel), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OwledError(f"{tmp / rel}: could not write image")
            data[f"scene-{seed}-{index:06d}"] = {
                "scene_description": f"Generated scene {index} of seed {seed}: {scene.road}, {scene.weather}.",
                "key_frames": {f"{seed}-{index:06d}": frame_record(scene, rel)},
            }
        with open(tmp / JSON_NAME, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
    return out / JSON_NAME


# ----------------------------------------------------------------------------------------------
# Loading


class _Reader:
    """Typed access to the JSON with errors that name the file and the field path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, what: str) -> OwledError:
        return OwledError(f"{self.name}: {where} {what}")

    def get(self, obj: dict, key: str, field: str, kind: type) -> Any:
        """obj[key], which must be a `kind`; `field` is its full path for the message."""
        if key not in obj or obj[key] is None:
            raise self.fail(field, "missing")
        value = obj[key]
        if not isinstance(value, kind):
            raise self.fail(field, f"must be {_KIND_NAMES[kind]}, got {type(value).__name__}")
        return value


_KIND_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _owled_extra(r: _Reader, extra: Any, where: str) -> tuple[VehicleState | None, str | None, Action | None]:
    if not isinstance(extra, dict):
        raise r.fail(where, "must be an object")
    ego = None
    if "ego" in extra:
        e = r.get(extra, "ego", f"{where}.ego", dict)
        values = {}
        for key in ("speed_mps", "accel_mps2", "yaw_rate_rps"):
            v = e.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise r.fail(f"{where}.ego.{key}", f"must be a number, got {type(v).__name__}")
            values[key] = None if v is None else float(v)
        try:
            ego = VehicleState(**values)
        except ValueError as err:
            raise r.fail(f"{where}.ego", str(err)) from None
    description = r.get(extra, "description", f"{where}.description", str) if "description" in extra else None
    action = None
    if "expert" in extra:
        name = r.get(r.get(extra, "expert", f"{where}.expert", dict), "action", f"{where}.expert.action", str)
        try:
            action = Action[name.upper()]
        except KeyError:
            raise r.fail(f"{where}.expert.action", f"unknown action {name!r}") from None
    return ego, description, action


def load_drivelm(json_path: str | Path, image_root: str | Path) -> list[DriveFrame]:
    """Every key frame of a DriveLM-format file, in file order, with its CAM_FRONT image path checked."""
    path, root = Path(json_path), Path(image_root)
    r = _Reader(path.name)
    if not path.is_file():
        raise OwledError(f"{path}: DriveLM file not found")
    if not root.is_dir():
        raise OwledError(f"{root}: image root not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OwledError(f"{path.name}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise r.fail("top level", "must be an object of scenes")
    frames = []
    for scene_token, scene in data.items():
        sw = f"scene {scene_token!r}"
        if not isinstance(scene, dict):
            raise r.fail(sw, "must be an object")
        for frame_id, frame in r.get(scene, "key_frames", f"{sw} key_frames", dict).items():
            fw = f"{sw} key_frames.{frame_id!r}"
            if not isinstance(frame, dict):
                raise r.fail(fw, "must be an object")
            qa_lists = r.get(frame, "QA", f"{fw}.QA", dict)
            qa = []
            for category in [*CATEGORIES, *sorted(set(qa_lists) - set(CATEGORIES))]:
                if category not in qa_lists:
                    continue
                for i, item in enumerate(r.get(qa_lists, category, f"{fw}.QA.{category}", list)):
                    iw = f"{fw}.QA.{category}[{i}]"
                    if not isinstance(item, dict):
                        raise r.fail(iw, "must be an object")
                    qa.append(QA(category, r.get(item, "Q", f"{iw}.Q", str), r.get(item, "A", f"{iw}.A", str)))
            images = r.get(frame, "image_paths", f"{fw}.image_paths", dict)
            rel = r.get(images, CAMERA, f"{fw}.image_paths.{CAMERA}", str)
            image = Path(os.path.normpath(root / rel))
            if not image.is_file():
                raise r.fail(f"{fw}.image_paths.{CAMERA}", f"image {image} not found")
            ego, description, action = _owled_extra(r, frame["owled"], f"{fw}.owled") if "owled" in frame else (None, None, None)
            frames.append(DriveFrame(str(scene_token), str(frame_id), image, tuple(qa), ego, description, action))
    return frames


# ----------------------------------------------------------------------------------------------
# Scoring

_YES_NO = re.compile(r"\b(yes|no)\b")
_CLASS_WORD = re.compile(r"\b(car|truck|pedestrian|cyclist|bicycle|traffic light|stop sign)s?\b")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9.]+|(?<!\d)\.|\.(?!\d)", " ", text.lower()).split())


def _facts(text: str) -> tuple[LightState, Counter]:
    parsed = parse_description(text)
    return parsed.traffic_light, Counter((o.object_class, o.position) for o in parsed.objects)


def score_answer(category: str, question: str, reference: str, prediction: str) -> bool:
    """Whether a predicted answer states the reference's key fact (rules in the module docstring)."""
    if category in ("planning", "behavior"):
        ref_action = Action.from_text(reference)
        if ref_action is not Action.UNKNOWN:
            return Action.from_text(prediction) is ref_action
    ref_yes = _YES_NO.match(reference.strip().lower())
    if ref_yes:
        pred_yes = _YES_NO.match(prediction.strip().lower())
        classes = set(_CLASS_WORD.findall(reference.lower()))
        return bool(pred_yes) and pred_yes.group(1) == ref_yes.group(1) and classes <= set(_CLASS_WORD.findall(prediction.lower()))
    if category == "perception" and question == QUESTION_LIGHT:
        return light_from_text(reference) is light_from_text(prediction)
    if category == "perception" and question == QUESTION_DESCRIBE:
        return _facts(reference) == _facts(prediction)
    return _norm(reference) == _norm(prediction)
