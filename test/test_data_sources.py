"""`--data` sources (data/sources.py) and training on a mixture of them (train/mixture.py)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from owled_ros.data.drivelm import write_split
from owled_ros.data.scenes import generate_scene
from owled_ros.data.sources import DataSpec, load_source, parse_data_spec, split_groups
from owled_ros.data.targets import frame_answer
from owled_ros.errors import OwledError
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.train.config import TrainConfig
from owled_ros.train.mixture import FramePool, variations
from owled_ros.train.trainer import sample_batch

SEED = 77


@pytest.fixture(scope="module")
def drivelm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_split(tmp_path_factory.mktemp("data") / "split", SEED, 12, size=(96, 64), progress=False).parent


def test_specs_parse_and_bad_ones_are_named() -> None:
    assert parse_data_spec("gen") == DataSpec("gen", None, 1.0)
    assert parse_data_spec("drivelm:a/b.json@0.25") == DataSpec("drivelm", Path("a/b.json"), 0.25)
    assert parse_data_spec("sim:runs/x@2").name == "sim:runs/x"
    for bad, words in (("foo:x", "unknown source 'foo'"), ("gen@x", "weight 'x'"), ("gen@-1", "weight '-1'"),
                       ("gen@nan", "weight 'nan'"), ("drivelm", "needs a path"), ("gen:x", "takes no path")):
        with pytest.raises(OwledError, match=words):
            parse_data_spec(bad)


def test_a_drivelm_source_splits_by_scene_and_keeps_the_frame_answer(drivelm_dir: Path) -> None:
    spec = parse_data_spec(f"drivelm:{drivelm_dir}")
    train, val = load_source(spec, "train", 100), load_source(spec, "val", 100)
    assert len(train) + len(val) == 12 and val and train
    assert not {f.group for f in train} & {f.group for f in val}
    by_key = {f.key: f for f in train}
    for i in range(12):
        scene = generate_scene(SEED, i, (96, 64))
        frame = by_key.get(f"scene-{SEED}-{i:06d}/{SEED}-{i:06d}")
        if frame is not None:  # the answer rebuilt from the file is the one the generator teaches
            assert frame.frame_answer == frame_answer(scene) and frame.action is scene.expert.action
            assert frame.load_image().shape == (64, 96, 3)
    assert [f.key for f in load_source(spec, "train", 3)] == [f.key for f in train[:3]]


def test_split_keeps_one_scene_each_side() -> None:
    frames = load_source(DataSpec("gen", None), "train", 2)
    few = [f.__class__(**{**f.__dict__, "group": g}) for f, g in zip(frames, ("a", "b"))]
    train, val = split_groups(few, 0.01)
    assert len(train) == 1 and len(val) == 1
    assert split_groups(few[:1], 0.5) == (few[:1], [])  # one scene cannot be split


def test_pools_are_drawn_by_weight_with_their_own_rows_and_states(drivelm_dir: Path) -> None:
    spec = parse_data_spec(f"drivelm:{drivelm_dir}@3")
    frames = tuple(load_source(spec, "train", 100))
    scenes = [generate_scene(1000, i) for i in range(5)]
    pool = FramePool(spec, frames, offset=len(scenes))
    cfg = TrainConfig(batch=400, frame_share=1.0)
    batch = sample_batch(scenes, cfg, random.Random(3), (pool,), gen_weight=1.0)
    from_pool = [e for e in batch if e.scene is None]
    assert 0.65 < len(from_pool) / len(batch) < 0.85  # weight 3 against 1
    for e in from_pool:
        frame = frames[e.index - len(scenes)]
        assert e.question == FRAME_QUESTION and e.answer == frame.frame_answer and e.ego == frame.ego
    assert all(e.index < len(scenes) for e in batch if e.scene is not None)
    only_pool = sample_batch([], TrainConfig(batch=50, frame_share=0.0), random.Random(4), (pool,), gen_weight=0.0)
    assert all(e.scene is None and e.question != FRAME_QUESTION for e in only_pool)
    alone = sample_batch(scenes, cfg, random.Random(5))
    assert alone == sample_batch(scenes, cfg, random.Random(5), (), gen_weight=1.0)


def test_variations_keep_each_frame_and_labels_in_its_rows(drivelm_dir: Path) -> None:
    spec = parse_data_spec(f"drivelm:{drivelm_dir}")
    frames = tuple(load_source(spec, "train", 100))
    n = len(frames)
    views = variations(frames, 2)
    assert len(views) == 3 * n and views[:n] == list(frames)
    for i, frame in enumerate(frames):
        for copy in (1, 2):
            view = views[copy * n + i]
            assert (view.key, view.frame_answer, view.ego) == (frame.key, frame.frame_answer, frame.ego)
            assert view.load_image().shape == frame.load_image().shape
            assert not (view.load_image() == frame.load_image()).all()
        assert not (views[n + i].load_image() == views[2 * n + i].load_image()).all()
    pool = FramePool(spec, frames, offset=10, views=3)
    rows = [pool.example(1.0, random.Random(k))[0] for k in range(300)]
    assert set(rows) <= set(range(10, 10 + 3 * n))
    assert {(r - 10) // n for r in rows} == {0, 1, 2}  # every view is shown
    for k in range(50):  # the row's frame is the one whose labels come with it
        row, _q, answer, ego = pool.example(1.0, random.Random(k))
        assert (views[row - 10].frame_answer, views[row - 10].ego) == (answer, ego)


def _owled(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_drivelm_files_stop_training_with_one_line(drivelm_dir: Path, tmp_path: Path) -> None:
    data = json.loads((drivelm_dir / "drivelm.json").read_text())
    scene = next(iter(data))
    frame = next(iter(data[scene]["key_frames"]))
    data[scene]["key_frames"][frame]["image_paths"]["CAM_FRONT"] = "images/missing.jpg"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    (tmp_path / "images").symlink_to(drivelm_dir / "images")
    out = tmp_path / "model"
    done = _owled("train", "--data", "gen", "--data", f"drivelm:{bad}@0.5", "--out", str(out), "--work-dir", str(tmp_path / "w"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and scene in lines[0] and "missing.jpg" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_training_on_a_mixture_reports_each_source_and_ships_ood_statistics(drivelm_dir: Path, tmp_path: Path) -> None:
    from owled_ros.model.checkpoint import CONFIG_NAME, load_vlm
    from owled_ros.train.trainer import train

    cfg = TrainConfig(scenes=6, steps=2, batch=4, lora_rank=2, data=("gen", f"drivelm:{drivelm_dir}@0.5"), val_frames=2, augment=1)
    out = train(tmp_path / "m", tmp_path / "w", cfg, resume=False, command="test")
    meta = json.loads((out / CONFIG_NAME).read_text())["meta"]["train"]
    assert set(meta["validation"]) == {"gen", f"drivelm:{drivelm_dir}"}
    assert all(v["frames"] >= 1 and 0 <= v["action_accuracy"] <= 1 for v in meta["validation"].values())
    assert meta["data"] == ["gen", f"drivelm:{drivelm_dir}@0.5"]
    vlm = load_vlm(out)
    assert vlm.ood is not None and vlm.ood.info["sources"] == ["gen", f"drivelm:{drivelm_dir}"]
    recorded = len(load_source(parse_data_spec(f"drivelm:{drivelm_dir}"), "train", 100))
    assert vlm.ood.info["fit_frames"] == 6 + 2 * recorded  # each file frame as recorded and in one variation
    rows = Counter(p.name for p in (tmp_path / "w").glob("features*.safetensors"))
    assert len(rows) == 2  # the generator's features and the file source's, cached apart
