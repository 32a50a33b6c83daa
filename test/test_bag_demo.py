"""`owled demo`'s comparison table and its reading of the prune report (the runs themselves are bag eval's)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from owled_ros.commands.demo import _prunable_weights, table
from owled_ros.errors import OwledError


def _report(published: int, accuracy: float | None, p50: float | None) -> dict:
    return {"frames_published": published, "frames_in": 20, "action_accuracy": accuracy, "rouge_l": 0.5, "latency_p50_ms": p50, "latency_p95_ms": p50}


def test_table_compares_pruned_and_dense(tmp_path: Path) -> None:
    report = {"blocks": {"encoder": [{"params": 1_000_000}], "llm": [{"params": 3_000_000}, {"params": 4_000_000}]}, "achieved_sparsity": {"overall": 0.5}}
    (tmp_path / "prune_report.json").write_text(json.dumps(report))
    prunable, sparsity = _prunable_weights(str(tmp_path))
    assert (prunable, sparsity) == (8_000_000, 0.5)
    text = table([("pruned", _report(20, 0.85, 2900.0), sparsity), ("dense", _report(19, None, None), 0.0)], prunable)
    rows = text.splitlines()
    assert rows[2] == "| pruned | 50% | 4.0 M | 20/20 | 0.850 | 0.500 | 2900 / 2900 |"
    assert rows[3] == "| dense | 0% | 8.0 M | 19/20 | n/a | 0.500 | n/a / n/a |"


def test_missing_prune_report_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OwledError, match="prune_report.json: unreadable prune report"):
        _prunable_weights(str(tmp_path))
