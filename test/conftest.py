"""Test-wide setup: DDS stays on this machine (localhost discovery, shared memory only, own domain)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds_localhost.xml")
os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 99)))
os.environ.setdefault("AMENT_PREFIX_PATH", str(ROOT / ".venv"))
os.environ["PYTHONUNBUFFERED"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: loads the real default model (runs in CI too)")


@pytest.fixture(scope="session")
def default_vlm():
    from owled_ros.model.checkpoint import load_vlm

    return load_vlm("default")
