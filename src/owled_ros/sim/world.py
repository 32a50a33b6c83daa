"""The MetaDrive world, run as its own process in .venv-sim: `python -m owled_ros.sim.world`.

It speaks sim/protocol.py on stdin/stdout and knows nothing of ROS or torch. Requests:
- {"op": "reset", "scenario": {...Scenario}} -> ground truth
- {"op": "step", "steer": s, "throttle": t} -> ground truth after one STEP_S world step
  (physics only: nothing is drawn, a step takes milliseconds)
- {"op": "render"} -> ground truth + the forward camera frame (BGR uint8)
- {"op": "quit"}: the process exits at once (MetaDrive's env.close() aborts)

Rendering is headless: Mesa's software GL through EGL, with multisampling off and no terrain
(with MetaDrive's defaults, 16 samples and terrain, the first frame took minutes on the CPU),
and only when a camera frame is due: MetaDrive draws every step by default, which cost a
second a step on 2 cores, against about 20 ms for the physics.

Ground truth (all SI units; lateral offsets and lane offsets positive to the right):
t_s, x, y, yaw, speed_mps, lane_index (0 = leftmost), lane_count, lane_width_m,
lane_lateral_m (the ego's offset from each lane's centre, by lane index), heading_error_rad
(ego heading minus its lane's), lookahead_m and lane_bearing_rad (by lane, the angle from the
ego's heading to the lane centre lookahead_m ahead, positive to the right), road_curvature_1pm
(the ego lane's heading change per metre over the next CURVATURE_M, positive to the LEFT as
data/scenes.Scene counts it), route_s, route_length_m, crash_vehicle, crash_object,
out_of_road, arrived, and vehicles: every other vehicle within VIEW_M ahead or BEHIND_M
behind, as {class ("car" or "truck"), x, y, speed_mps, distance_m (along the ego lane),
lane_offset (lanes to the right of the ego's; negative: left)}.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any

from owled_ros.sim.protocol import receive, send
from owled_ros.sim.scenario import DECISION_REPEAT, PHYSICS_STEP_S, Scenario

LOOKAHEAD_MIN_M = 8.0
LOOKAHEAD_S = 0.8  # lookahead distance: this many seconds of travel, at least LOOKAHEAD_MIN_M
VIEW_M = 120.0
BEHIND_M = 30.0
TRUCKS = ("XLVehicle", "LVehicle")
CAMERA_FOV_DEG = 60.0  # MetaDrive's RGBCamera lens
CURVATURE_M = 30.0
PRC = """
framebuffer-multisample 0
multisamples 0
load-display p3headlessgl
aux-display p3headlessgl
window-type offscreen
audio-library-name null
notify-level warning
notify-level-task fatal
notify-level-device fatal
notify-level-display fatal
"""


def _headless() -> None:
    """Panda3D settings and MetaDrive's hard-coded 16 PBR samples forced to 0, before the engine starts."""
    from panda3d.core import loadPrcFileData

    import metadrive.engine.core.our_pbr as our_pbr

    loadPrcFileData("owled_sim", PRC)
    original = our_pbr.OurPipeline.__init__

    def no_msaa(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["msaa_samples"] = 0
        original(self, *args, **kwargs)

    our_pbr.OurPipeline.__init__ = no_msaa


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class MetaDriveWorld:
    """One MetaDrive environment; reset() rebuilds it when the road changes, else reuses it."""

    def __init__(self) -> None:
        _headless()
        self.env = None
        self.road: tuple | None = None
        self.route: list[tuple[str, str, float]] = []
        self.steps = 0

    def _make_env(self, s: Scenario) -> None:
        from metadrive import MetaDriveEnv

        self.env = MetaDriveEnv(dict(
            use_render=False, image_observation=True, show_terrain=False, show_interface=False, show_logo=False,
            show_fps=False, multi_thread_render=False, start_seed=0, environment_num=1_000_000,
            map=s.blocks, traffic_density=s.traffic_density, random_lane_num=False, random_lane_width=False,
            map_config=dict(lane_num=s.lanes), random_traffic=False, crash_vehicle_done=False,
            out_of_route_done=False, physics_world_step_size=PHYSICS_STEP_S, decision_repeat=DECISION_REPEAT,
            horizon=None, vehicle_config=dict(image_source="rgb_camera", rgb_camera=(s.width, s.height), stack_size=1),
        ))
        self.road = (s.lanes, s.blocks, s.traffic_density, s.width, s.height)

    def reset(self, s: Scenario) -> dict:
        if self.road != (s.lanes, s.blocks, s.traffic_density, s.width, s.height):
            if self.env is not None:
                raise RuntimeError("one world process serves one road; start another for a different one")
            self._make_env(s)
        self.env.reset(force_seed=s.seed)
        self.env.vehicle.set_velocity(self.env.vehicle.heading, s.initial_speed_mps)
        engine = self.env.engine
        engine.taskMgr.remove("igLoop")  # draw only in render()
        nav = self.env.vehicle.navigation
        graph = engine.current_map.road_network.graph
        self.route = [(a, b, graph[a][b][0].length) for a, b in zip(nav.checkpoints[:-1], nav.checkpoints[1:])]
        self.steps = 0
        return self.truth({})

    def step(self, steer: float, throttle: float) -> dict:
        action = [max(-1.0, min(1.0, float(steer))), max(-1.0, min(1.0, float(throttle)))]
        _, _, _, info = self.env.step(action)
        self.steps += 1
        return self.truth(info)

    def render(self) -> bytes:
        import numpy as np

        self.env.engine.graphicsEngine.renderFrame()
        camera = self.env.vehicle.image_sensors["rgb_camera"]
        bgr = camera.get_pixels_array(self.env.vehicle, False)  # uint8 BGR, height x width x 3
        return np.ascontiguousarray(bgr, dtype=np.uint8).tobytes()

    def _route_s(self, lane: Any, long_m: float) -> float:
        done = 0.0
        for a, b, length in self.route:
            if (a, b) == lane.index[:2]:
                return done + max(0.0, min(long_m, length))
            done += length
        return float("nan")  # off the route's roads

    @staticmethod
    def _bearing(lane: Any, v: Any, lookahead_m: float) -> float:
        """Angle from the ego's heading to the point lookahead_m further along `lane`'s centre."""
        long_m = float(lane.local_coordinates(v.position)[0])
        px, py = (float(c) for c in lane.position(long_m + lookahead_m, 0.0))
        x, y = (float(c) for c in v.position)
        return _wrap(math.atan2(py - y, px - x) - float(v.heading_theta))

    def truth(self, info: dict) -> dict:
        v = self.env.vehicle
        nav = v.navigation
        lane = nav.current_lane
        lanes = list(nav.current_ref_lanes)
        x, y = (float(c) for c in v.position)
        long_m, lat_m = (float(c) for c in lane.local_coordinates(v.position))
        index = next((i for i, ref in enumerate(lanes) if ref.index == lane.index), int(lane.index[2]))
        heading = float(v.heading_theta)
        lookahead = max(LOOKAHEAD_MIN_M, LOOKAHEAD_S * float(v.speed))
        vehicles = []
        for obj in self.env.engine.get_objects().values():
            if obj is v or not hasattr(obj, "speed") or type(obj).__name__ == "PGMap" or not hasattr(obj, "heading_theta"):
                continue
            o_long, o_lat = (float(c) for c in lane.local_coordinates(obj.position))
            distance = o_long - long_m
            if not -BEHIND_M <= distance <= VIEW_M:
                continue
            ox, oy = (float(c) for c in obj.position)
            vehicles.append({
                "class": "truck" if type(obj).__name__ in TRUCKS else "car", "x": ox, "y": oy,
                "speed_mps": float(obj.speed), "distance_m": distance, "lane_offset": int(round(o_lat / lane.width)),
            })
        vehicles.sort(key=lambda o: o["distance_m"])
        return {
            "t_s": self.steps * PHYSICS_STEP_S * DECISION_REPEAT, "x": x, "y": y, "yaw": heading,
            "speed_mps": float(v.speed), "lane_index": index, "lane_count": len(lanes), "lane_width_m": float(lane.width),
            "lane_lateral_m": [float(ref.local_coordinates(v.position)[1]) for ref in lanes],
            "heading_error_rad": _wrap(heading - float(lane.heading_theta_at(long_m))),
            "road_curvature_1pm": -_wrap(float(lane.heading_theta_at(long_m + CURVATURE_M)) - float(lane.heading_theta_at(long_m))) / CURVATURE_M,
            "lookahead_m": lookahead, "lane_bearing_rad": [self._bearing(ref, v, lookahead) for ref in lanes],
            "route_s": self._route_s(lane, long_m), "route_length_m": sum(r[2] for r in self.route),
            # The vehicle's own contact flags (set by MetaDrive's contact-added callback during the step):
            # its step info reports a crash only where the config ends the episode on it (crash_*_done).
            "crash_vehicle": bool(v.crash_vehicle), "crash_object": bool(v.crash_object or v.crash_building),
            "out_of_road": bool(info.get("out_of_road", False)), "arrived": bool(info.get("arrive_dest", False)),
            "vehicles": vehicles, "camera_fov_deg": CAMERA_FOV_DEG,
        }


def serve(requests: Any, replies: Any) -> None:
    world = MetaDriveWorld()
    send(replies, {"ok": True, "ready": True})
    while True:
        request, _ = receive(requests)
        op = request.get("op")
        try:
            if op == "quit":
                replies.flush()
                os._exit(0)
            elif op == "reset":
                send(replies, {"ok": True, "truth": world.reset(Scenario(**request["scenario"]))})
            elif op == "step":
                send(replies, {"ok": True, "truth": world.step(request["steer"], request["throttle"])})
            elif op == "render":
                send(replies, {"ok": True, "truth": world.truth({})}, world.render())
            else:
                send(replies, {"ok": False, "error": f"unknown request {op!r}"})
        except Exception as err:  # reported to the client, which raises it there
            send(replies, {"ok": False, "error": f"{type(err).__name__}: {err}"})


def main() -> None:
    # MetaDrive and gym print to stdout: the protocol gets a private copy of it, stdout goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
