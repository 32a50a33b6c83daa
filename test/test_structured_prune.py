"""`owled prune --structure`: the saved model is smaller, loads and answers; importances and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owled_ros.cli import main
from owled_ros.data.calibration import load_calibration
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.widths import WIDTHS_FIELD
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import make_blocks
from owled_ros.prune.structured import frame_losses, frame_samples
from owled_ros.prune.structured_groups import encoder_groups, lm_groups
from owled_ros.prune.structured_importance import taylor_scores
from owled_ros.prune.structured_save import prune_vlm_to
from owled_ros.prune.vlm import encoder_blocks
from tiny_models import save_tiny_lm, save_tiny_vlm

IMAGE = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("svlm") / "vlm")


def _numel(vlm) -> int:
    return sum(p.numel() for p in vlm.parameters())


@torch.no_grad()
def _logits(vlm) -> torch.Tensor:
    embeds, mask, _ = vlm.lm_inputs(vlm.visual_embeds([IMAGE]), [None], ["Describe the scene and the action."])
    return vlm.lm(inputs_embeds=embeds, attention_mask=mask).logits


def test_channel_prune_saves_a_smaller_model_that_reloads_exactly(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    vlm = load_vlm(tiny_vlm_dir)
    dense_params = _numel(vlm)
    calib = load_calibration("scenes", 3, vlm.tokenizer, 32)
    config = PruneConfig("wanda", "owl", 0.3, 0.5, structure="channels", importance="activation")
    report = prune_vlm_to(vlm, calib, config, tmp_path / "out", {"source": "scenes"}, 0.0)
    assert abs(report["achieved_sparsity"]["llm"] - 0.5) < 0.05
    assert abs(report["achieved_sparsity"]["encoder"] - 0.3) < 0.05
    assert report["params"]["after"] == _numel(vlm) < dense_params

    loaded = load_vlm(tmp_path / "out")
    assert _numel(loaded) == _numel(vlm)
    lm_config = json.loads((tmp_path / "out" / "lm" / "config.json").read_text())
    assert lm_config[WIDTHS_FIELD]["intermediate_size"] == [layer.mlp.gate_proj.out_features for layer in loaded.lm.model.layers]
    assert max(lm_config[WIDTHS_FIELD]["intermediate_size"]) < 64
    assert list(loaded.encoder.config.mid_channels) == report["widths"]["encoder_mid_channels"]
    torch.testing.assert_close(_logits(loaded), _logits(vlm))
    assert loaded.generate([IMAGE], [None], ["Describe the scene."], max_new_tokens=4)[0].text is not None

    # the int8 deploy path rebuilds the same smaller layers
    assert main(["deploy", "--model", str(tmp_path / "out"), "--out", str(tmp_path / "int8"), "--calib-samples", "2"]) == 0
    int8 = load_vlm(tmp_path / "int8", "fp32")
    assert [layer.mlp.down_proj.in_features for layer in int8.lm.model.layers] == lm_config[WIDTHS_FIELD]["intermediate_size"]


def test_layer_prune_of_a_plain_lm_stays_a_standard_hf_checkpoint(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    src = save_tiny_lm("llama", tmp_path / "lm")
    out = tmp_path / "layers"
    assert main(["prune", "--model", str(src), "--structure", "layers", "--calib", "wiki", "--calib-samples", "2", "--seqlen", "32",
                 "--sparsity", "0.5", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and WIDTHS_FIELD not in config
    report = json.loads((out / "prune_report.json").read_text())
    assert len(report["removed_layers"]) == 1 and report["achieved_sparsity"]["llm"] == 0.5
    assert report["method"] == "block_influence" and len([b for b in report["blocks"]["llm"] if "block_influence" in b]) == 2
    assert len(AutoModelForCausalLM.from_pretrained(out).model.layers) == 1


def test_taylor_channel_prune_of_a_plain_lm_reloads_with_its_widths(tmp_path: Path) -> None:
    from owled_ros.model.lm import load_hf_lm

    src = save_tiny_lm("llama", tmp_path / "lm")
    out = tmp_path / "ch"
    assert main(["prune", "--model", str(src), "--structure", "channels", "--importance", "taylor", "--ratios", "uniform",
                 "--calib", "wiki", "--calib-samples", "2", "--seqlen", "32", "--sparsity", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert abs(report["achieved_sparsity"]["llm"] - 0.5) < 0.02
    lm, _ = load_hf_lm(out)
    assert [layer.mlp.gate_proj.out_features for layer in lm.model.layers] == report["widths"]["llm"]["intermediate_size"]
    assert sum(p.numel() for p in lm.parameters()) == report["params"]["after"] < report["params"]["before"]


def test_taylor_conflict_differs_from_taylor_and_scores_every_unit(tiny_vlm_dir: Path) -> None:
    vlm = load_vlm(tiny_vlm_dir)
    vlm.requires_grad_(False)  # the gradient pass turns on only what it needs, and restores it
    blocks = make_blocks(vlm, list(vlm.lm.model.layers))
    groups = [g for b in blocks for g in lm_groups(b)] + [g for b in encoder_blocks(vlm) for g in encoder_groups(b)]
    samples = frame_samples(2)
    plain = taylor_scores(groups, samples, frame_losses(vlm, False), conflict=False)
    conflict = taylor_scores(groups, samples, frame_losses(vlm, True), conflict=True)
    for g in groups:
        assert plain[id(g)].shape == (g.units,) and bool((plain[id(g)] >= 0).all())
        assert plain[id(g)].sum() > 0
    assert any(not torch.allclose(plain[id(g)], conflict[id(g)]) for g in groups)
    assert not any(p.requires_grad for p in vlm.parameters())


def test_zeroed_units_compute_as_removed_units(tiny_vlm_dir: Path) -> None:
    import copy

    from owled_ros.prune.structured_sensitivity import _zero_units
    from owled_ros.prune.structured_surgery import keep_mlp_channels

    vlm = load_vlm(tiny_vlm_dir)
    group = lm_groups(make_blocks(vlm, list(vlm.lm.model.layers))[0])[0]
    x = torch.randn(2, 5, group.module.gate_proj.in_features)
    removed = torch.tensor([0, 3, 7])
    cut = copy.deepcopy(group.module)
    keep_mlp_channels(cut, [u for u in range(group.units) if u not in removed.tolist()])
    handle = _zero_units(group, removed)
    zeroed = group.module(x)
    handle.remove()
    torch.testing.assert_close(zeroed, cut(x))
    assert not torch.allclose(group.module(x), cut(x))


def test_sensitivity_ratios_cut_the_block_that_moves_the_action_most_least(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    vlm = load_vlm(tiny_vlm_dir)
    calib = load_calibration("scenes", 3, vlm.tokenizer, 32)
    config = PruneConfig("wanda", "sensitivity", 0.0, 0.4, structure="channels", owl_lambda=0.2)
    report = prune_vlm_to(vlm, calib, config, tmp_path / "out", {"source": "scenes"}, 0.0)
    blocks = report["blocks"]["llm"]
    sensitivity = [b["action_sensitivity"] for b in blocks]
    assigned = [b["assigned_sparsity"] for b in blocks]
    assert all(s >= 0 for s in sensitivity) and max(sensitivity) > min(sensitivity)
    assert assigned[sensitivity.index(max(sensitivity))] == pytest.approx(0.2)
    assert assigned[sensitivity.index(min(sensitivity))] == pytest.approx(0.6)
    params = [b["params"] for b in blocks]
    assert sum(a * n for a, n in zip(assigned, params)) / sum(params) == pytest.approx(0.4)
    assert abs(report["achieved_sparsity"]["llm"] - 0.4) < 0.05


@pytest.mark.parametrize("extra", [
    ["--structure", "channels", "--nm", "2:4"],
    ["--structure", "channels", "--ratios", "sensitivity", "--calib", "dashcam", "--calib-samples", "1"],
    ["--structure", "layers", "--ratios", "sensitivity"],
    ["--ratios", "sensitivity"],
    ["--structure", "channels", "--importance", "taylor", "--calib", "dashcam", "--calib-samples", "1"],
    ["--structure", "channels", "--calib", "wiki", "--importance", "taylor-conflict"],
    ["--structure", "layers", "--importance", "taylor"],
])
def test_bad_structured_requests_exit_2(tiny_vlm_dir: Path, tmp_path: Path, extra: list[str], capsys) -> None:
    assert main(["prune", "--model", str(tiny_vlm_dir), "--sparsity", "0.3", "--out", str(tmp_path / "x"), *extra]) == 2
    assert not (tmp_path / "x").exists()


def test_unknown_importance_is_refused(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--model", str(tiny_vlm_dir), "--structure", "channels", "--importance", "gradient", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2


def test_latency_budget_keeps_a_measured_split_or_says_the_fastest(tiny_vlm_dir: Path, tmp_path: Path, capsys) -> None:
    common = ["prune", "--model", str(tiny_vlm_dir), "--structure", "channels", "--calib-samples", "2", "--latency-frames", "1",
              "--max-new-tokens", "4"]
    assert main([*common, "--latency-budget-ms", "1e7", "--out", str(tmp_path / "fast")]) == 0
    report = json.loads((tmp_path / "fast" / "prune_report.json").read_text())
    record = report["latency_budget"]
    assert len(record["candidates"]) == 9 and all(c["latency_ms"] > 0 for c in record["candidates"])
    chosen = record["chosen"]
    assert chosen["action_accuracy"] == max(c["action_accuracy"] for c in record["candidates"])
    assert report["target_sparsity"]["llm"] == chosen["llm_sparsity"]
    assert sum(p.numel() for p in load_vlm(tmp_path / "fast").parameters()) == chosen["params"]

    assert main([*common, "--latency-budget-ms", "0.001", "--out", str(tmp_path / "never")]) == 2
    assert "fastest measured" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    assert main([*common, "--latency-budget-ms", "100", "--sparsity", "0.3", "--out", str(tmp_path / "x")]) == 2
