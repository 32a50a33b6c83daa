"""Reading images from disk for the CLI and data loaders, with user-facing errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from owled_ros.errors import OwledError


def read_image_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB; OwledError when missing or not decodable (cv2 returns None silently)."""
    path = Path(path)
    if not path.is_file():
        raise OwledError(f"{path}: image not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OwledError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
