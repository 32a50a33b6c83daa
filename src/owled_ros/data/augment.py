"""Camera variations of a labelled frame (`owled train --augment N`): another exposure, colour,
focus, compression, framing and pitch of the same scene, so a few real drives teach the scene
and not the look of one camera on one day.

No mirror image: the labels name lanes left and right. The framing keeps at least 85 % of the
width and a mild perspective, so a road user inside the labelled range stays in view.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentRanges:
    """How far each variation reaches; the defaults are mild enough to keep every label true."""

    min_crop: float = 0.85  # share of width and height kept
    corner_jitter: float = 0.03  # perspective: each corner moves up to this share of the side
    exposure_stops: tuple[float, float] = (-0.8, 0.5)
    gamma: tuple[float, float] = (0.8, 1.25)
    channel_gain: float = 0.08  # per-channel white balance, +- this share
    saturation: tuple[float, float] = (0.6, 1.3)
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    blur_chance: float = 0.5
    noise_sigma: float = 6.0  # grey levels, drawn from 0 to this
    noise_chance: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_chance: float = 0.7


def augment(rgb: np.ndarray, seed: int, ranges: AugmentRanges = AugmentRanges()) -> np.ndarray:
    """One variation of an H x W x 3 uint8 RGB frame, the same for the same seed."""
    rng = np.random.default_rng(seed)
    out = _reframe(rgb, rng, ranges)
    out = _photometric(out, rng, ranges)
    if rng.random() < ranges.blur_chance:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(*ranges.blur_sigma)))
    if rng.random() < ranges.noise_chance:
        noise = rng.normal(0.0, rng.uniform(0.0, ranges.noise_sigma), out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < ranges.jpeg_chance:
        quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # channel order does not matter for a round trip
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


def _reframe(rgb: np.ndarray, rng: np.random.Generator, r: AugmentRanges) -> np.ndarray:
    """A crop of the frame seen through a slightly tilted camera, back at the frame's size."""
    h, w = rgb.shape[:2]
    scale = rng.uniform(r.min_crop, 1.0)
    cw, ch = w * scale, h * scale
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    corners = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]], np.float32)
    corners += rng.uniform(-r.corner_jitter, r.corner_jitter, (4, 2)).astype(np.float32) * np.array([cw, ch], np.float32)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    warp = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(rgb, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _photometric(rgb: np.ndarray, rng: np.random.Generator, r: AugmentRanges) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    x = x * 2.0 ** rng.uniform(*r.exposure_stops)
    x = x * rng.uniform(1.0 - r.channel_gain, 1.0 + r.channel_gain, 3).astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(*r.saturation)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*r.gamma)
    return (x * 255.0 + 0.5).astype(np.uint8)
