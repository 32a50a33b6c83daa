"""`device` (node parameter, `--device`): auto is the CPU where torch sees no GPU, an absent or
unknown device is one line, and fp16, the dtype the model runs in on CUDA, carries a whole frame
answer (image, projector, prompt, LM). On a machine with CUDA the GPU path itself runs; elsewhere
that test is skipped."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from owled_ros.data.calibration import VisualSample
from owled_ros.deploy.acceptance import torch_answer_log_probs
from owled_ros.deploy.runner import load_driving_model
from owled_ros.errors import OwledError
from owled_ros.model.device import resolve_device
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.schema import VehicleState
from tiny_models import save_tiny_vlm

CUDA = torch.cuda.is_available()
ANSWER = "Clear straight road. Action: keep speed."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("device") / "m")


def _sample() -> VisualSample:
    image = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return VisualSample(image, FRAME_QUESTION, state=VehicleState(speed_mps=12.0))


def test_devices_resolve_or_say_why_not() -> None:
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for spec, needle in (("tpu", "is not a torch device"), ("meta", "only cpu and cuda")):
        with pytest.raises(OwledError, match=needle):
            resolve_device(spec)
    if not CUDA:
        with pytest.raises(OwledError, match="torch sees no CUDA device"):
            resolve_device("cuda:0")


def test_fp16_carries_a_whole_frame_answer(tiny: Path) -> None:
    """CUDA's dtype, run here on the CPU: the image reaches the fp16 encoder as fp16, and the answer's
    token log-probabilities stay those of fp32."""
    fp32 = load_driving_model(tiny, device="cpu")
    half = load_driving_model(tiny, device="cpu").to(dtype=torch.float16)
    sample = _sample()
    assert half.encode([sample.image]).dtype == torch.float16
    text = half.generate([sample.image], [sample.state], [FRAME_QUESTION], 8)[0].text
    assert text.strip()
    ref, got = torch_answer_log_probs(fp32, sample, ANSWER), torch_answer_log_probs(half, sample, ANSWER)
    assert np.abs(np.exp(ref) - np.exp(got)).max() < 0.01


@pytest.mark.skipif(not CUDA, reason="no CUDA device here (torch is the CPU wheel)")
def test_the_model_runs_on_the_gpu_as_on_the_cpu(tiny: Path) -> None:
    gpu = load_driving_model(tiny, device="cuda")
    assert gpu.device.type == "cuda" and gpu.meta["backend"] == "torch cuda float16"
    sample = _sample()
    ref = torch_answer_log_probs(load_driving_model(tiny, device="cpu"), sample, ANSWER)
    got = torch_answer_log_probs(gpu, sample, ANSWER)
    assert np.abs(np.exp(ref) - np.exp(got)).max() < 0.01
