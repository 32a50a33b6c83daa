"""Thread-safe counters and latency windows that the node reports on /diagnostics."""
from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 500  # latest frames the percentiles cover


@dataclass
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    errors: int
    camera_timeouts: int
    rejected: dict[str, int]
    stale_state: int
    latency_ms: tuple[float, float] | None  # (p50, p95) of model latency
    overhead_ms: tuple[float, float] | None  # (p50, p95) of node time around the model
    age_ms: tuple[float, float] | None  # (p50, p95) of receive -> publish, queueing included
    out_of_distribution: int = 0  # frames scored out of distribution, since start
    ood_rate: float | None = None  # their share among the latest scored frames; None: no frame scored

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def _p50_p95(values: deque[float]) -> tuple[float, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(np.fromiter(values, float), [50, 95])
    return float(p50), float(p95)


@dataclass
class FrameStats:
    received: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0  # frames the model or a publisher failed on
    camera_timeouts: int = 0  # times the camera went silent for longer than camera_timeout_s
    stale_state: int = 0
    rejected: Counter = field(default_factory=Counter)
    _latency: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    _overhead: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    _age: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    out_of_distribution: int = 0
    _ood: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def frame_done(self, latency_ms: float, overhead_ms: float, age_ms: float, state_fresh: bool,
                   out_of_distribution: bool | None = None) -> None:
        """`out_of_distribution` None: the model has no OOD statistics, the frame was not scored."""
        with self._lock:
            self.processed += 1
            if out_of_distribution is not None:
                self.out_of_distribution += out_of_distribution
                self._ood.append(out_of_distribution)
            self.stale_state += not state_fresh
            self._latency.append(latency_ms)
            self._overhead.append(overhead_ms)
            self._age.append(age_ms)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                errors=self.errors,
                camera_timeouts=self.camera_timeouts,
                rejected=dict(self.rejected),
                stale_state=self.stale_state,
                latency_ms=_p50_p95(self._latency),
                overhead_ms=_p50_p95(self._overhead),
                age_ms=_p50_p95(self._age),
                out_of_distribution=self.out_of_distribution,
                ood_rate=sum(self._ood) / len(self._ood) if self._ood else None,
            )
