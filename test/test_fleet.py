"""`owled bag eval` on a fleet: three real rosbag2 bags (one corrupt) over two workers of a local Ray.

The model is test_bag_eval's tiny chatty one (weights scaled so its greedy answers change with
the image and the speed): a worker that fed it differently from the sequential offline
evaluation would not give the same actions and texts.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from owled_ros.cli import main as owled_main
from owled_ros.data.bag_make import BagSpec, bag_info, make_bag, write_bag
from owled_ros.eval.fleet import BAGS_DIR, FLEET_JSON, FLEET_MD, FLEET_PLOT, bag_dir, discover_bags

from test_bag_eval import TOKENS, _gap_and_swap, assert_agree, save_chatty_model

GOOD = ("drive_a", "drive_b")
B_FRAMES = 16
"""drive_b's length: five times drive_a's, so that drive_b is still running when drive_a's result
is written, even on a slow shared CI machine (with 6 frames both could end within one poll and
the fleet be over before the killer looked)."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_chatty_model(tmp_path_factory.mktemp("model") / "chatty")


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scene drives of different seeds and lengths (the second with a missing frame and one
    played out of order, which the input gate rejects), and one whose mcap file is cut short."""
    root = tmp_path_factory.mktemp("fleet_bags")
    make_bag(BagSpec(frames=3, hz=10.0, seed=11), root / GOOD[0])
    spec = BagSpec(frames=B_FRAMES, hz=10.0, seed=12)
    write_bag(root / "day2" / GOOD[1], _gap_and_swap(spec, drop=1, swap=3), bag_info(spec))
    corrupt = make_bag(BagSpec(frames=3, hz=10.0, seed=13), root / "corrupt").path
    for mcap in corrupt.glob("*.mcap"):
        mcap.write_bytes(mcap.read_bytes()[:300])
    return root


def fleet(bags: Path, model: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = owled_main(["bag", "eval", str(bags), "--model", str(model), "--out", str(out), "--max-new-tokens", TOKENS, "--quiet", *extra])
    return code, json.loads((out / FLEET_JSON).read_text())


def _kill_workers(mark: str, after: Path, deadline_s: float = 180.0) -> list[int]:
    """Once `after` holds a result, SIGKILL every fleet worker process (Ray names them
    ray::BagScorer...) started under `mark`; their pids."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not (after.is_dir() and any(after.iterdir())):
        time.sleep(0.02)
    killed: list[int] = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::BagScorer" in (proc / "cmdline").read_bytes():
                if f"OWLED_FLEET_TEST={mark}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
        except OSError:
            continue
    return killed


@pytest.fixture(scope="module")
def first(bags: Path, model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    """The fleet on two workers, both killed (SIGKILL) as soon as the first bag's result is
    written. The queue is corrupt, drive_b (B_FRAMES - 1 frames), drive_a (3): one worker fails the corrupt
    bag at once and takes drive_a, the other is still on the longer drive_b when drive_a is
    written. Ray restarts both and runs drive_b again."""
    out = tmp_path_factory.mktemp("fleet") / "out"
    mark = f"{os.getpid()}-{time.monotonic_ns()}"
    os.environ["OWLED_FLEET_TEST"] = mark  # inherited by this run's Ray workers only
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(_kill_workers(mark, out / BAGS_DIR)), daemon=True)
    killer.start()
    try:
        code, report = fleet(bags, model, out, "--workers", "2")
    finally:
        del os.environ["OWLED_FLEET_TEST"]
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    return code, report, out


def rows_by_name(report: dict) -> dict[str, dict]:
    return {Path(r["bag"]).name: r for r in report["rows"]}


def test_two_scored_one_failed_with_its_error_though_a_worker_was_killed(first: tuple[int, dict, Path]) -> None:
    code, report, out = first
    assert code == 1  # some bag failed
    assert (report["bags"], report["bags_scored"], report["bags_failed"], report["workers"]) == (3, 2, 1, 2)
    assert "local Ray" in report["where"] and "127.0.0.1" in report["where"]
    rows = rows_by_name(report)
    assert rows["corrupt"]["status"] == "failed" and "not a readable rosbag2" in rows["corrupt"]["error"]
    assert [rows[n]["status"] for n in GOOD] == ["scored", "scored"]
    assert (rows[GOOD[0]]["frames_in"], rows[GOOD[1]]["frames_in"]) == (3, B_FRAMES - 1)
    assert rows[GOOD[1]]["inputs_rejected"] == {"stamp_backwards": 1} and rows[GOOD[1]]["frames_published"] == B_FRAMES - 2
    for name in GOOD:
        assert (bag_dir(out, Path(rows[name]["bag"])) / "report.json").is_file()
    assert len(list((out / BAGS_DIR).iterdir())) == 2  # nothing for the corrupt bag, nothing half-written
    for name in (FLEET_JSON, FLEET_MD, FLEET_PLOT):
        assert (out / name).stat().st_size > 0
    assert "| corrupt | failed |" in (out / FLEET_MD).read_text()


def test_fleet_totals_equal_the_per_bag_results(first: tuple[int, dict, Path]) -> None:
    _, report, out = first
    per_bag = [json.loads((bag_dir(out, Path(r["bag"])) / "report.json").read_text()) for r in report["rows"] if r["status"] == "scored"]
    t = report["totals"]
    for key in ("frames_in", "frames_published", "frames_dropped", "frames_scored"):
        assert t[key] == sum(r[key] for r in per_bag), key
    assert (t["frames_in"], t["frames_scored"], t["frames_dropped"], t["out_of_order"], t["gaps"]) == (3 + B_FRAMES - 1, 3 + B_FRAMES - 2, 1, 1, 1)
    assert t["inputs_rejected"] == {"stamp_backwards": 1}
    correct = sum(f["correct"] for r in per_bag for f in r["frames"] if f["correct"] is not None)
    assert t["frames_correct"] == correct and t["action_accuracy"] == pytest.approx(correct / t["frames_scored"])
    assert t["action_accuracy_ci95"][0] <= t["action_accuracy"] <= t["action_accuracy_ci95"][1]
    weighted = sum(r["rouge_l"] * r["frames_scored"] for r in per_bag) / t["frames_scored"]
    assert t["rouge_l"] == pytest.approx(weighted)
    assert report["frames_per_s"] > 0 and report["score_s"] > 0


def test_same_results_as_the_sequential_offline_evaluation(first: tuple[int, dict, Path], model: Path, tmp_path: Path) -> None:
    _, report, out = first
    for row in report["rows"]:
        if row["status"] != "scored":
            continue
        single = tmp_path / Path(row["bag"]).name
        assert owled_main(["bag", "eval", row["bag"], "--model", str(model), "--out", str(single), "--offline", "--max-new-tokens", TOKENS, "--quiet"]) == 0
        alone = json.loads((single / "report.json").read_text())
        pooled = json.loads((bag_dir(out, Path(row["bag"])) / "report.json").read_text())
        assert [(f["stamp_ns"], f["action"], f["text"], f["ego_speed_mps"]) for f in pooled["frames"]] == [
            (f["stamp_ns"], f["action"], f["text"], f["ego_speed_mps"]) for f in alone["frames"]
        ]
        for key in ("frames_published", "frames_scored", "action_accuracy", "rouge_l", "model_id"):
            assert pooled[key] == alone[key], key


def test_resume_keeps_scored_bags_and_retries_the_failed(first: tuple[int, dict, Path], bags: Path, model: Path) -> None:
    _, before, out = first
    kept = {r["bag"]: (bag_dir(out, Path(r["bag"])) / "report.json").stat().st_mtime_ns for r in before["rows"] if r["status"] == "scored"}
    code, after = fleet(bags, model, out, "--workers", "1", "--resume")
    assert code == 1 and after["bags_resumed"] == 2 and after["bags_failed"] == 1
    assert rows_by_name(after)["corrupt"]["error"] == rows_by_name(before)["corrupt"]["error"]
    for bag, mtime in kept.items():
        assert (bag_dir(out, Path(bag)) / "report.json").stat().st_mtime_ns == mtime  # not scored again
    assert after["totals"] == before["totals"]


def test_online_workers_each_run_a_node_on_their_own_domain(model: Path, tmp_path: Path) -> None:
    """Two workers replay two drives into real node processes at the same time; had they shared
    a ROS domain, each recorder would also catch the other node's answers (outputs_unmatched)
    and each node the other drive's frames. Clean drives: a frame played out of order sits on
    a state_wait_s tie that the live clock and the offline replay may break differently."""
    root = tmp_path / "clean"
    for name, frames, seed in (("drive_c", 8, 21), ("drive_d", 8, 22)):
        make_bag(BagSpec(frames=frames, hz=10.0, seed=seed), root / name)
    code, report = fleet(root, model, tmp_path / "online", "--workers", "2", "--online")
    assert code == 0 and report["mode"] == "online" and report["bags_scored"] == 2
    for row in report["rows"]:
        online = json.loads((bag_dir(tmp_path / "online", Path(row["bag"])) / "report.json").read_text())
        single = tmp_path / f"offline_{Path(row['bag']).name}"
        assert owled_main(["bag", "eval", row["bag"], "--model", str(model), "--out", str(single), "--offline", "--max-new-tokens", TOKENS, "--quiet"]) == 0
        offline = json.loads((single / "report.json").read_text())
        assert online["mode"] == "online" and online["frames_in"] == 8 and online["frames_published"] >= 1
        assert online["outputs_unmatched"] == 0 and online["latency_p50_ms"] > 0
        assert_agree(online, offline)


def test_discovery_takes_bags_directories_and_missing_paths(bags: Path, tmp_path: Path) -> None:
    found = discover_bags([bags, tmp_path / "gone"])
    assert [p.name for p in found] == ["corrupt", GOOD[1], GOOD[0], "gone"]
    assert discover_bags([bags / GOOD[0], bags])[0] == (bags / GOOD[0]).resolve()
    assert len(discover_bags([bags / GOOD[0], bags])) == 3  # each bag once


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--address", "ray://127.0.0.1:{port}"], "nothing answers at 127.0.0.1"),
        (["--address", "not-an-address"], "expected auto, HOST:PORT or ray://HOST:PORT"),
        (["--online", "--workers", "120"], "the last usable one is 101"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, bags: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [a.format(port=_closed_port()) for a in args]
    out = tmp_path / "out"
    assert owled_main(["bag", "eval", str(bags), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_no_bags_found_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert owled_main(["bag", "eval", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no bags found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
