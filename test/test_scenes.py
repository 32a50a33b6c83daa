"""Scene generator, expert and reference descriptions: deterministic, rule-following, round-tripping."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from owled_ros.data.describe import action_answer, describe_scene, parse_description, scene_result
from owled_ros.data.expert import expert_action
from owled_ros.data.scenes import SPLIT_SEEDS, ObjectGT, Scene, generate_scene, render_scene
from owled_ros.eval.driving_qa import generated_frames
from owled_ros.schema import VehicleState
from owled_ros.vocab import Action, LightState, ObjectPosition

EGO, LEFT, RIGHT, SIDE = ObjectPosition.EGO_LANE, ObjectPosition.LEFT_LANE, ObjectPosition.RIGHT_LANE, ObjectPosition.ROADSIDE


def _scene(speed: float, objects: tuple[ObjectGT, ...] = (), control: ObjectGT | None = None, light: LightState = LightState.NONE) -> Scene:
    return Scene(0, 0, (384, 224), "day", 0.0, VehicleState(speed, 0.0, 0.0), objects, control, light)


def _obj(cls: str, position: ObjectPosition, d: float, **kw) -> ObjectGT:
    return ObjectGT(cls, position, d, 0.0, (0, 0, 0, 0), **kw)


def test_same_seed_same_scene_and_pixels():
    for index in (0, 7):
        a, b = generate_scene(5, index), generate_scene(5, index)
        assert a == b
        assert np.array_equal(render_scene(a), render_scene(b))
    other = generate_scene(6, 0)
    assert other != generate_scene(5, 0)
    assert not np.array_equal(render_scene(other), render_scene(generate_scene(5, 0)))
    assert generate_scene(5, 1) != generate_scene(5, 0)
    assert len(set(SPLIT_SEEDS.values())) == len(SPLIT_SEEDS) == 3


def test_eval_frames_offset_continues_the_same_sequence():
    """Split evaluations (`--offset`) must see exactly the frames one long run would."""
    whole, tail = generated_frames("test", 5), generated_frames("test", 2, offset=3)
    assert [f.description for f in tail] == [f.description for f in whole[3:]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(tail, whole[3:]))
    assert tail[0].description != whole[0].description


def test_render_shape_and_boxes_follow_size():
    scene = generate_scene(1, 3)
    img = render_scene(scene)
    assert img.shape == (224, 384, 3) and img.dtype == np.uint8
    assert img.std() > 10  # a picture, not a flat fill
    small = generate_scene(1, 3, size=(320, 180))
    assert render_scene(small).shape == (180, 320, 3)
    assert [o.distance_m for o in small.objects] == [o.distance_m for o in scene.objects]  # facts do not depend on size
    for s in (scene, small):
        for o in s.objects:
            x1, y1, x2, y2 = o.bbox
            assert 0 <= x1 < x2 <= s.size[0] and 0 <= y1 < y2 <= s.size[1]


def test_ground_truth_is_consistent():
    for i in range(300):
        s = generate_scene(77, i)
        v = s.ego.speed_mps
        assert len(s.objects) <= 3
        assert 0 <= v <= 30 and v == int(v)
        assert math.isclose(s.ego.yaw_rate_rps, v * s.curvature)
        assert s.road == ("straight road" if s.curvature == 0 else "left curve" if s.curvature > 0 else "right curve")
        distances = [o.distance_m for o in s.objects]
        assert distances == sorted(set(distances))
        for o in [*s.objects, *([s.control] if s.control else [])]:
            assert o.distance_m % 5 == 0 and 5 <= o.distance_m <= 60
            assert o.crossing == (o.object_class == "pedestrian" and o.position is EGO)
        has_light = s.control is not None and s.control.object_class == "traffic_light"
        assert (s.light is not LightState.NONE) == has_light
        assert s.stop_sign == (s.control is not None and s.control.object_class == "stop_sign")


def _rederived(s: Scene) -> Action:
    """The expert's table, written again from its docstring."""
    v = s.ego.speed_mps
    brake = v * v / 6
    zone = 15 + v + brake
    cues = [o.distance_m for o in s.objects if o.crossing]
    if s.control is not None:
        d = s.control.distance_m
        if s.stop_sign or s.light is LightState.RED or (s.light is LightState.YELLOW and d >= brake):
            cues.append(d)
    cars = {p: sorted(o.distance_m for o in s.objects if o.object_class in ("car", "truck") and o.position is p) for p in (EGO, LEFT, RIGHT)}
    lead = next(o for o in s.objects if o.object_class in ("car", "truck") and o.position is EGO) if cars[EGO] else None
    if cues and (min(cues) <= zone or v <= 2):
        return Action.STOP
    if lead and v > 0 and lead.distance_m / v < 2:
        return Action.SLOW_DOWN
    if cues:
        return Action.SLOW_DOWN
    if s.light is LightState.YELLOW:
        return Action.KEEP_SPEED
    if lead and lead.slow and v > 8:
        return Action.CHANGE_LANE_LEFT if not cars[LEFT] else Action.CHANGE_LANE_RIGHT if not cars[RIGHT] else Action.SLOW_DOWN
    if lead:
        return Action.KEEP_SPEED
    return Action.ACCELERATE if v < 23 else Action.SLOW_DOWN if v > 27 else Action.KEEP_SPEED


def test_expert_follows_its_rules_scene_by_scene():
    for i in range(400):
        s = generate_scene(4242, i)
        assert s.expert.action is _rederived(s), (i, describe_scene(s), s.ego, s.expert)


def test_expert_uses_speed_for_headway():
    car15 = (_obj("car", EGO, 15.0),)
    fast, slow = expert_action(_scene(20.0, car15)), expert_action(_scene(5.0, car15))
    assert fast.action is Action.SLOW_DOWN and fast.target_speed_mps == 7.5
    assert slow.action is Action.KEEP_SPEED and slow.target_speed_mps == 5.0
    yellow = _obj("traffic_light", EGO, 30.0)
    assert expert_action(_scene(20.0, (), yellow, LightState.YELLOW)).action is Action.KEEP_SPEED  # 66 m to brake
    assert expert_action(_scene(10.0, (), yellow, LightState.YELLOW)).action is Action.STOP
    assert expert_action(_scene(10.0, (), yellow, LightState.RED)).action is Action.STOP
    assert expert_action(_scene(10.0, (), _obj("traffic_light", EGO, 60.0), LightState.RED)).action is Action.SLOW_DOWN
    assert expert_action(_scene(10.0, (), yellow, LightState.GREEN)).action is Action.ACCELERATE
    slow_lead = _obj("truck", EGO, 40.0, slow=True)
    left, right = _obj("car", LEFT, 20.0), _obj("car", RIGHT, 25.0)
    assert expert_action(_scene(15.0, (slow_lead,))).action is Action.CHANGE_LANE_LEFT
    assert expert_action(_scene(15.0, (left, slow_lead))).action is Action.CHANGE_LANE_RIGHT
    assert expert_action(_scene(15.0, (left, right, slow_lead))).action is Action.SLOW_DOWN
    assert expert_action(_scene(28.0)).action is Action.SLOW_DOWN
    assert expert_action(_scene(25.0)).action is Action.KEEP_SPEED
    assert expert_action(_scene(0.0, (_obj("pedestrian", EGO, 40.0, crossing=True),))).action is Action.STOP


def test_action_classes_are_balanced():
    counts = Counter(generate_scene(SPLIT_SEEDS["train"], i).expert.action for i in range(2000))
    assert set(counts) == set(Action) - {Action.UNKNOWN}
    assert min(counts.values()) >= 0.08 * 2000, counts


def test_description_round_trips_and_answers_parse():
    for i in range(300):
        s = generate_scene(99, i)
        text = describe_scene(s)
        assert parse_description(text) == scene_result(s), text
        assert len(text.split()) <= 40
        answer = action_answer(s.expert)
        assert Action.from_text(answer) is s.expert.action, answer


def test_description_example():
    s = _scene(
        10.0,
        (_obj("pedestrian", EGO, 10.0, crossing=True), _obj("car", EGO, 15.0, slow=True), _obj("cyclist", SIDE, 20.0)),
        _obj("traffic_light", EGO, 30.0),
        LightState.RED,
    )
    assert describe_scene(s) == (
        "Red light at 30 m. Pedestrian crossing at 10 m. Slow car in the ego lane at 15 m. "
        "Cyclist at the roadside at 20 m. Straight road, day."
    )
    assert action_answer(s.expert) == "stop. Pedestrian crossing at 10 m."


@pytest.mark.parametrize(
    "text, objects, light",
    [
        ("The traffic light is green. A truck in the right lane, 25 meters away.", [("traffic_light", EGO, None), ("truck", RIGHT, 25.0)], LightState.GREEN),
        ("Bicycle on the sidewalk, and no pedestrians.", [("cyclist", SIDE, None)], LightState.NONE),
        ("Car at 12.5 m ahead", [("car", ObjectPosition.UNKNOWN, 12.5)], LightState.NONE),
        ("Truck with brake lights on in our lane at 20 m.", [("truck", EGO, 20.0)], LightState.NONE),
        ("", [], LightState.NONE),
        ("... ;; light m 40 ?? the the", [], LightState.NONE),
        ("Red light at 30 m. Car in the ego lane at 1", [("traffic_light", EGO, 30.0), ("car", EGO, None)], LightState.RED),
    ],
)
def test_parse_tolerates_free_text(text, objects, light):
    result = parse_description(text)
    assert [(o.object_class, o.position, o.distance_m) for o in result.objects] == objects
    assert result.traffic_light is light and result.text == text
