"""Deploy settings, apart from the builder so `owled --help` reads the defaults without importing torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeployConfig:
    alpha: float = 0.8  # SmoothQuant's migration strength, chosen on val (BENCHMARKS 5.0.2; the paper's 0.5 lost 2.8 points there)
    calib: str = "scenes"
    calib_samples: int = 32
    down_alpha: float | None = None  # down_proj's own alpha (None: alpha)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.down_alpha is not None and not 0.0 <= self.down_alpha <= 1.0:
            raise ValueError(f"--down-alpha must be in [0, 1], got {self.down_alpha}")
        if self.calib_samples < 1:
            raise ValueError(f"empty calibration set: --calib-samples must be at least 1, got {self.calib_samples}")
