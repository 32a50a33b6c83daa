"""The sequential calibration pipeline and `owled prune` end to end, on tiny models.

Tiny models are built from configs in the test (random weights, the real SmolLM2
tokenizer); the slow test prunes the real default model.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owled_ros.cli import main
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
from owled_ros.prune import calibrate
from owled_ros.prune.apply import prune_layer, prune_part
from owled_ros.prune.calibrate import capture, run_block, walk
from owled_ros.prune.config import DEFAULT_ENCODER_SHARE, PruneConfig
from owled_ros.prune.layers import make_blocks
from tiny_models import save_tiny_vlm, tiny_llama


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny")


def test_captured_calls_reproduce_the_model_block_by_block() -> None:
    lm = tiny_llama()
    decoder = lm.get_decoder()
    ids = torch.randint(0, 128, (4, 20))
    mask = torch.ones(4, 20, dtype=torch.long)
    mask[1, :5] = 0  # left padding: the captured mask must carry it
    batches = [(ids[:2], mask[:2]), (ids[2:], mask[2:])]
    captured = capture(list(decoder.layers), lambda b: decoder(input_ids=b[0], attention_mask=b[1], use_cache=False), batches)
    hidden = list(captured.hidden)
    for k, layer in enumerate(decoder.layers):
        run_block(layer, hidden, captured.calls[k], replace=True)
    with torch.no_grad():
        full = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        assert torch.allclose(decoder.norm(torch.cat(hidden)), full, atol=1e-5)
    assert all("forward" not in vars(layer) for layer in decoder.layers)  # recorders removed


def test_encoder_walk_reproduces_the_features_and_skips_depthwise_and_stem() -> None:
    torch.manual_seed(0)
    encoder = EfficientNetEncoder(EncoderConfig(image_size=(64, 64), grid=None)).eval()
    pixels = torch.randn(3, 3, 64, 64)
    modules = [m for _n, m in encoder.blocks()]
    captured = capture(modules, encoder, [pixels[:2], pixels[2:]])
    hidden = list(captured.hidden)
    for k, block in enumerate(modules):
        run_block(block, hidden, captured.calls[k], replace=True)
    with torch.no_grad():
        assert torch.allclose(torch.cat(hidden), encoder.backbone.features(pixels), atol=1e-5)
    blocks = make_blocks(encoder, modules)
    assert not blocks[0].layers  # the 3x3 stem stays dense
    names = [n for b in blocks for n in b.layers]
    assert not any("depthwise" in n for n in names) and any("expand" in n for n in names)
    prunable = sum(b.params for b in blocks)
    backbone = sum(p.numel() for n, p in encoder.backbone.named_parameters() if p.dim() == 4)
    assert 0.05 < (backbone - prunable) / backbone < 0.06  # layers.py: 5.5 % of the conv weights stay dense


@pytest.mark.parametrize("method,ratios", [("magnitude", "uniform"), ("wanda", "owl"), ("sparsegpt", "owl"), ("magnitude", "owl")])
def test_each_layer_reaches_its_block_assignment_within_one_row_rounding(method: str, ratios: str) -> None:
    lm = tiny_llama(layers=4)
    decoder = lm.get_decoder()
    blocks = make_blocks(lm, list(decoder.layers))
    ids = torch.randint(0, 128, (8, 32))
    run = lambda: capture(list(decoder.layers), lambda b: decoder(input_ids=b, use_cache=False), ids.split(4))
    part = prune_part("llm", blocks, run, 0.6, PruneConfig(method, ratios, 0.0, 0.6, owl_lambda=0.1))
    for block, assigned in zip(part.blocks, part.sparsities):
        for name, layer in block.layers.items():
            achieved = (layer.weight == 0).float().mean().item()
            assert abs(achieved - assigned) <= 1 / layer.weight.shape[1], (name, achieved, assigned)
    weighted = np.dot(part.sparsities, part.params) / sum(part.params)
    assert weighted == pytest.approx(0.6, abs=1e-6)
    if ratios == "owl":
        assert part.outlier_ratios is not None and len(set(part.sparsities)) > 1
    else:
        assert part.outlier_ratios is None and set(part.sparsities) == {0.6}


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_dense_calibration_inputs_prune_every_block_as_the_dense_model_sees_it(method: str) -> None:
    torch.manual_seed(0)
    lm = tiny_llama(layers=4)
    decoder = lm.get_decoder()
    ids = torch.randint(0, 128, (8, 32))
    config = {inputs: PruneConfig(method, "uniform", 0.0, 0.6, calib_inputs=inputs) for inputs in ("dense", "pruned")}

    # Expected: each layer pruned alone with statistics from the untouched dense model (a read-only walk).
    reference = copy.deepcopy(lm)
    ref_decoder = reference.get_decoder()
    expected: dict[str, torch.Tensor] = {}

    def record(_k: int, block, stats) -> None:
        for name, layer in block.layers.items():
            alone = copy.deepcopy(layer)
            prune_layer(alone, stats[name], 0.6, config["dense"])
            expected[name] = alone.weight.detach().clone()

    ref_run = capture(list(ref_decoder.layers), lambda b: ref_decoder(input_ids=b, use_cache=False), ids.split(4))
    walk(make_blocks(reference, list(ref_decoder.layers)), ref_run, record, prunes=False, hessian=method == "sparsegpt", desc="ref")

    pruned = {}
    for inputs in ("dense", "pruned"):
        model = copy.deepcopy(lm)
        dec = model.get_decoder()
        blocks = make_blocks(model, list(dec.layers))
        prune_part("llm", blocks, lambda: capture(list(dec.layers), lambda b: dec(input_ids=b, use_cache=False), ids.split(4)),
                   0.6, config[inputs])
        pruned[inputs] = {name: layer.weight.detach() for b in blocks for name, layer in b.layers.items()}
    assert pruned["dense"].keys() == expected.keys()
    for name, w in pruned["dense"].items():
        assert torch.allclose(w, expected[name], atol=1e-6), name
    # the option matters: past the first block, pruned inputs give other weights
    assert any(not torch.equal(pruned["pruned"][n], expected[n]) for n in expected if ".layers.0." not in n)


def _prune_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", "--model", str(model), "--calib", "dashcam", "--calib-samples", "3", "--out", str(out), *extra]


def test_prune_cli_writes_a_loadable_model_with_its_report(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pruned"
    assert main(_prune_args(tiny_model_dir, out, "--method", "wanda", "--ratios", "owl", "--sparsity", "0.5")) == 0
    report = json.loads((out / "prune_report.json").read_text())
    for key in ("method", "ratios", "target_sparsity", "achieved_sparsity", "layer_sparsity", "owl", "calibration", "seconds", "peak_rss_mb"):
        assert key in report
    encoder_target = DEFAULT_ENCODER_SHARE * 0.5
    assert report["target_sparsity"]["encoder"] == encoder_target and report["target_sparsity"]["llm"] == 0.5
    assert report["achieved_sparsity"]["llm"] == pytest.approx(0.5, abs=0.01)
    assert report["achieved_sparsity"]["encoder"] == pytest.approx(encoder_target, abs=0.01)
    assert len(report["owl"]["encoder"]["sparsities"]) == 17 and len(report["owl"]["llm"]["sparsities"]) == 2
    assert report["calibration"] == {"source": "dashcam", "samples": 3, "seqlen": None}
    assert (out / "layer_sparsity.png").stat().st_size > 1000

    vlm = load_vlm(out)  # exact zeros survive safetensors
    layers = dict(vlm.named_modules())
    for name, fraction in report["layer_sparsity"].items():
        assert (layers[name].weight == 0).float().mean().item() == pytest.approx(fraction)
    assert vlm.meta["pruned"]["method"] == "wanda"
    frame = np.zeros((48, 80, 3), np.uint8)
    assert len(vlm.generate([frame], [None], ["What is ahead?"], max_new_tokens=3)) == 1

    capsys.readouterr()
    runs = []
    for i in range(2):
        assert main(["eval", "ppl", "--model", str(out), "--windows", "2", "--out", str(tmp_path / f"ppl{i}.json")]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1] == json.loads((tmp_path / "ppl0.json").read_text())
    assert runs[0]["windows"] == 2 and runs[0]["tokens"] == 1024 and runs[0]["predictions"] == 1022


def test_prune_cli_nm_with_scene_calibration(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "nm"
    args = ["prune", "--model", str(tiny_model_dir), "--method", "sparsegpt", "--nm", "2:4",
            "--calib", "scenes", "--calib-samples", "2", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert (report["ratios"], report["nm"], report["owl"]) == ("uniform", "2:4", None)
    assert report["achieved_sparsity"]["encoder"] == 0 and report["calibration"]["source"] == "scenes"
    vlm = load_vlm(out)
    for layer in vlm.lm.model.layers:
        for proj in (layer.self_attn.q_proj, layer.mlp.down_proj):
            assert torch.all((proj.weight == 0).view(proj.weight.shape[0], -1, 4).sum(-1) == 2)


def test_interrupted_prune_leaves_nothing(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    real = calibrate.run_block
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(calibrate, "run_block", interrupt)
    assert main(_prune_args(tiny_model_dir, tmp_path / "out", "--sparsity", "0.5")) == 130
    assert list(tmp_path.iterdir()) == []


def test_crash_while_writing_leaves_nothing(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from owled_ros.prune import save

    def broken(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(save, "plot_sparsity", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(_prune_args(tiny_model_dir, tmp_path / "out", "--method", "magnitude", "--ratios", "uniform", "--sparsity", "0.5"))
    assert list(tmp_path.iterdir()) == []


def _write_bag(path: Path, with_camera: bool) -> None:
    import cv2
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam")
    with Writer(path, version=9) as writer:
        speed = writer.add_connection("/speed", "std_msgs/msg/Float32", typestore=store)
        writer.write(speed, 1, store.serialize_cdr(t["std_msgs/msg/Float32"](data=3.0), "std_msgs/msg/Float32"))
        if not with_camera:
            return
        raw = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        jpg = writer.add_connection("/cam/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        for i in range(3):
            img = np.full((24, 32, 3), 40 * i, np.uint8)
            msg = t["sensor_msgs/msg/Image"](header=header, height=24, width=32, encoding="bgr8", is_bigendian=0, step=96, data=img.reshape(-1))
            writer.write(raw, 10 + i, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            data = np.frombuffer(cv2.imencode(".jpg", img)[1].tobytes(), np.uint8)
            msg = t["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data)
            writer.write(jpg, 20 + i, store.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))


def test_bag_frames_come_from_every_camera_topic(tmp_path: Path) -> None:
    from owled_ros.data.calibration import bag_frames

    _write_bag(tmp_path / "bag", with_camera=True)
    frames = bag_frames(tmp_path / "bag", 6)
    assert len(frames) == 6 and all(f.shape == (24, 32, 3) and f.dtype == np.uint8 for f in frames)
    assert len(bag_frames(tmp_path / "bag", 2)) == 2


def test_bad_inputs_exit_2_with_one_line(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    _write_bag(tmp_path / "nocam", with_camera=False)
    (tmp_path / "exists").mkdir()
    cases = [
        ("--sparsity", "1.0"),
        ("--sparsity", "-0.1"),
        ("--sparsity", "0.5", "--llm-sparsity", "1.5"),
        ("--nm", "4:2"),
        ("--nm", "2:4", "--ratios", "owl"),
        ("--nm", "two:four"),
        ("--nm", "2:4", "--sparsity", "0.7"),
        ("--sparsity", "0.5", "--calib-samples", "0"),
        ("--sparsity", "0.5", "--calib", f"bag:{tmp_path / 'nocam'}"),
        ("--sparsity", "0.5", "--calib", "wiki", "--encoder-sparsity", "0.3"),
        ("--sparsity", "0.5", "--method", "magnitude", "--calib-inputs", "dense"),
        ("--sparsity", "0.2", "--structure", "channels", "--calib-inputs", "dense"),
    ]
    for extra in cases:
        args = _prune_args(tiny_model_dir, tmp_path / "out", *extra)
        assert main(args) == 2, extra
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("owled prune: error:"), (extra, errors)
        if "bag:" in extra[-1]:
            assert str(tmp_path / "nocam") in errors[0] and "no camera topic" in errors[0]
    assert main(_prune_args(tiny_model_dir, tmp_path / "exists", "--sparsity", "0.5")) == 2
    for argv in (["prune", "--method", "obs", "--sparsity", "0.5", "--out", "x"], ["prune", "--calib", "imagenet", "--sparsity", "0.5", "--out", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    for extra in (["--windows", "0"], ["--windows", "65"], ["--model", str(tmp_path / "missing")]):
        assert main(["eval", "ppl", *extra]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "nocam"]


@pytest.mark.slow
def test_pruned_default_model_loads_and_generates(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    args = ["prune", "--model", "default", "--method", "wanda", "--ratios", "owl", "--sparsity", "0.5",
            "--calib", "dashcam", "--calib-samples", "2", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["achieved_sparsity"]["llm"] == pytest.approx(0.5, abs=0.005)
    vlm = load_vlm(out)
    q_proj = vlm.lm.model.layers[0].self_attn.q_proj.weight
    assert 0.3 < (q_proj == 0).float().mean().item() < 0.7
    frame = np.full((224, 384, 3), 120, np.uint8)
    answer = vlm.generate([frame], [None], ["Describe the scene and the action."], max_new_tokens=8)[0]
    assert answer.token_texts and all(0.0 <= p <= 1.0 for p in answer.token_probs)
