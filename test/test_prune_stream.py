"""Streamed pruning of a plain HF causal LM (one decoder layer in memory) and bf16 calibration.

The streamed prune must give exactly the weights of the in-memory prune on the same
windows; the output is a sharded checkpoint that `from_pretrained` and `owled eval ppl` load.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from owled_ros.cli import main
from owled_ros.errors import OwledError
from owled_ros.model.lm import load_hf_lm
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.stream import INDEX_NAME, prune_lm_dir
from owled_ros.prune.vlm import prune_lm
from tiny_models import save_tiny_lm


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return save_tiny_lm("llama", tmp_path_factory.mktemp("lm") / "tiny-llama")


def _windows() -> torch.Tensor:
    return torch.randint(0, 49152, (6, 48), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method,ratios", [("wanda", "uniform"), ("wanda", "owl"), ("sparsegpt", "uniform"), ("magnitude", "uniform")])
def test_streamed_prune_equals_the_in_memory_prune(tiny_lm_dir: Path, tmp_path: Path, method: str, ratios: str) -> None:
    config = PruneConfig(method, ratios, 0.0, 0.6, owl_lambda=0.1)
    reference, _ = load_hf_lm(tiny_lm_dir)
    prune_lm(reference, _windows(), config)
    report = prune_lm_dir(tiny_lm_dir, _windows(), config, tmp_path / "out", {"source": "test"})

    index = json.loads((tmp_path / "out" / INDEX_NAME).read_text())
    assert len(set(index["weight_map"].values())) == 3  # embeddings + norm, then one shard per decoder layer
    streamed, _ = load_hf_lm(tmp_path / "out")
    ref = reference.state_dict()
    for name, tensor in streamed.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    assert report["achieved_sparsity"]["llm"] == pytest.approx(0.6, abs=0.02)
    for name, fraction in report["layer_sparsity"].items():
        assert (streamed.get_submodule(name).weight == 0).float().mean().item() == pytest.approx(fraction)
    assert (tmp_path / "out" / "prune_report.json").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()


def test_bf16_calibration_keeps_almost_every_wanda_decision(tiny_lm_dir: Path) -> None:
    masks = {}
    for dtype in ("fp32", "bf16"):
        lm, _ = load_hf_lm(tiny_lm_dir)
        prune_lm(lm, _windows(), PruneConfig("wanda", "uniform", 0.0, 0.5, calib_dtype=dtype))
        masks[dtype] = torch.cat([m.weight.flatten() == 0 for layer in lm.model.layers for m in layer.modules() if isinstance(m, torch.nn.Linear)])
        assert next(lm.parameters()).dtype == torch.float32  # the pruned weights stay fp32
    agree = (masks["fp32"] == masks["bf16"]).float().mean().item()
    assert 0.97 < agree < 1.0, agree  # bf16 products move a few near-threshold weights, no more


def test_prune_cli_on_a_plain_lm_dir_then_eval_ppl(tiny_lm_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pruned"
    args = ["prune", "--model", str(tiny_lm_dir), "--calib", "wiki", "--calib-samples", "2", "--seqlen", "32",
            "--sparsity", "0.5", "--ratios", "uniform", "--calib-dtype", "fp32", "--out", str(out)]
    assert main(args) == 0
    assert "llm 0.500" in capsys.readouterr().out
    report = json.loads((out / "prune_report.json").read_text())
    assert report["calibration"] == {"source": "wiki", "samples": 2, "seqlen": 32} and report["calib_dtype"] == "fp32"
    assert main(["eval", "ppl", "--model", str(out), "--windows", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"] > 1
    assert main(["prune", "--model", str(tiny_lm_dir), "--calib", "scenes", "--sparsity", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "calibrate it with --calib wiki" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_missing_layer_weight_is_named(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for file in tiny_lm_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(OwledError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        prune_lm_dir(broken, _windows(), PruneConfig("wanda", "uniform", 0.0, 0.5), tmp_path / "out", {})
    assert not (tmp_path / "out").exists()
