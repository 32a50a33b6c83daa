"""Calibrated action confidence: Platt scaling of the raw confidence (runtime/answer.py).

The raw confidence is the probability greedy decoding gave the action phrase's tokens; a model
trained to near-zero loss says 0.99 also when wrong. Platt scaling maps it to
sigmoid(a * logit(raw) + b), with a and b fitted by maximum likelihood on validation frames
(J. Platt, 1999; with b = 0 it is temperature scaling, T = 1 / a). Stored in the model's meta as
"confidence_calibration", so pruned and int8 models keep it; a model without it reports the raw
confidence.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-6
META_KEY = "confidence_calibration"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class ConfidenceCalibration:
    a: float
    b: float

    def apply(self, raw: float) -> float:
        z = self.a * float(_logit(np.asarray(raw))) + self.b
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> "ConfidenceCalibration | None":
        record = meta.get(META_KEY)
        return cls(float(record["a"]), float(record["b"])) if record else None


def fit_platt(raw: np.ndarray, correct: np.ndarray) -> ConfidenceCalibration:
    """Maximum-likelihood a, b of sigmoid(a * logit(raw) + b) for the outcomes `correct` (scipy's L-BFGS)."""
    from scipy.optimize import minimize

    x, y = _logit(np.asarray(raw, float)), np.asarray(correct, float)

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * x + params[1]
        loss = np.logaddexp(0, z) - y * z  # -log likelihood of each outcome
        grad_z = 1 / (1 + np.exp(-z)) - y
        return float(loss.mean()), np.array([(grad_z * x).mean(), grad_z.mean()])

    result = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return ConfidenceCalibration(float(result.x[0]), float(result.x[1]))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width confidence bins of (share of frames) x |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        mask = which == k
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)
