"""`owled eval paired` and `owled eval action-errors` on answer files written here, through the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from owled_ros.data.describe import describe_scene
from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene
from owled_ros.model.prompt import ACTION_MARKER
from owled_ros.vocab import Action


def owled(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], capture_output=True, text=True, timeout=300)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_paired_counts_the_frames_where_one_side_is_right(tmp_path: Path) -> None:
    a = write_rows(tmp_path / "a.jsonl", [{"correct": c} for c in [True] * 8 + [False] * 2])
    b = write_rows(tmp_path / "b.jsonl", [{"correct": c} for c in [True] * 5 + [False] * 3 + [True] * 2])
    done = owled("eval", "paired", str(a), str(b), "--out", str(tmp_path / "p.json"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["frames"], result["only_a_right"], result["only_b_right"]) == (10, 3, 2)
    assert result["accuracy_a"] == 0.8 and result["accuracy_b"] == 0.7
    assert result["difference_points"] == -10.0
    assert json.loads((tmp_path / "p.json").read_text()) == result


def test_paired_refuses_unequal_or_malformed_files(tmp_path: Path) -> None:
    a = write_rows(tmp_path / "a.jsonl", [{"correct": True}] * 3)
    b = write_rows(tmp_path / "b.jsonl", [{"correct": True}] * 2)
    done = owled("eval", "paired", str(a), str(b))
    assert done.returncode == 2 and "pair them on the same frames" in done.stderr
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    done = owled("eval", "paired", str(a), str(tmp_path / "bad.jsonl"))
    assert done.returncode == 2 and "not JSON lines" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_action_errors_separates_perception_from_decision(tmp_path: Path) -> None:
    """Perfect descriptions with every action right, then the same with one action flipped."""
    scenes = [generate_scene(SPLIT_SEEDS["test"], i) for i in range(6)]
    rows = [
        {"frame": i, "text": f"{describe_scene(s)} {ACTION_MARKER} {s.expert.action.phrase}.", "answered": s.expert.action.phrase}
        for i, s in enumerate(scenes)
    ]
    done = owled("eval", "action-errors", "--answers", str(write_rows(tmp_path / "good.jsonl", rows)))
    assert done.returncode == 0, done.stderr
    good = json.loads(done.stdout)
    assert good["frames"] == 6 and good["action_accuracy"] == 1.0
    assert good["expert_on_model_description"] == 1.0 and good["consistency"] == 1.0
    wrong = next(a for a in Action if a is not scenes[0].expert.action)
    rows[0]["answered"] = wrong.phrase
    flipped = json.loads(owled("eval", "action-errors", "--answers", str(write_rows(tmp_path / "bad.jsonl", rows))).stdout)
    assert flipped["action_accuracy"] == 5 / 6 and flipped["consistency"] == 5 / 6
    assert flipped["expert_on_model_description"] == 1.0  # the description was still right: a decision error
    assert flipped["top_confusions"] == [[f"{scenes[0].expert.action.phrase} -> {wrong.phrase}", 1]]


def test_action_errors_refuses_unknown_actions(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.jsonl", [{"frame": 0, "text": "x", "answered": "fly"}])
    done = owled("eval", "action-errors", "--answers", str(path))
    assert done.returncode == 2 and "action phrase" in done.stderr
