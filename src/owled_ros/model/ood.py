"""Out-of-distribution statistics of a model: how far a frame is from the frames it was trained on.

The feature is the encoder's output tokens averaged over the grid (one vector per frame, 1280
numbers for EfficientNet-Lite0), which the pipeline computes anyway. Training frames give its mean
and a Ledoit-Wolf shrunk covariance (O. Ledoit, M. Wolf, "A well-conditioned estimator for
large-dimensional covariance matrices", 2004: the sample covariance of a few thousand frames in
1280 dimensions is singular); the squared Mahalanobis distance is then ||W (x - mean)||^2 with
W = covariance^(-1/2). The threshold is a high quantile of that distance on held-out frames of
the training distribution (never on the frames the statistics were fitted on: those sit closer).

The score a frame gets is distance / threshold: above 1 it is out of distribution. Per frame this
costs one matrix-vector product (1280 x 1280), next to an encoder pass and a decoded answer.

Stored beside the model as ood.safetensors (mean and whitening matrix in fp32: fp16 overflows on
encoders with small features; threshold and how they were made in the metadata); pruned, structured and int8 models copy the file of the model they came
from (model/checkpoint.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

OOD_FILE = "ood.safetensors"
DEFAULT_QUANTILE = 0.99


def pooled(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) encoder tokens -> (B, C) float32: the frame's feature vector."""
    return tokens.detach().float().mean(dim=1)


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, shrunk covariance, shrinkage) of the rows of x, in float64 (Ledoit & Wolf 2004, lemma 3.2 onwards)."""
    x = np.asarray(x, np.float64)
    n, p = x.shape
    mean = x.mean(0)
    xc = x - mean
    sample = xc.T @ xc / n
    mu = np.trace(sample) / p
    d2 = float(((sample - mu * np.eye(p)) ** 2).sum())
    # b2 = 1/n^2 sum_k ||x_k x_k^T - S||_F^2, expanded so no p x p matrix per frame is formed
    norms2 = (xc**2).sum(1)
    b2 = float((norms2**2 - 2 * np.einsum("ki,ij,kj->k", xc, sample, xc, optimize=True)).sum() / n**2 + (sample**2).sum() / n)
    shrinkage = min(b2, d2) / d2 if d2 > 0 else 1.0
    return mean, (1 - shrinkage) * sample + shrinkage * mu * np.eye(p), shrinkage


@dataclass(frozen=True)
class OodStats:
    mean: torch.Tensor  # (C,) float32
    whiten: torch.Tensor  # (C, C) float32, covariance^(-1/2)
    threshold: float  # squared distance at the held-out quantile
    info: dict = field(default_factory=dict)  # how they were made: frames, quantile, shrinkage, sources

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features -> (B,) squared Mahalanobis distances."""
        z = (features.float().to(self.mean.device) - self.mean) @ self.whiten
        return (z * z).sum(dim=1)

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) encoder tokens -> (B,) distance / threshold; above 1 is out of distribution."""
        return self.distance(pooled(tokens)) / self.threshold

    def save(self, path: Path) -> None:
        from owled_ros.fsutil import save_safetensors_atomic

        meta = {"threshold": repr(self.threshold), "info": json.dumps(self.info)}
        save_safetensors_atomic({"mean": self.mean, "whiten": self.whiten}, Path(path), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> "OodStats":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            mean, whiten = f.get_tensor("mean").float(), f.get_tensor("whiten").float()
        if "threshold" not in meta or mean.ndim != 1 or whiten.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"{path}: not OOD statistics (needs mean (C,), whiten (C, C) and a threshold)")
        return cls(mean, whiten, float(meta["threshold"]), json.loads(meta.get("info", "{}")))


def fit_ood(fit_features: torch.Tensor, holdout_features: torch.Tensor, quantile: float = DEFAULT_QUANTILE,
            info: dict | None = None) -> OodStats:
    """Statistics from pooled features (B, C) of training frames; threshold from held-out frames of the same kind."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(fit_features) < 2 or len(holdout_features) < 1:
        raise ValueError("OOD statistics need at least 2 fit frames and 1 held-out frame")
    mean, cov, shrinkage = ledoit_wolf(fit_features.double().cpu().numpy())
    values, vectors = np.linalg.eigh(cov)
    whiten = (vectors * values.clip(min=values.max() * 1e-12) ** -0.5) @ vectors.T
    stats = OodStats(torch.from_numpy(mean).float(), torch.from_numpy(whiten).float(), 1.0)
    held = stats.distance(holdout_features).double().numpy()
    threshold = float(np.quantile(held, quantile))
    record = {"fit_frames": len(fit_features), "holdout_frames": len(holdout_features), "quantile": quantile,
              "shrinkage": round(shrinkage, 6), "feature": "encoder tokens averaged over the grid", **(info or {})}
    return OodStats(stats.mean, stats.whiten, threshold, record)
