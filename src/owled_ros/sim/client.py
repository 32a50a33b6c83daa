"""Starts the MetaDrive world process in .venv-sim and talks to it (sim/protocol.py).

The simulator pins numpy<=1.24.2 and gym<0.26, so it cannot share .venv: scripts/sim_setup.sh
builds .venv-sim on first use, and the world runs there with this source tree on PYTHONPATH.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from owled_ros.errors import OwledError
from owled_ros.sim.protocol import WorldError, receive, send
from owled_ros.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[3]
SRC = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "sim_setup.sh"
STARTUP_ERROR_LINES = 15


def sim_venv() -> Path:
    return Path(os.environ.get("OWLED_SIM_VENV", ROOT / ".venv-sim"))


def sim_python(setup: bool = True) -> Path:
    """The simulator's interpreter; with setup, builds .venv-sim first when it is missing or stale."""
    python = sim_venv() / "bin" / "python"
    if setup:
        if not SETUP.is_file():
            raise OwledError(f"{SETUP} is missing: cannot build the simulator venv")
        done = subprocess.run(["bash", str(SETUP)], env=dict(os.environ, OWLED_SIM_VENV=str(sim_venv())))
        if done.returncode != 0:
            raise OwledError(f"could not build the simulator venv {sim_venv()} (scripts/sim_setup.sh exit {done.returncode})")
    if not python.is_file():
        raise OwledError(f"no simulator venv at {sim_venv()}: run scripts/sim_setup.sh")
    return python


@dataclass(frozen=True)
class Frame:
    """One rendered forward-camera frame with the world's ground truth at that moment."""

    bgr: np.ndarray
    truth: dict


class WorldProcess:
    """A MetaDrive world in a child process; use as a context manager so it always exits."""

    def __init__(self, log: Path | None = None, setup: bool = True) -> None:
        python = sim_python(setup)
        env = dict(os.environ, PYTHONPATH=str(SRC), LIBGL_ALWAYS_SOFTWARE="1", PYTHONUNBUFFERED="1")
        env.pop("VIRTUAL_ENV", None)
        self.log_path = log
        stderr = open(log, "w") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(python), "-m", "owled_ros.sim.world"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            env=env, start_new_session=True,
        )
        if log is not None:
            stderr.close()
        self.scenario: Scenario | None = None
        try:
            self._call({})  # the "ready" greeting
        except BaseException:
            self.close()
            raise

    def _call(self, request: dict) -> tuple[dict, bytes]:
        try:
            if request:
                send(self.proc.stdin, request)
            reply, payload = receive(self.proc.stdout)
        except (WorldError, BrokenPipeError, OSError) as err:
            self.proc.poll()
            raise OwledError(f"the simulator process failed ({err}){self._log_tail()}") from err
        if not reply.get("ok"):
            raise OwledError(f"the simulator refused {request.get('op')!r}: {reply.get('error')}")
        return reply, payload

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-STARTUP_ERROR_LINES:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines)

    def reset(self, scenario: Scenario) -> dict:
        self.scenario = scenario
        return self._call({"op": "reset", "scenario": scenario.as_dict()})[0]["truth"]

    def step(self, steer: float, throttle: float) -> dict:
        return self._call({"op": "step", "steer": float(steer), "throttle": float(throttle)})[0]["truth"]

    def render(self) -> Frame:
        reply, payload = self._call({"op": "render"})
        s = self.scenario
        return Frame(np.frombuffer(payload, np.uint8).reshape(s.height, s.width, 3), reply["truth"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                send(self.proc.stdin, {"op": "quit"})
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "WorldProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

