"""Exported runtimes: the ONNX graphs compute what the torch model computes, every backend is
checked against fp32 before it is kept, and bad backend requests fail with one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owled_ros.cli import main
from owled_ros.data.calibration import load_calibration
from owled_ros.deploy.acceptance import FP32, GateConfig, answer_round_robin, judge, log_probs_of, reference
from owled_ros.deploy.backends import unavailable
from owled_ros.deploy.build import deploy
from owled_ros.deploy.config import LM_ONNX, VISION_ONNX, DeployConfig
from owled_ros.deploy.export import export_onnx, kv_geometry
from owled_ros.deploy.runner import BACKEND_FILE, RUNTIME_DIR, load_runtime, machine_warning, read_backend
from owled_ros.errors import OwledError
from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.model.ood import OOD_FILE, fit_ood, pooled
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline
from tiny_models import save_tiny_vlm

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("backends") / "tiny")


def test_exported_graphs_compute_what_the_torch_model_computes(tiny, tmp_path) -> None:
    vlm = load_vlm(tiny)
    export_onnx(vlm, tmp_path)
    lm = ort.InferenceSession(str(tmp_path / LM_ONNX))
    ids = torch.randint(0, 1000, (1, 9))
    with torch.no_grad():
        embeds = vlm.lm.get_input_embeddings()(ids)
        ref = vlm.lm(inputs_embeds=embeds).logits[0].numpy()
    layers, heads, dim = kv_geometry(vlm.lm)
    keys = values = np.zeros((layers, 1, heads, 0, dim), np.float32)
    feed = lambda a, b, k, v: {"inputs_embeds": embeds[:, a:b].numpy(), "position_ids": np.arange(a, b)[None], "past_keys": k, "past_values": v}  # noqa: E731
    logits, keys, values = lm.run(None, feed(0, 6, keys, values))  # prefill
    assert np.abs(logits[0] - ref[5]).max() < 1e-4
    for t in range(6, 9):  # decode steps through the KV cache
        logits, keys, values = lm.run(None, feed(t, t + 1, keys, values))
        assert np.abs(logits[0] - ref[t]).max() < 1e-4
    assert keys.shape == (layers, 1, heads, 9, dim)
    image = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    visual, feature = ort.InferenceSession(str(tmp_path / VISION_ONNX)).run(None, {"pixels": vlm.encoder.preprocess([image]).numpy()})
    with torch.no_grad():
        assert np.abs(visual - vlm.visual_embeds([image]).numpy()).max() < 1e-4
        ref = pooled(vlm.encode([image])).numpy()  # about 1e-8 from this untrained encoder: compared relative
        assert np.linalg.norm(feature - ref) <= 1e-3 * np.linalg.norm(ref)


@pytest.fixture(scope="module")
def deployed(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ort") / "int8"
    deploy(str(tiny), out, DeployConfig(calib_samples=2, backend="onnxruntime", gate_frames=2, max_new_tokens=6), 1, log=print)
    return out


def test_onnxruntime_deploy_records_its_check_and_answers_like_fp32(tiny, deployed) -> None:
    record = read_backend(deployed)
    assert record["backend"] == "onnxruntime" and record["machine"]["cpu"]
    [timing] = record["timings"]
    assert timing["accepted"] and timing["frame_ms_p50"] > 0
    runtime, fp32 = load_runtime(deployed, threads=1), load_vlm(tiny)
    frame = load_calibration("scenes", 1, fp32.tokenizer, 512).visual[0]
    answer = fp32.generate([frame.image], [frame.state], [FRAME_QUESTION], 6)[0]
    got, ref = log_probs_of(runtime, frame, answer.text), log_probs_of(fp32, frame, answer.text)
    assert got.shape == ref.shape
    assert float((np.exp(ref) * (ref - got)).sum(-1).max()) < 0.05  # int8 LM weights: close, not equal
    gen = runtime.generate([frame.image], [frame.state], [FRAME_QUESTION], 6)[0]
    assert 0 < len(gen.token_texts) <= 6 and all(0.0 < p <= 1.0 for p in gen.token_probs)
    assert (deployed / "lm").is_dir()  # the torch int8 directory stays usable beside the runtime
    folder = deployed / RUNTIME_DIR / "onnxruntime"  # weights apart from the graphs: a lower peak at load
    for graph in (LM_ONNX, VISION_ONNX):
        assert (folder / f"{graph}.data").stat().st_size > (folder / graph).stat().st_size


def test_the_exported_runtime_path_runs_without_transformers_model_code(deployed) -> None:
    """The node on an exported runtime imports no torch LM (transformers' modeling code is some
    140 MB resident): what it loads and runs for a frame, in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys; from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline\n"
        "import numpy as np\n"
        f"p = load_pipeline({str(deployed)!r}, PipelineConfig(max_new_tokens=4))\n"
        "p.run(np.zeros((90, 160, 3), np.uint8), None, False)\n"
        "print(p.backend, sorted(m for m in sys.modules if m in ('transformers.modeling_utils', 'accelerate')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["onnxruntime", "[]"]


def test_the_pipeline_runs_the_backend_deploy_chose_and_scores_ood_on_its_features(deployed, tmp_path) -> None:
    """The node's pipeline on the deployed directory answers on onnxruntime, and the vision graph's
    feature gives the same out-of-distribution score as the torch encoder's tokens."""
    import shutil

    model = tmp_path / "deployed"
    shutil.copytree(deployed, model)
    torch_vlm = load_vlm(model)
    images = [np.random.default_rng(i).integers(0, 255, (90, 160, 3), dtype=np.uint8) for i in range(8)]
    with torch.no_grad():
        features = torch.cat([pooled(torch_vlm.encode([im])) for im in images])
    fit_ood(features[:6], features[6:]).save(model / OOD_FILE)
    config = PipelineConfig(max_new_tokens=6)
    runtime, on_torch = load_pipeline(model, config), load_pipeline(model, config, backend="torch")
    assert (runtime.backend, on_torch.backend) == ("onnxruntime", "torch")
    assert "onnxruntime" in runtime.model_id and "onnxruntime" not in on_torch.model_id
    for image in images[:2]:
        got, ref = runtime.run(image, None, False), on_torch.run(image, None, False)
        assert got.ood_score is not None and got.ood_score == pytest.approx(ref.ood_score, rel=1e-3)
        assert got.timings_ms["encode"] > 0 and got.timings_ms["generate"] > 0
    with pytest.raises(OwledError, match="holds no files for backend openvino"):
        load_pipeline(model, config, backend="openvino")
    with pytest.raises(OwledError, match="precision fp32 runs on torch only"):
        load_pipeline(model, config, precision="fp32")


def test_the_node_answers_on_the_deployed_backend(deployed, tmp_path) -> None:
    """A bag replayed through the real owled_node: its answers say they came from onnxruntime."""
    from owled_ros.data.bag_make import BagSpec, make_bag

    bag = make_bag(BagSpec(frames=3, hz=10.0), tmp_path / "bag").path
    out = tmp_path / "eval"
    assert main(["bag", "eval", str(bag), "--model", str(deployed), "--out", str(out), "--max-new-tokens", "6", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "online" and report["frames_published"] >= 1
    assert "onnxruntime" in report["model_id"]
    assert "on backend onnxruntime" in (out / "node.log").read_text()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_structured_model_deploys_through_each_exported_runtime(backend, tiny, tmp_path) -> None:
    """Channels and KV-head groups physically removed, and the head trimmed to the tokens the model
    says: the exported graphs take the smaller widths from the weights, pass the gate, and answer
    like the structured fp32 model."""
    if unavailable(backend):
        pytest.skip(unavailable(backend))
    from owled_ros.model.widths import trim_output_head
    from owled_ros.prune.config import PruneConfig
    from owled_ros.prune.output_vocab import said_tokens
    from owled_ros.prune.structured_save import prune_vlm_to

    vlm = load_vlm(tiny)
    calib = load_calibration("scenes", 3, vlm.tokenizer, 32)
    prune_vlm_to(vlm, calib, PruneConfig("wanda", "owl", 0.3, 0.5, structure="channels", importance="activation"), tmp_path / "ch", {"source": "scenes"}, 0.0)
    structured = load_vlm(tmp_path / "ch")
    assert structured.lm.model.layers[0].mlp.gate_proj.out_features < load_vlm(tiny).lm.model.layers[0].mlp.gate_proj.out_features
    frame = load_calibration("scenes", 1, structured.tokenizer, 512).visual[0]
    answer = structured.generate([frame.image], [frame.state], [FRAME_QUESTION], 6)[0]
    trim_output_head(structured.lm, said_tokens(structured, [frame], 6) | set(structured.tokenizer.all_special_ids))
    assert structured.generate([frame.image], [frame.state], [FRAME_QUESTION], 6)[0].text == answer.text
    save_vlm(structured, tmp_path / "ch-trimmed")
    out = tmp_path / backend
    deploy(str(tmp_path / "ch-trimmed"), out, DeployConfig(calib_samples=2, backend=backend, gate_frames=2, max_new_tokens=6), 1, log=print)
    assert read_backend(out)["backend"] == backend
    runtime = load_runtime(out, threads=1)
    got, ref = log_probs_of(runtime, frame, answer.text), log_probs_of(structured, frame, answer.text)
    assert float((np.exp(ref) * (ref - got)).sum(-1).max()) < 0.05


def test_describe_and_driving_qa_run_the_deployed_backend(deployed, tmp_path, capsys) -> None:
    import cv2

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    assert main(["describe", str(image), "--model", str(deployed), "--max-new-tokens", "4"]) == 0
    assert main(["eval", "driving-qa", "--model", str(deployed), "--limit", "2", "--frame-only", "--batch", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 2
    assert main(["describe", str(image), "--model", str(deployed), "--backend", "openvino"]) == 2
    assert "holds no files for backend openvino" in capsys.readouterr().err


def test_the_gate_refuses_a_model_that_answers_otherwise(tiny) -> None:
    fp32, broken = load_vlm(tiny), load_vlm(tiny)
    with torch.no_grad():
        broken.lm.get_decoder().norm.weight.mul_(30.0)  # what a wrong scale in a kernel would do
    frames = list(load_calibration("scenes", 2, fp32.tokenizer, 512).visual)
    answers = answer_round_robin({FP32: fp32, "same": fp32, "broken": broken}, frames, 6)
    ref = reference(fp32, frames, *answers[FP32])
    assert judge("same", fp32, frames, ref, GateConfig(), *answers["same"]).accepted
    verdict = judge("broken", broken, frames, ref, GateConfig(), *answers["broken"])
    assert not verdict.accepted and verdict.token_kl > GateConfig().max_token_kl


def test_bad_backend_requests_fail_with_one_line(tiny, deployed, tmp_path, capsys) -> None:
    assert main(["deploy", "--model", str(tiny), "--backend", "tensorrt", "--out", str(tmp_path / "x")]) == 2
    assert "unknown backend 'tensorrt'" in capsys.readouterr().err
    with pytest.raises(OwledError, match="unknown backend"):
        unavailable("tensorrt")
    record_file = deployed / RUNTIME_DIR / BACKEND_FILE
    record = json.loads(record_file.read_text())
    try:
        record_file.write_text(json.dumps({**record, "backend": "openvino"}))  # files of another backend
        with pytest.raises(OwledError, match="openvino"):
            load_runtime(deployed, threads=1)
    finally:
        record_file.write_text(json.dumps(record))


def test_a_backend_chosen_on_another_cpu_warns(deployed) -> None:
    record = read_backend(deployed)
    assert machine_warning(record) is None  # deployed here
    elsewhere = {**record, "machine": {**record["machine"], "cpu": "AMD EPYC 9B14", "cpu_features": ["avx2", "avx512f", "avx512_vnni"]}}
    assert "AMD EPYC 9B14" in machine_warning(elsewhere)
