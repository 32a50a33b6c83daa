"""Bad input to `owled describe`: one line on stderr, exit 2, no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def owled(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], capture_output=True, text=True, timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("owled ")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
    return path


def test_missing_image(tmp_path: Path) -> None:
    assert_clean_error(owled("describe", str(tmp_path / "nope.jpg")), "image not found")


def test_unreadable_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    assert_clean_error(owled("describe", str(bad)), "not a readable image")


def test_not_a_model_directory(tmp_path: Path, photo: Path) -> None:
    assert_clean_error(owled("describe", str(photo), "--model", str(tmp_path)), "not an owled model directory")


def test_a_device_that_is_absent_or_unknown(photo: Path) -> None:
    assert_clean_error(owled("describe", str(photo), "--device", "tpu"), "is not a torch device")
    if not torch.cuda.is_available():
        assert_clean_error(owled("describe", str(photo), "--device", "cuda"), "torch sees no CUDA device")


def test_pickle_checkpoint_refused(tmp_path: Path, photo: Path) -> None:
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"\x80\x04 pickle")
    assert_clean_error(owled("describe", str(photo), "--model", str(ckpt)), "pickle checkpoint refused")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (hf / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
    assert_clean_error(owled("describe", str(photo), "--model", str(hf)), "pickle checkpoint refused")


def test_remote_code_refused(tmp_path: Path, photo: Path) -> None:
    hf = tmp_path / "remote"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "llava", "auto_map": {"AutoModel": "evil.Model"}}))
    (hf / "model.safetensors").write_bytes(b"")
    assert_clean_error(owled("describe", str(photo), "--model", str(hf)), "needs remote code")


def test_eval_rejects_negative_offset() -> None:
    assert_clean_error(owled("eval", "driving-qa", "--offset", "-1"), "--offset must be at least 0")


def test_train_device_errors(tmp_path: Path) -> None:
    import torch

    out = ["--out", str(tmp_path / "m"), "--work-dir", str(tmp_path / "w")]
    assert_clean_error(owled("train", "--device", "gpu0", *out), "is not a torch device")
    if not torch.cuda.is_available():
        assert_clean_error(owled("train", "--device", "cuda", *out), "torch sees no CUDA device")
    assert not (tmp_path / "m").exists() and not (tmp_path / "w").exists()
