"""Helpers for tests that start real ROS processes over (confined) DDS."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ros_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    return env


def start_python(code: str, **extra: str) -> subprocess.Popen:
    """A second process running `code` with the same confined DDS settings."""
    return subprocess.Popen(
        [sys.executable, "-c", code], env=ros_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
