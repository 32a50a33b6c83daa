"""Streamed pruning of an owled VLM directory (the LM one decoder layer at a time, LoRA merged as read)
and of a native LLaVA directory (its CLIP tower block by block too).

It must give exactly the weights and report of the in-memory path (load_vlm + prune_vlm) on
the same calibration samples; bf16 weights stay bf16 on disk; bad shards are refused before
anything is written; the report gives anonymous and file-backed peak memory apart.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from owled_ros.cli import main
from owled_ros.data.calibration import CalibrationSet, VisualSample
from owled_ros.errors import OwledError
from owled_ros.model.checkpoint import CONFIG_NAME, load_vlm
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.memory import MemorySampler
from owled_ros.prune.report import build_report, count_zeros
from owled_ros.prune.stream import INDEX_NAME, open_llava_dir, open_vlm_dir, prune_vlm_dir
from owled_ros.prune.vlm import prune_vlm
from tiny_models import save_tiny_llava, save_tiny_vlm

LORA_TARGETS = ("self_attn.q_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """The tiny VLM with a LoRA delta on two linears of each decoder layer, as `owled train` saves it."""
    out = save_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny")
    vlm = load_vlm(out)
    gen = torch.Generator().manual_seed(2)
    lora = {}
    for k in range(len(vlm.lm.get_decoder().layers)):
        for target in LORA_TARGETS:
            w = vlm.lm.get_submodule(f"model.layers.{k}.{target}").weight
            lora[f"model.layers.{k}.{target}.lora_A"] = torch.randn(8, w.shape[1], generator=gen) * 0.1
            lora[f"model.layers.{k}.{target}.lora_B"] = torch.randn(w.shape[0], 8, generator=gen) * 0.1
    save_file(lora, str(out / "lora.safetensors"))
    config = json.loads((out / CONFIG_NAME).read_text())
    (out / CONFIG_NAME).write_text(json.dumps({**config, "lora": {"rank": 8, "alpha": 16.0}}))
    return out


def _calib() -> CalibrationSet:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(4)]
    return CalibrationSet("test", visual=tuple(VisualSample(im, "What is ahead?", answer="A car.") for im in images))


def _copy_with_lm_shards(src: Path, dst: Path, write_shard: Callable[[Path], object]) -> Path:
    """A copy of a VLM directory whose lm/*.safetensors are written by `write_shard(source file)`."""
    (dst / "lm").mkdir(parents=True)
    for file in [*src.iterdir(), *(src / "lm").iterdir()]:
        if file.is_file():
            target = dst / file.relative_to(src)
            write_shard(file) if file.parent.name == "lm" and file.suffix == ".safetensors" else target.write_bytes(file.read_bytes())
    return dst


@pytest.mark.parametrize("method,ratios", [("wanda", "owl"), ("sparsegpt", "uniform")])
def test_streamed_vlm_prune_equals_the_in_memory_prune(tiny_vlm_dir: Path, tmp_path: Path, method: str, ratios: str) -> None:
    config = PruneConfig(method, ratios, 0.3, 0.6, owl_lambda=0.1)
    reference = load_vlm(tiny_vlm_dir)
    ref_parts = prune_vlm(reference, _calib(), config)
    report = prune_vlm_dir(open_vlm_dir(tiny_vlm_dir), _calib(), config, tmp_path / "out", {"source": "test"})

    streamed = load_vlm(tmp_path / "out")
    ref = reference.state_dict()
    for name, tensor in streamed.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    assert not (tmp_path / "out" / "lora.safetensors").exists()  # merged into lm/, like save_vlm does
    assert len(set(json.loads((tmp_path / "out" / "lm" / INDEX_NAME).read_text())["weight_map"].values())) == 3
    in_memory = build_report(config, ref_parts, {"source": "test"}, 0.0, count_zeros([b for p in ref_parts for b in p.blocks]))
    varying = ("seconds", "peak_rss_mb", "peak_anon_mb", "peak_file_mb")
    assert {k: v for k, v in report.items() if k not in varying} == {k: v for k, v in in_memory.items() if k not in varying}
    assert report["achieved_sparsity"]["encoder"] > 0.1 and report["achieved_sparsity"]["llm"] == pytest.approx(0.6, abs=0.03)
    assert streamed.meta["pruned"]["method"] == method
    assert report["peak_anon_mb"] > 0 and report["peak_file_mb"] > 0
    assert report["peak_anon_mb"] + report["peak_file_mb"] >= 0.9 * report["peak_rss_mb"] - 50


@pytest.mark.parametrize("method,ratios", [("wanda", "owl"), ("sparsegpt", "uniform")])
def test_streamed_llava_prune_equals_the_in_memory_prune(tmp_path: Path, method: str, ratios: str) -> None:
    """Tower and LM both streamed from the LLaVA checkpoint's own names; the LM calibrates on the pruned tower's tokens."""
    src = save_tiny_llava(tmp_path / "llava", vision_layers=3)
    config = PruneConfig(method, ratios, 0.4, 0.6, owl_lambda=0.1)
    reference = load_vlm(src)
    ref_parts = prune_vlm(reference, _calib(), config)
    opened = open_llava_dir(src)
    assert opened.streams_encoder and all(p.device.type == "meta" for p in opened.vlm.encoder.tower.encoder.parameters())
    report = prune_vlm_dir(opened, _calib(), config, tmp_path / "out", {"source": "test"})

    streamed = load_vlm(tmp_path / "out")
    ref = reference.state_dict()
    assert set(streamed.state_dict()) == set(ref)
    for name, tensor in streamed.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    assert json.loads((tmp_path / "out" / CONFIG_NAME).read_text())["encoder_weights"] == "encoder"
    assert len(set(json.loads((tmp_path / "out" / "encoder" / INDEX_NAME).read_text())["weight_map"].values())) == 4
    in_memory = build_report(config, ref_parts, {"source": "test"}, 0.0, count_zeros([b for p in ref_parts for b in p.blocks]))
    varying = ("seconds", "peak_rss_mb", "peak_anon_mb", "peak_file_mb")
    assert {k: v for k, v in report.items() if k not in varying} == {k: v for k, v in in_memory.items() if k not in varying}
    assert report["achieved_sparsity"]["encoder"] == pytest.approx(0.4, abs=0.03)
    assert report["achieved_sparsity"]["llm"] == pytest.approx(0.6, abs=0.03)
    assert streamed.meta["source"] == "llava:llava" and streamed.meta["pruned"]["method"] == method


def test_bf16_llava_stays_bf16_and_a_dense_part_is_copied_whole(tmp_path: Path) -> None:
    """Through the CLI: `owled prune --model LLAVA_DIR` takes the streamed path."""
    src = save_tiny_llava(tmp_path / "llava", vision_layers=3, dtype=torch.bfloat16)
    assert main(["prune", "--model", str(src), "--calib", "dashcam", "--calib-samples", "2", "--method", "wanda", "--ratios", "uniform",
                 "--encoder-sparsity", "0", "--llm-sparsity", "0.5", "--out", str(tmp_path / "out")]) == 0
    tensors: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "lm": {}}
    for part, zeros in (("encoder", 0.0), ("lm", 0.5)):
        for file in (tmp_path / "out" / part).glob("*.safetensors"):
            tensors[part].update(load_file(str(file)))
        assert {t.dtype for t in tensors[part].values()} == {torch.bfloat16}, part
        fc1 = [t for n, t in tensors[part].items() if n.endswith(("fc1.weight", "gate_proj.weight"))]
        assert len(fc1) == (3 if part == "encoder" else 2)
        assert all((t == 0).float().mean().item() == pytest.approx(zeros, abs=0.02) for t in fc1), part
    loaded = load_vlm(tmp_path / "out")
    assert torch.equal(loaded.encoder.tower.encoder.layers[2].mlp.fc1.weight, tensors["encoder"]["tower.encoder.layers.2.mlp.fc1.weight"].float())


def test_bf16_weights_stay_bf16_and_prune_like_their_fp32_copies(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    """Calibration math runs in fp32 per layer; only the storage is bf16."""
    src = _copy_with_lm_shards(tiny_vlm_dir, tmp_path / "bf16", lambda file: save_file(
        {n: t.to(torch.bfloat16) for n, t in load_file(str(file)).items()}, str(tmp_path / "bf16" / "lm" / file.name)))
    config = PruneConfig("wanda", "uniform", 0.0, 0.5)
    prune_vlm_dir(open_vlm_dir(src), _calib(), config, tmp_path / "out", {"source": "test"})
    out = {}
    for file in (tmp_path / "out" / "lm").glob("*.safetensors"):
        out.update(load_file(str(file)))
    assert {t.dtype for t in out.values()} == {torch.bfloat16}
    q = out["model.layers.0.self_attn.q_proj.weight"]
    assert (q == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_truncated_shard_is_named_and_out_left_alone(tiny_vlm_dir: Path, tmp_path: Path, capsys) -> None:
    src = _copy_with_lm_shards(tiny_vlm_dir, tmp_path / "broken", lambda file: (tmp_path / "broken" / "lm" / file.name).write_bytes(
        file.read_bytes()[: file.stat().st_size // 2]))
    with pytest.raises(OwledError, match="model.safetensors"):
        prune_vlm_dir(open_vlm_dir(src), _calib(), PruneConfig("wanda", "uniform", 0.0, 0.5), tmp_path / "out", {})
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]
    assert main(["prune", "--model", str(src), "--calib", "dashcam", "--calib-samples", "2", "--sparsity", "0.5",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0]


def test_memory_sampler_sees_anonymous_memory_grow() -> None:
    with MemorySampler() as memory:
        before = memory.peaks.anon_mb
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        memory.sample()
        del block
    assert memory.peaks.anon_mb - before > 50


def test_activations_spill_past_the_budget_and_a_copy_never_writes_the_original(tmp_path: Path) -> None:
    from owled_ros.prune.spill import MB, Activations, SpillPolicy

    acts = Activations(SpillPolicy(budget=MB, directory=tmp_path))
    batches = [torch.full((256, 512), float(i)) for i in range(4)]  # 0.5 MB each: two resident, two spilled
    for b in batches:
        acts.append(b)
    assert acts.spilled == 2 and acts[0] is batches[0] and acts[3] is not batches[3]
    assert all(torch.equal(a, b) for a, b in zip(acts, batches))
    assert list(tmp_path.iterdir()) == []  # spill files are unlinked once mapped: nothing to leak
    work = acts.copy()
    work[3] = torch.zeros(256, 512)
    work[3] = torch.ones(256, 512)  # now its own file, written in place
    work[0] = torch.ones(256, 512)
    assert torch.equal(acts[3], batches[3]) and torch.equal(acts[0], batches[0])
    assert torch.equal(work[3], torch.ones(256, 512)) and torch.equal(work[0], torch.ones(256, 512))
    acts[2] = torch.full((256, 512), 7.0)  # the capture's own spilled slot: in place
    assert acts[2].sum().item() == 7.0 * 256 * 512
    resident = acts[1].data_ptr()
    acts[1] = torch.full((256, 512), 5.0)  # its own resident slot too: a walk's outputs reuse its inputs' memory
    assert acts[1].data_ptr() == resident and acts[1].sum().item() == 5.0 * 256 * 512
    acts[1] = torch.zeros(128, 512)  # another shape takes the slot
    assert acts[1].shape == (128, 512)


def test_a_prune_that_spills_everything_writes_the_same_model(tmp_path: Path, monkeypatch) -> None:
    from owled_ros.prune.spill import Activations, spill_beyond
    from owled_ros.prune.vlm import activation_bytes

    spills = []
    file_copy = Activations._file_copy
    monkeypatch.setattr(Activations, "_file_copy", lambda self, t: spills.append(t.shape) or file_copy(self, t))

    src = save_tiny_llava(tmp_path / "llava", vision_layers=3)
    config = PruneConfig("wanda", "owl", 0.4, 0.6, owl_lambda=0.1)
    prune_vlm_dir(open_llava_dir(src), _calib(), config, tmp_path / "resident", {"source": "test"})
    assert spills == []
    opened = open_llava_dir(src)
    with spill_beyond(1e-6, tmp_path, activation_bytes(opened.vlm, _calib())):
        prune_vlm_dir(opened, _calib(), config, tmp_path / "spilled", {"source": "test"})
    assert len(spills) > 10 and {len(s) for s in spills} >= {3}  # tower and LM inputs alike went to files
    a, b = load_vlm(tmp_path / "resident").state_dict(), load_vlm(tmp_path / "spilled").state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not list(tmp_path.glob(".owled-spill-*"))


def test_too_little_disk_for_the_spill_fails_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    import shutil
    from collections import namedtuple

    src = save_tiny_llava(tmp_path / "llava", vision_layers=3)
    capsys.readouterr()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 0))
    assert main(["prune", "--model", str(src), "--calib", "dashcam", "--calib-samples", "2", "--sparsity", "0.5",
                 "--max-memory", "0.0001", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough disk for the spill files" in err[0] and "MB needed" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llava"]
