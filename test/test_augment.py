"""Camera variations for training (data/augment.py): the same for a seed, different across seeds,
and mild enough that the labels stay true."""
from __future__ import annotations

import numpy as np

from owled_ros.data.augment import augment

H, W = 216, 384


def _frame_with_marker(x0: int, x1: int) -> np.ndarray:
    """Grey road frame with a red box between columns x0 and x1 at mid height."""
    rgb = np.full((H, W, 3), 110, np.uint8)
    rgb[90:130, x0:x1] = (220, 30, 30)
    return rgb


def _red_centroid(rgb: np.ndarray) -> tuple[float, float] | None:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((r - np.maximum(g, b)) > 60)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


def test_a_seed_gives_one_variation_and_seeds_differ() -> None:
    rgb = _frame_with_marker(40, 90)
    a, b = augment(rgb, 5), augment(rgb, 6)
    assert a.shape == rgb.shape and a.dtype == np.uint8 and a.flags.c_contiguous
    assert (augment(rgb, 5) == a).all()
    assert not (a == b).all() and not (a == rgb).all()


def test_framing_keeps_a_road_user_in_view_on_its_side() -> None:
    """No mirror image and no crop that loses an object: labels say left and right."""
    rgb = _frame_with_marker(30, 80)  # left edge region
    for seed in range(40):
        centroid = _red_centroid(augment(rgb, seed))
        assert centroid is not None, seed
        x, y = centroid
        assert x < W / 3 and abs(y - 110) < 0.2 * H, (seed, centroid)


def test_exposure_stays_within_its_stops() -> None:
    rgb = np.full((H, W, 3), 100, np.uint8)
    means = [augment(rgb, seed).mean() for seed in range(40)]
    assert min(means) > 100 * 2 ** -0.8 * 0.7 and max(means) < 100 * 2 ** 0.5 * 1.3
    assert max(means) - min(means) > 30  # it does vary
