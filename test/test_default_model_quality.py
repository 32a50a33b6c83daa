"""The shipped default weights load and do better than chance on held-out generated scenes.

Thresholds sit below what was measured (48 test frames: action 0.375, ROUGE-L 0.72) and well
above what an untrained projector or a model that ignores the task produces (ROUGE-L near 0,
no parseable action), so the test fails if the shipped weights or the prompt format break.
"""
from __future__ import annotations

import pytest

from owled_ros.eval.driving_qa import evaluate, generated_frames


@pytest.mark.slow
def test_shipped_weights_on_a_held_out_batch(default_vlm) -> None:
    assert default_vlm.meta.get("trained") is True
    result = evaluate(default_vlm, generated_frames("test", 16), batch=8, qa=False)
    assert result["rouge_l"] >= 0.55, result
    assert result["action_accuracy"] >= 0.25, result
