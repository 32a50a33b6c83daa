"""Turn an fp32 (pruned) DrivingVLM into the int8 deploy model: calibrate, smooth, record how."""
from __future__ import annotations

from dataclasses import asdict

from owled_ros.data.calibration import CalibrationSet
from owled_ros.deploy.config import DeployConfig
from owled_ros.deploy.smoothquant import input_absmax, smooth_lm
from owled_ros.model.vlm import DrivingVLM

def smooth_for_int8(vlm: DrivingVLM, calib: CalibrationSet, config: DeployConfig) -> dict:
    """Smooth the LM in place (still fp32); the dict is what `save_vlm(int8=...)` records."""
    worst = smooth_lm(vlm.lm, input_absmax(vlm, calib), config.alpha, config.down_alpha)
    return {
        **asdict(config),
        "scheme": "SmoothQuant + int8 per-channel weights; int8 activations scaled per token in the prefill, per call in decode steps",
        "max_activation_outlier_ratio": round(worst, 1),
    }
