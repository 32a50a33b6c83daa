"""Procedural driving scenes: ground truth first, pixels second.

`generate_scene(seed, index)` draws a scene's facts from a generator seeded by
(seed, index) alone, so any scene of any split can be re-made on its own and in any
order. `render_scene(scene)` turns the facts into an RGB camera frame with numpy + cv2.
Scenes stay simple on purpose (at most three road users plus one traffic light or stop
sign, distances on a coarse grid) so a small CNN + 135M LM can read them.

Camera: pinhole 1.8 m above a flat road, looking along the road's tangent; a curve of
curvature c shifts the road sideways by -c * z^2 / 2 at distance z (c > 0 bends left,
the same sign as a left yaw rate). Road: three 3.5 m lanes (left, ego, right), a
shoulder, kerbs and sidewalks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, Callable

import cv2
import numpy as np

from owled_ros.data.expert import ExpertDecision, expert_action
from owled_ros.schema import VehicleState
from owled_ros.vocab import LightState, ObjectPosition

SPLIT_SEEDS: dict[str, int] = {"train": 1000, "val": 2000, "test": 3000}
"""Default seed per split; different, so test scenes are never seen in training."""
DEFAULT_SIZE: tuple[int, int] = (384, 224)
"""(width, height) of rendered frames."""
WEATHERS: tuple[str, ...] = ("day", "night", "rain")

LANE_WIDTH_M = 3.5
CAM_HEIGHT_M = 1.8
LANE_X = {ObjectPosition.LEFT_LANE: -LANE_WIDTH_M, ObjectPosition.EGO_LANE: 0.0, ObjectPosition.RIGHT_LANE: LANE_WIDTH_M}
ROAD_EDGE_M = 1.5 * LANE_WIDTH_M
KERB_M = 6.0
SIDEWALK_M = 8.5
PEDESTRIAN_X_M = 7.2
CYCLIST_X_M = 5.7
LIGHT_POLE_X_M = 6.4
STOP_SIGN_X_M = 6.6

EGO_DISTANCES = (5, 10, 15, 20, 25, 30, 35, 40, 50, 60)
ADJACENT_DISTANCES = (10, 15, 20, 25, 30, 35, 40, 50, 60)
ROADSIDE_DISTANCES = (15, 20, 25, 30, 35, 40, 50)
CROSSING_DISTANCES = (5, 10, 15, 20, 25, 30, 35, 40)
CONTROL_DISTANCES = (15, 20, 25, 30, 35, 40, 50, 60)
MAX_SPEED_MPS = 30

# (left, right, bottom, top) in metres around an object's anchor (lateral offset, ground).
_EXTENT = {
    "car": (-0.9, 0.9, 0.0, 1.5),
    "truck": (-1.25, 1.25, 0.0, 3.3),
    "pedestrian": (-0.3, 0.3, 0.0, 1.75),
    "cyclist": (-0.88, 0.88, 0.0, 1.78),
    "traffic_light": (-0.4, 0.4, 3.6, 5.4),
    "stop_sign": (-0.55, 0.55, 2.25, 3.35),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "white": (232, 232, 228), "silver": (168, 172, 178), "black": (38, 38, 42), "red": (185, 32, 30),
    "blue": (38, 72, 165), "green": (40, 110, 60), "yellow": (230, 190, 40), "orange": (225, 120, 35),
    "purple": (120, 50, 150),
}
_CAR_COLORS = ("white", "silver", "black", "red", "blue", "green", "yellow")
_TRUCK_COLORS = ("white", "silver", "blue", "orange", "red")
_SHIRT_COLORS = ("red", "blue", "yellow", "green", "orange", "purple", "white")
_SCENARIOS = ("free", "follow", "slow_lead", "signal", "crossing")
_SCENARIO_P = (0.22, 0.18, 0.28, 0.2, 0.12)


@dataclass(frozen=True)
class ObjectGT:
    """One road user, traffic light or stop sign, with what the labels and the renderer need."""

    object_class: str
    position: ObjectPosition
    distance_m: float
    lateral_m: float
    """Offset from the ego-lane centre line, right positive (follows the road's curve)."""
    bbox: tuple[int, int, int, int]
    """(x1, y1, x2, y2) in pixels of the scene's frame size, clipped to the frame."""
    color: str = "white"
    crossing: bool = False
    """A pedestrian walking across the ego lane."""
    slow: bool = False
    """A car or truck with its brake lights on, moving well below the traffic's speed."""


@dataclass(frozen=True)
class Scene:
    seed: int
    index: int
    size: tuple[int, int]
    weather: str
    curvature: float
    """Road curvature in 1/m, positive = bends left."""
    ego: VehicleState
    objects: tuple[ObjectGT, ...]
    """Road users, nearest first, at distinct distances."""
    control: ObjectGT | None
    """The traffic light over the ego lane or the stop sign at the right roadside."""
    light: LightState

    @property
    def road(self) -> str:
        return "straight road" if self.curvature == 0 else ("left curve" if self.curvature > 0 else "right curve")

    @property
    def stop_sign(self) -> bool:
        return self.control is not None and self.control.object_class == "stop_sign"

    @property
    def crossing(self) -> bool:
        return any(o.crossing for o in self.objects)

    @cached_property
    def expert(self) -> ExpertDecision:
        return expert_action(self)


class Camera:
    """Pinhole camera for a frame size; the 5 m ground line sits near the bottom edge."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.width, self.height = size
        self.f = 0.885 * self.width
        self.cx = self.width / 2
        self.horizon = max(0.25 * self.height, 0.95 * self.height - self.f * CAM_HEIGHT_M / 5.0)

    def project(self, x: Any, y: Any, z: Any, curvature: float) -> tuple[Any, Any]:
        """(u, v) pixels of lateral x (road frame), height y and distance z."""
        u = self.cx + self.f * (x - curvature * z * z / 2) / z
        v = self.horizon + self.f * (CAM_HEIGHT_M - y) / z
        return u, v

    def box(self, cls: str, lateral: float, z: float, curvature: float) -> tuple[float, float, float, float]:
        """Unclipped pixel box of an object of class cls."""
        left, right, bottom, top = _EXTENT[cls]
        u1, v2 = self.project(lateral + left, bottom, z, curvature)
        u2, v1 = self.project(lateral + right, top, z, curvature)
        return u1, v1, u2, v2


_CANONICAL = Camera(DEFAULT_SIZE)


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


class _Placer:
    """Adds objects one at a time, keeping each mostly in frame and mostly unoccluded.

    Checked on the canonical camera, so the facts of a scene do not depend on the frame size.
    """

    def __init__(self, rng: np.random.Generator, curvature: float) -> None:
        self.rng = rng
        self.curvature = curvature
        self.placed: list[ObjectGT] = []

    def used(self) -> set[float]:
        return {o.distance_m for o in self.placed if o.object_class not in ("traffic_light", "stop_sign")}

    def free(self, distances: tuple[int, ...], below: float = float("inf")) -> list[int]:
        return [d for d in distances if d not in self.used() and d < below]

    def _fits(self, new: ObjectGT) -> bool:
        boxes = [(o.distance_m, _CANONICAL.box(o.object_class, o.lateral_m, o.distance_m, self.curvature)) for o in [*self.placed, new]]
        frame = (0.0, 0.0, float(_CANONICAL.width), float(_CANONICAL.height))
        if _overlap(boxes[-1][1], frame) < 0.85 * _area(boxes[-1][1]):
            return False
        for d, b in boxes:
            covered = sum(_overlap(b, nb) for nd, nb in boxes if nd < d)
            if covered > 0.3 * _area(b):
                return False
        return True

    def add(self, make: Callable[[], ObjectGT | None], tries: int = 8) -> ObjectGT | None:
        for _ in range(tries):
            obj = make()
            if obj is not None and self._fits(obj):
                self.placed.append(obj)
                return obj
        return None

    def pick(self, options: tuple) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def vehicle(self, position: ObjectPosition, distances: tuple[int, ...], slow: bool = False, below: float = float("inf")) -> Callable[[], ObjectGT | None]:
        def make() -> ObjectGT | None:
            free = self.free(distances, below)
            if not free:
                return None
            cls = "truck" if self.rng.random() < 0.3 else "car"
            color = self.pick(_TRUCK_COLORS if cls == "truck" else _CAR_COLORS)
            lateral = LANE_X[position] + float(self.rng.uniform(-0.25, 0.25))
            return ObjectGT(cls, position, float(self.pick(tuple(free))), lateral, (0, 0, 0, 0), color, slow=slow)

        return make

    def roadside(self, cls: str) -> Callable[[], ObjectGT | None]:
        def make() -> ObjectGT | None:
            free = self.free(ROADSIDE_DISTANCES)
            if not free:
                return None
            side = 1.0 if self.rng.random() < 0.5 else -1.0
            x = PEDESTRIAN_X_M if cls == "pedestrian" else CYCLIST_X_M
            color = self.pick(_SHIRT_COLORS)
            return ObjectGT(cls, ObjectPosition.ROADSIDE, float(self.pick(tuple(free))), side * x, (0, 0, 0, 0), color)

        return make

    def crossing(self) -> Callable[[], ObjectGT | None]:
        def make() -> ObjectGT | None:
            free = self.free(CROSSING_DISTANCES)
            if not free:
                return None
            lateral = float(self.rng.uniform(-1.3, 1.3))
            color = self.pick(_SHIRT_COLORS)
            return ObjectGT("pedestrian", ObjectPosition.EGO_LANE, float(self.pick(tuple(free))), lateral, (0, 0, 0, 0), color, crossing=True)

        return make

    def extras(self, most: int) -> None:
        """Up to `most` distractors: vehicles in the adjacent lanes, people at the roadside."""
        for _ in range(int(self.rng.integers(0, most + 1))):
            kind = self.rng.random()
            if kind < 0.5:
                lane = ObjectPosition.LEFT_LANE if self.rng.random() < 0.5 else ObjectPosition.RIGHT_LANE
                self.add(self.vehicle(lane, ADJACENT_DISTANCES, slow=bool(self.rng.random() < 0.15)))
            else:
                self.add(self.roadside("pedestrian" if kind < 0.8 else "cyclist"))


def _speed(rng: np.random.Generator, low: int = 0, high: int = MAX_SPEED_MPS) -> float:
    return float(rng.integers(low, high + 1))


def _ego_state(speed: float, accel: float | None, curvature: float) -> VehicleState:
    """The ego vehicle follows the road, so its yaw rate is speed times curvature."""
    return VehicleState(speed_mps=speed, accel_mps2=accel, yaw_rate_rps=speed * curvature)


def with_speed(scene: Scene, speed: float) -> Scene:
    """The same scene (and image: rendering ignores the ego speed) driven at another speed; the expert re-decides."""
    return replace(scene, ego=_ego_state(speed, scene.ego.accel_mps2, scene.curvature))


def generate_scene(seed: int, index: int, size: tuple[int, int] = DEFAULT_SIZE) -> Scene:
    """The index-th scene of the stream `seed`; the same (seed, index) always gives the same scene."""
    rng = np.random.default_rng([seed, index])
    weather = WEATHERS[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    curvature = 0.0 if rng.random() < 0.5 else round(float(rng.uniform(0.002, 0.008)) * (1 if rng.random() < 0.5 else -1), 4)
    scenario = _SCENARIOS[int(rng.choice(len(_SCENARIOS), p=_SCENARIO_P))]
    placer = _Placer(rng, curvature)
    control: ObjectGT | None = None
    light = LightState.NONE

    if scenario == "free":
        speed = _speed(rng) if rng.random() < 0.5 else _speed(rng, 20)
        if rng.random() < 0.3:
            light = LightState.GREEN
            control = placer.add(_control_maker(placer, "traffic_light"))
    elif scenario == "follow":
        speed = _speed(rng)
        placer.add(placer.vehicle(ObjectPosition.EGO_LANE, EGO_DISTANCES, slow=bool(rng.random() < 0.25)))
    elif scenario == "slow_lead":
        lead = placer.add(placer.vehicle(ObjectPosition.EGO_LANE, EGO_DISTANCES[3:], slow=True))
        speed = _speed(rng, 9, int(min(MAX_SPEED_MPS, lead.distance_m / 2))) if lead else _speed(rng)
        for lane, p_busy in ((ObjectPosition.LEFT_LANE, 0.6), (ObjectPosition.RIGHT_LANE, 0.35)):
            if rng.random() < p_busy:
                placer.add(placer.vehicle(lane, ADJACENT_DISTANCES))
    elif scenario == "signal":
        speed = _speed(rng)
        kind = rng.random()
        if kind < 0.25:
            control = placer.add(_control_maker(placer, "stop_sign"))
        else:
            light = LightState.RED if kind < 0.6 else (LightState.YELLOW if kind < 0.85 else LightState.GREEN)
            control = placer.add(_control_maker(placer, "traffic_light"))
        if control is None:
            light = LightState.NONE
        elif rng.random() < 0.3:
            placer.add(placer.vehicle(ObjectPosition.EGO_LANE, EGO_DISTANCES, below=control.distance_m))
    else:
        speed = _speed(rng)
        placer.add(placer.crossing())
    placer.extras(3 - sum(o.object_class not in ("traffic_light", "stop_sign") for o in placer.placed))

    accel = round(float(np.clip(rng.normal(0.0, 0.6), -2.0, 2.0)), 1)
    ego = _ego_state(speed, accel, curvature)
    cam = Camera(size)

    def boxed(o: ObjectGT) -> ObjectGT:
        u1, v1, u2, v2 = cam.box(o.object_class, o.lateral_m, o.distance_m, curvature)
        w, h = cam.width, cam.height
        return replace(o, bbox=(_clip(u1, w), _clip(v1, h), _clip(u2, w), _clip(v2, h)))

    users = sorted((o for o in placer.placed if o is not control), key=lambda o: o.distance_m)
    return Scene(
        seed=seed, index=index, size=(int(size[0]), int(size[1])), weather=weather, curvature=curvature, ego=ego,
        objects=tuple(boxed(o) for o in users), control=boxed(control) if control else None, light=light,
    )


def _clip(a: float, high: int) -> int:
    return int(min(max(round(a), 0), high))


def _control_maker(placer: _Placer, cls: str) -> Callable[[], ObjectGT]:
    def make() -> ObjectGT:
        d = float(placer.pick(CONTROL_DISTANCES))
        if cls == "traffic_light":
            return ObjectGT(cls, ObjectPosition.EGO_LANE, d, 0.0, (0, 0, 0, 0), "black")
        return ObjectGT(cls, ObjectPosition.ROADSIDE, d, STOP_SIGN_X_M, (0, 0, 0, 0), "red")

    return make


# ----------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class _Palette:
    sky_top: tuple[int, int, int]
    sky_low: tuple[int, int, int]
    ground: tuple[int, int, int]
    hills: tuple[int, int, int]
    road: tuple[int, int, int]
    sidewalk: tuple[int, int, int]
    paint: tuple[int, int, int]
    noise: float


_PALETTES = {
    "day": _Palette((95, 150, 225), (200, 222, 242), (92, 135, 68), (70, 112, 72), (108, 108, 112), (172, 168, 160), (242, 242, 236), 2.5),
    "night": _Palette((4, 6, 16), (22, 26, 44), (40, 52, 40), (10, 14, 20), (92, 92, 98), (120, 118, 112), (230, 230, 220), 5.0),
    "rain": _Palette((118, 124, 134), (168, 172, 178), (78, 102, 70), (96, 110, 102), (82, 84, 90), (140, 140, 138), (205, 205, 205), 4.0),
}


@dataclass(frozen=True)
class _Lamp:
    """A light source drawn after the scene's lighting, so it stays bright at night."""

    box: tuple[float, float, float, float]
    color: tuple[int, int, int]
    glow: float
    round: bool = False


_SHIFT = 4
_ONE = 1 << _SHIFT


def _fx(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def _poly(img: np.ndarray, polys: list, color: tuple[int, int, int]) -> None:
    cv2.fillPoly(img, [_fx(p) for p in polys], color, cv2.LINE_AA, _SHIFT)


def _rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float, color: tuple[int, int, int]) -> None:
    _poly(img, [[(x1, y1), (x2, y1), (x2, y2), (x1, y2)]], color)


def _circle(img: np.ndarray, c: tuple[float, float], r: float, color: tuple[int, int, int], thickness: int = -1) -> None:
    cv2.circle(img, tuple(_fx(c)), int(round(max(r, 0.5) * _ONE)), color, thickness, cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, a: tuple[float, float], b: tuple[float, float], color: tuple[int, int, int], width: float) -> None:
    cv2.line(img, tuple(_fx(a)), tuple(_fx(b)), color, max(1, int(round(width))), cv2.LINE_AA, _SHIFT)


def _shade(color: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * k)) for c in color)  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _sky(width: int, height: int, horizon: int, top: tuple, low: tuple) -> np.ndarray:
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(low, np.float32)
    return np.broadcast_to(rows, (horizon, width, 3)).astype(np.uint8)


@lru_cache(maxsize=8)
def _headlights(width: int, height: int, horizon: float) -> np.ndarray:
    """Night gain: dim ambient light plus the ego headlights' cone on the road ahead."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    near = np.clip((v - horizon) / (height - horizon), 0, 1)
    cone = np.exp(-(((u - width / 2) / (width * (0.18 + 0.5 * near))) ** 2)) * np.clip(near * 3.0, 0, 1) ** 0.7
    gain = 0.34 + 0.8 * cone
    gain[: int(horizon)] = 1.0
    return gain[..., None]


def _background(cam: Camera, pal: _Palette, rng: np.random.Generator) -> np.ndarray:
    w, h, hz = cam.width, cam.height, int(round(cam.horizon))
    img = np.empty((h, w, 3), np.uint8)
    img[:hz] = _sky(w, h, hz, pal.sky_top, pal.sky_low)
    img[hz:] = pal.ground
    xs = np.linspace(0, w, 13)
    heights = hz - (0.02 + 0.07 * rng.random(13)) * h
    _poly(img, [[(0, hz + 1), *zip(xs, heights), (w, hz + 1)]], pal.hills)
    return img


def _road(img: np.ndarray, cam: Camera, scene: Scene, pal: _Palette, rng: np.random.Generator) -> None:
    c = scene.curvature
    zs = np.geomspace(2.5, 400.0, 90)

    def strip(x1: float, x2: float, z: np.ndarray = zs) -> np.ndarray:
        u1, v1 = cam.project(x1, 0.0, z, c)
        u2, v2 = cam.project(x2, 0.0, z, c)
        return np.concatenate([np.stack([u1, v1], 1), np.stack([u2, v2], 1)[::-1]])

    _poly(img, [strip(-SIDEWALK_M, SIDEWALK_M)], pal.sidewalk)
    _poly(img, [strip(-KERB_M, KERB_M)], pal.road)
    near = zs[zs < 150]
    _poly(img, [strip(s * ROAD_EDGE_M - 0.1, s * ROAD_EDGE_M + 0.1, near) for s in (-1, 1)], pal.paint)
    phase = float(rng.uniform(0, 10))
    dashes = []
    for z0 in np.arange(2.5 + phase - 10, 120, 10.0):
        z = np.linspace(max(z0, 2.5), z0 + 3.5, 3)
        if z[-1] > z[0]:
            dashes += [strip(x - 0.08, x + 0.08, z) for x in (-LANE_WIDTH_M / 2, LANE_WIDTH_M / 2)]
    _poly(img, dashes, pal.paint)
    if scene.control is not None:  # stop line across the ego lane
        d = scene.control.distance_m - 1.0
        _poly(img, [strip(-LANE_WIDTH_M / 2, LANE_WIDTH_M / 2, np.array([d - 0.3, d + 0.3]))], pal.paint)
    for o in scene.objects:  # zebra crossing under a crossing pedestrian
        if o.crossing:
            z = np.array([o.distance_m - 1.5, o.distance_m + 1.5])
            _poly(img, [strip(x, x + 0.5, z) for x in np.arange(-ROAD_EDGE_M + 0.25, ROAD_EDGE_M, 1.0)], pal.paint)


def _anchor(cam: Camera, scene: Scene, o: ObjectGT) -> tuple[float, float, float]:
    """(u of the anchor, v of the ground, pixels per metre)."""
    u, v = cam.project(o.lateral_m, 0.0, o.distance_m, scene.curvature)
    return float(u), float(v), cam.f / o.distance_m


def _tail_lights(lamps: list[_Lamp], boxes: list[tuple[float, float, float, float]], o: ObjectGT, night: bool, s: float) -> None:
    if o.slow:
        color, glow = (255, 50, 40), 0.3 * s
    elif night:
        color, glow = (200, 30, 25), 0.15 * s
    else:
        color, glow = (130, 22, 22), 0.0
    lamps.extend(_Lamp(b, color, glow) for b in boxes)


def _car(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    u, v, s = _anchor(cam, scene, o)
    body = COLORS[o.color]
    w, h = 1.8 * s, 1.5 * s
    l, r, t = u - w / 2, u + w / 2, v - h
    cv2.ellipse(img, tuple(_fx((u, v))), tuple(_fx((0.58 * w, 0.07 * h))), 0, 0, 360, (28, 28, 30), -1, cv2.LINE_AA, _SHIFT)
    for x in (l + 0.05 * w, r - 0.22 * w):
        _rect(img, x, v - 0.2 * h, x + 0.17 * w, v, (22, 22, 24))
    _rect(img, l, v - 0.62 * h, r, v - 0.1 * h, body)
    _poly(img, [[(l + 0.05 * w, v - 0.6 * h), (l + 0.2 * w, t), (r - 0.2 * w, t), (r - 0.05 * w, v - 0.6 * h)]], body)
    _poly(img, [[(l + 0.13 * w, v - 0.63 * h), (l + 0.24 * w, t + 0.09 * h), (r - 0.24 * w, t + 0.09 * h), (r - 0.13 * w, v - 0.63 * h)]], (44, 54, 70))
    _rect(img, l + 0.02 * w, v - 0.24 * h, r - 0.02 * w, v - 0.1 * h, _shade(body, 0.55))
    _rect(img, u - 0.12 * w, v - 0.34 * h, u + 0.12 * w, v - 0.24 * h, (236, 236, 228))
    lamps: list[_Lamp] = []
    _tail_lights(lamps, [(l + 0.03 * w, v - 0.56 * h, l + 0.21 * w, v - 0.4 * h), (r - 0.21 * w, v - 0.56 * h, r - 0.03 * w, v - 0.4 * h)], o, scene.weather == "night", s)
    if o.slow:
        lamps.append(_Lamp((u - 0.14 * w, t + 0.1 * h, u + 0.14 * w, t + 0.15 * h), (255, 50, 40), 0.2 * s))
    return lamps


def _truck(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    u, v, s = _anchor(cam, scene, o)
    body = COLORS[o.color]
    w, h = 2.5 * s, 3.3 * s
    l, r, t = u - w / 2, u + w / 2, v - h
    cv2.ellipse(img, tuple(_fx((u, v))), tuple(_fx((0.56 * w, 0.04 * h))), 0, 0, 360, (28, 28, 30), -1, cv2.LINE_AA, _SHIFT)
    for x in (l + 0.05 * w, r - 0.33 * w):
        _rect(img, x, v - 0.14 * h, x + 0.28 * w, v, (22, 22, 24))
    _rect(img, l + 0.04 * w, v - 0.22 * h, r - 0.04 * w, v - 0.1 * h, (45, 45, 48))
    _rect(img, l, t, r, v - 0.2 * h, body)
    edge = _shade(body, 0.6)
    _line(img, (u, t + 0.03 * h), (u, v - 0.21 * h), edge, 0.05 * s)
    for y in (0.35, 0.55):
        _line(img, (l + 0.04 * w, t + y * h), (r - 0.04 * w, t + y * h), edge, 0.03 * s)
    _rect(img, l + 0.1 * w, v - 0.11 * h, r - 0.1 * w, v - 0.075 * h, (200, 55, 40))
    lamps: list[_Lamp] = []
    _tail_lights(lamps, [(l + 0.04 * w, v - 0.26 * h, l + 0.17 * w, v - 0.2 * h), (r - 0.17 * w, v - 0.26 * h, r - 0.04 * w, v - 0.2 * h)], o, scene.weather == "night", s)
    if o.slow:
        lamps.append(_Lamp((u - 0.1 * w, t + 0.02 * h, u + 0.1 * w, t + 0.05 * h), (255, 50, 40), 0.2 * s))
    return lamps


_SKIN = ((240, 200, 170), (200, 150, 110), (140, 95, 65), (95, 65, 45))
_PANTS = ((40, 45, 80), (35, 35, 38), (90, 90, 95), (110, 85, 60))


def _pedestrian(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    u, v, s = _anchor(cam, scene, o)
    shirt, skin, pants = COLORS[o.color], _SKIN[int(rng.integers(4))], _PANTS[int(rng.integers(4))]
    hip, shoulder = v - 0.88 * s, v - 1.45 * s
    if o.crossing:  # side view, mid-stride
        step = (1 if rng.random() < 0.5 else -1) * 0.3 * s
        for dx in (step, -step):
            _line(img, (u, hip), (u + dx, v), pants, 0.15 * s)
            _line(img, (u, shoulder + 0.1 * s), (u - 0.6 * dx, hip + 0.05 * s), skin, 0.09 * s)
        _rect(img, u - 0.15 * s, shoulder, u + 0.15 * s, hip + 0.05 * s, shirt)
    else:
        for dx in (-0.1, 0.1):
            _rect(img, u + (dx - 0.07) * s, hip, u + (dx + 0.07) * s, v, pants)
            _rect(img, u + 3.0 * dx * s - 0.04 * s, shoulder + 0.05 * s, u + 3.0 * dx * s + 0.04 * s, hip + 0.05 * s, skin)
        _rect(img, u - 0.22 * s, shoulder, u + 0.22 * s, hip + 0.05 * s, shirt)
    _circle(img, (u, v - 1.6 * s), 0.12 * s, skin)
    _circle(img, (u, v - 1.65 * s), 0.1 * s, (40, 30, 25))
    return []


def _cyclist(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    u, v, s = _anchor(cam, scene, o)
    d = 1 if rng.random() < 0.5 else -1  # riding direction on the picture
    wr, tire = 0.34 * s, (25, 25, 28)
    rear, front = (u - d * 0.52 * s, v - wr), (u + d * 0.52 * s, v - wr)
    seat, bar, crank = (u - d * 0.18 * s, v - 0.95 * s), (u + d * 0.42 * s, v - 1.02 * s), (u, v - 0.36 * s)
    for c in (rear, front):
        _circle(img, c, wr, tire, max(1, int(round(0.07 * s))))
    frame = COLORS["silver" if o.color == "white" else "white"]
    for a, b in ((rear, seat), (seat, crank), (crank, rear), (seat, bar), (bar, front), (crank, bar)):
        _line(img, a, b, frame, 0.05 * s)
    shirt, skin = COLORS[o.color], _SKIN[int(rng.integers(4))]
    shoulder = (u + d * 0.1 * s, v - 1.5 * s)
    _line(img, seat, (crank[0] + d * 0.1 * s, crank[1] + 0.1 * s), (40, 45, 80), 0.13 * s)
    _line(img, seat, shoulder, shirt, 0.26 * s)
    _line(img, shoulder, bar, skin, 0.08 * s)
    _circle(img, (shoulder[0] + d * 0.08 * s, shoulder[1] - 0.17 * s), 0.12 * s, skin)
    _circle(img, (shoulder[0] + d * 0.06 * s, shoulder[1] - 0.22 * s), 0.13 * s, (235, 235, 60))
    r = max(0.06 * s, 0.7)
    return [_Lamp((rear[0] - d * 0.3 * s - r, v - 0.8 * s - r, rear[0] - d * 0.3 * s + r, v - 0.8 * s + r), (255, 40, 30), 0.15 * s)]


_LIGHT_LAMPS = ((LightState.RED, 5.1, (255, 45, 35)), (LightState.YELLOW, 4.5, (255, 190, 20)), (LightState.GREEN, 3.9, (40, 250, 120)))


def _traffic_light(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    c, z = scene.curvature, o.distance_m
    s = cam.f / z
    pole_u, pole_v = cam.project(LIGHT_POLE_X_M, 0.0, z, c)
    arm_u, arm_v = cam.project(o.lateral_m - 0.6, 5.6, z, c)
    _rect(img, pole_u - 0.09 * s, arm_v, pole_u + 0.09 * s, pole_v, (95, 98, 100))
    _rect(img, arm_u, arm_v - 0.06 * s, pole_u, arm_v + 0.06 * s, (95, 98, 100))
    u1, v1, u2, v2 = cam.box("traffic_light", o.lateral_m, z, c)
    _rect(img, u1, v1, u2, v2, (210, 180, 40))
    _rect(img, u1 + 0.06 * s, v1 + 0.06 * s, u2 - 0.06 * s, v2 - 0.06 * s, (28, 28, 30))
    u = (u1 + u2) / 2
    lamps = []
    for state, y, color in _LIGHT_LAMPS:
        _, vy = cam.project(0.0, y, z, c)
        r = 0.24 * s
        if state is scene.light:
            lamps.append(_Lamp((u - r, vy - r, u + r, vy + r), color, 0.45 * s, round=True))
        else:
            _circle(img, (u, vy), r, _shade(color, 0.22))
    return lamps


def _stop_sign(img: np.ndarray, cam: Camera, scene: Scene, o: ObjectGT, rng: np.random.Generator) -> list[_Lamp]:
    u, v, s = _anchor(cam, scene, o)
    cy, r = v - 2.8 * s, 0.55 * s
    _rect(img, u - 0.05 * s, cy, u + 0.05 * s, v, (150, 152, 155))
    angles = np.pi / 8 + np.arange(8) * np.pi / 4
    octagon = lambda k: np.stack([u + k * r * np.cos(angles), cy + k * r * np.sin(angles)], 1)  # noqa: E731
    _poly(img, [octagon(1.0)], (245, 245, 245))
    _poly(img, [octagon(0.86)], (200, 24, 28))
    if r >= 7:
        scale = r / 26
        (tw, th), _ = cv2.getTextSize("STOP", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.putText(img, "STOP", (int(u - tw / 2), int(cy + th / 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, (245, 245, 245), 1, cv2.LINE_AA)
    return []


_DRAW = {"car": _car, "truck": _truck, "pedestrian": _pedestrian, "cyclist": _cyclist, "traffic_light": _traffic_light, "stop_sign": _stop_sign}


def _draw_lamp(img: np.ndarray, lamp: _Lamp, glow_gain: float) -> None:
    x1, y1, x2, y2 = lamp.box
    cu, cv_ = (x1 + x2) / 2, (y1 + y2) / 2
    radius = max(lamp.glow * glow_gain, 1.5) if lamp.glow else 0.0
    if radius:
        reach = int(2.5 * radius) + 1
        h, w = img.shape[:2]
        ya, yb = max(0, int(cv_) - reach), min(h, int(cv_) + reach + 1)
        xa, xb = max(0, int(cu) - reach), min(w, int(cu) + reach + 1)
        if ya < yb and xa < xb:
            yy, xx = np.ogrid[ya:yb, xa:xb]
            weight = (0.6 * np.exp(-((xx - cu) ** 2 + (yy - cv_) ** 2) / (2 * radius**2)))[..., None]
            roi = img[ya:yb, xa:xb].astype(np.float32)
            img[ya:yb, xa:xb] = (roi + weight * (np.array(lamp.color, np.float32) - roi)).astype(np.uint8)
    if lamp.round:
        _circle(img, (cu, cv_), (x2 - x1) / 2, lamp.color)
    else:
        _rect(img, x1, y1, x2, y2, lamp.color)


def render_scene(scene: Scene) -> np.ndarray:
    """H x W x 3 uint8 RGB frame of the scene; deterministic (appearance noise is seeded by the scene)."""
    cam = Camera(scene.size)
    pal = _PALETTES[scene.weather]
    rng = np.random.default_rng([scene.seed, scene.index, 1])
    img = _background(cam, pal, rng)
    _road(img, cam, scene, pal, rng)
    lamps: list[_Lamp] = []
    items = [*scene.objects, *([scene.control] if scene.control else [])]
    for o in sorted(items, key=lambda o: -o.distance_m):
        lamps += _DRAW[o.object_class](img, cam, scene, o, rng)
    if scene.weather == "night":
        img = (img * _headlights(cam.width, cam.height, cam.horizon)).clip(0, 255).astype(np.uint8)
    for lamp in lamps:
        _draw_lamp(img, lamp, 1.4 if scene.weather == "night" else 1.0)
    if scene.weather == "rain":
        _rain(img, cam, rng)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * pal.noise
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _rain(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> None:
    n = int(cam.width * cam.height / 350)
    x = rng.uniform(0, cam.width, n)
    y = rng.uniform(0, cam.height, n)
    length = rng.uniform(0.03, 0.07, n) * cam.height
    streaks = np.stack([np.stack([x, y], 1), np.stack([x - 0.25 * length, y + length], 1)], 1)
    overlay = img.copy()
    cv2.polylines(overlay, list(_fx(streaks)), False, (215, 218, 225), 1, cv2.LINE_AA, _SHIFT)
    cv2.addWeighted(overlay, 0.35, img, 0.65, 0, dst=img)
