"""`owled recover`: distillation lowers the loss against the teacher, keeps the zero mask, resumes exactly,
writes nothing on interrupt, and refuses a teacher it cannot be compared with."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from owled_ros.cli import main
from owled_ros.errors import OwledError
from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM
from owled_ros.train.config import RecoverConfig
from owled_ros.train.distill import layer_map
from owled_ros.train.recover import CHECKPOINT_NAME, Recoverer, recover
from tiny_models import save_tiny_vlm, tiny_llama, tokenizer


def _zero_half(vlm: DrivingVLM) -> None:
    """Unstructured pruning by magnitude, half of every decoder Linear (what `owled prune` leaves: exact zeros)."""
    with torch.no_grad():
        for layer in vlm.lm.get_decoder().layers:
            for m in layer.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight[m.weight.abs() < m.weight.abs().median()] = 0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recover")
    teacher = save_tiny_vlm(root / "teacher")
    student = load_vlm(teacher)
    _zero_half(student)
    student.meta["pruned"] = {"method": "magnitude"}
    save_vlm(student, root / "pruned", extra={"prune_report.json": b'{"method": "magnitude"}'})
    return teacher, root / "pruned"


def _cfg(teacher: Path, **kw) -> RecoverConfig:
    return RecoverConfig(**{"teacher": str(teacher), "scenes": 8, "batch": 2, "lr": 3e-3, "warmup": 1,
                            "val_examples": 4, "checkpoint_every": 1, **kw})


def _lm_weights(model: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model / "lm" / "model.safetensors"))


def test_recovery_lowers_the_distillation_loss_and_keeps_the_zero_mask(models, tmp_path: Path) -> None:
    teacher, pruned = models
    cfg = _cfg(teacher, steps=12, task_weight=0.0)  # a random tiny LM's answer loss would pull away from the teacher
    record = recover(pruned, tmp_path / "out", cfg, tmp_path / "work", resume=False, command="test")
    before, after = record["val_before"], record["val_after"]
    assert after["feature"] < 0.9 * before["feature"], record
    assert after["kl"] < before["kl"] and after["total"] < before["total"], record
    assert record["masked_tensors"] == 2 * 7  # every Linear of both decoder layers had zeros
    old, new = _lm_weights(pruned), _lm_weights(tmp_path / "out")
    linears = [k for k in old if ".layers." in k and k.endswith("proj.weight")]
    assert len(linears) == 14
    for k in linears:
        assert torch.equal(new[k] == 0, old[k] == 0), k  # the same zeros, no new ones
        assert not torch.equal(new[k], old[k]), k  # the kept weights trained
    vlm = load_vlm(tmp_path / "out")
    assert vlm.meta["recovered"]["steps"] == 12 and vlm.meta["pruned"]["method"] == "magnitude"
    assert (tmp_path / "out" / "prune_report.json").read_text() == '{"method": "magnitude"}'
    assert not (tmp_path / "work").exists()  # checkpoints go once the model is written


def test_interrupted_recovery_leaves_no_output_and_resumes_exactly(models, tmp_path: Path, monkeypatch) -> None:
    teacher, pruned = models
    recover(pruned, tmp_path / "straight", _cfg(teacher, steps=4), tmp_path / "w1", resume=False, command="test")

    after_step = Recoverer.after_step

    def interrupt_at_step_3(self) -> None:
        after_step(self)
        if self.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Recoverer, "after_step", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        recover(pruned, tmp_path / "resumed", _cfg(teacher, steps=4), tmp_path / "w2", resume=False, command="test")
    assert not (tmp_path / "resumed").exists() and (tmp_path / "w2" / CHECKPOINT_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.setattr(Recoverer, "after_step", after_step)
    with pytest.raises(OwledError, match="other recovery settings"):
        recover(pruned, tmp_path / "resumed", _cfg(teacher, steps=4, lr=1e-4), tmp_path / "w2", resume=True, command="test")
    recover(pruned, tmp_path / "resumed", _cfg(teacher, steps=4), tmp_path / "w2", resume=True, command="test")
    a, b = _lm_weights(tmp_path / "straight"), _lm_weights(tmp_path / "resumed")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    pa, pb = (load_file(str(tmp_path / d / "projector.safetensors")) for d in ("straight", "resumed"))
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in pa)


def _vlm_with_lm(lm) -> DrivingVLM:
    torch.manual_seed(0)
    encoder = EfficientNetEncoder(EncoderConfig(image_size=(64, 64), grid=(1, 2)))
    projector = MLPProjector(ProjectorConfig(encoder.out_dim, lm.config.hidden_size, encoder.n_tokens()))
    return DrivingVLM(encoder, projector, lm, tokenizer(), {"name": "tiny"}).eval()


def test_recovery_on_a_file_source_trains_on_its_frames_and_cleans_up(models, tmp_path: Path) -> None:
    from owled_ros.data.drivelm import write_split

    teacher, pruned = models
    split = write_split(tmp_path / "data" / "split", 77, 6, size=(96, 64), progress=False).parent
    source = f"drivelm:{split}"
    cfg = _cfg(teacher, steps=8, task_weight=0.0, data=(source,), augment=1)  # no generated scene to train on
    record = recover(pruned, tmp_path / "out", cfg, tmp_path / "work", resume=False, command="test")
    assert list(record["data"]) == [source] and record["augment"] == 1
    assert record["val_after"]["total"] < record["val_before"]["total"], record
    assert not (tmp_path / "work").exists()  # both models' file-source features go with the checkpoints
    assert load_vlm(tmp_path / "out").meta["recovered"]["data"] == [source]


def test_layer_map_follows_the_prune_reports_removed_layers(models) -> None:
    teacher = load_vlm(models[0])
    student = _vlm_with_lm(tiny_llama(len(teacher.tokenizer), layers=1))
    with pytest.raises(OwledError, match="no prune report lists removed layers"):
        layer_map(student, teacher, [])
    assert layer_map(student, teacher, ["lm.model.layers.0"]) == [1]
    assert layer_map(student, teacher, ["encoder.backbone.blocks.3", "lm.model.layers.1"]) == [0]
    with pytest.raises(OwledError, match=r"removes \[0, 1\]"):
        layer_map(student, teacher, ["lm.model.layers.0", "lm.model.layers.1"])
    assert layer_map(teacher, teacher, []) == [0, 1]


def test_action_weight_weighs_the_action_tokens_of_kl_and_task(models) -> None:
    import torch.nn.functional as F

    from owled_ros.model.prompt import end_of_answer
    from owled_ros.train.distill import DistillWeights, Distiller, answer_token_weights

    teacher_dir, pruned = models
    student, teacher = load_vlm(pruned).eval(), load_vlm(teacher_dir).eval()
    tok = student.tokenizer
    answers = ["Car in the ego lane at 20 m. Action: slow down. Car ahead.", "Clear road, day."]  # the second has no action
    weights = answer_token_weights(tok, answers, 4.0)
    first = len(tok(answers[0] + end_of_answer(tok), add_special_tokens=False)["input_ids"])
    scene = len(tok("Car in the ego lane at 20 m.", add_special_tokens=False)["input_ids"])
    assert weights[:scene].eq(1).all() and weights[scene:first].eq(4).all() and weights[first:].eq(1).all()

    images = [np.random.default_rng(i).integers(0, 255, (96, 160, 3), dtype=np.uint8) for i in range(2)]
    with torch.no_grad():
        s_feat, t_feat = student.encode(images), teacher.encode(images)
        states, questions = [None, None], ["Describe the scene and the action."] * 2
        plain = Distiller(student, teacher, DistillWeights(), []).losses(s_feat, t_feat, states, questions, answers)
        heavy = Distiller(student, teacher, DistillWeights(action=4.0), []).losses(s_feat, t_feat, states, questions, answers)
        same = Distiller(student, teacher, DistillWeights(action=4.0), []).losses(s_feat, t_feat, states, questions, answers, action=1.0)
        logits, targets, _ = student.answer_logits(student.projector(s_feat), states, questions, answers)
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    assert plain["task"] == pytest.approx(float(ce.mean()), rel=1e-5)
    assert heavy["task"] == pytest.approx(float((ce * weights).sum() / weights.sum()), rel=1e-5)
    assert abs(float(heavy["task"] - plain["task"])) > 1e-5 and abs(float(heavy["kl"] - plain["kl"])) > 1e-7
    assert heavy["feature"] == pytest.approx(float(plain["feature"]))
    assert {k: float(v) for k, v in same.items()} == pytest.approx({k: float(v) for k, v in plain.items()})


def test_on_policy_steps_distil_on_the_students_own_greedy_answers(models, tmp_path: Path, monkeypatch) -> None:
    """With --on-policy 1 every training step's answers are the student's greedy generations (not the
    labels), the task loss is off there, and the held-out losses still use the labels."""
    from owled_ros.runtime.pipeline import PipelineConfig
    from owled_ros.train.distill import Distiller

    teacher, pruned = models
    calls: list[tuple[list[str], float | None, dict[str, float], list[str]]] = []
    real = Distiller.losses

    def recorded(self, s_feat, t_feat, states, questions, answers, action=None, task=None):
        parts = real(self, s_feat, t_feat, states, questions, answers, action, task)
        own = [g.text for g in self.student.generate_from(self.student.projector(s_feat), states, questions, PipelineConfig.max_new_tokens)]
        calls.append((answers, task, {k: float(v.detach()) for k, v in parts.items()}, own))
        return parts

    monkeypatch.setattr(Distiller, "losses", recorded)
    record = recover(pruned, tmp_path / "out", _cfg(teacher, steps=3, on_policy=1.0), tmp_path / "work", resume=False, command="test")
    assert record["on_policy"] == 1.0
    held_out, train = [c for c in calls if c[1] is None], [c for c in calls if c[1] is not None]
    assert len(train) == 3 and len(held_out) == 2 * 2  # 4 val examples in batches of 2, before and after
    for answers, task, parts, own in train:
        assert task == 0.0 and answers == own  # the student's own answers, generated before this step's update
        assert parts["total"] == pytest.approx(parts["feature"] + parts["kl"], rel=1e-6)
    for answers, _, parts, own in held_out:
        assert answers != own and parts["total"] > parts["feature"] + parts["kl"]  # labels, with the task loss


def test_bad_teacher_and_settings_exit_2_with_one_line(models, tmp_path: Path, capsys) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    teacher, pruned = models
    n = len(tokenizer())
    for name, config in (("wide", dict(vocab_size=n, hidden_size=48)), ("vocab", dict(vocab_size=n + 64, hidden_size=32))):
        lm = LlamaForCausalLM(LlamaConfig(intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, max_position_embeddings=256, **config)).eval()
        save_vlm(_vlm_with_lm(lm), tmp_path / name)
    cases = [
        (["--teacher", str(tmp_path / "wide")], "hidden size 48 does not match the pruned model's 32"),
        (["--teacher", str(tmp_path / "vocab")], f"vocabulary {n + 64} does not match"),
        (["--teacher", str(teacher), "--steps", "0"], "--steps must be at least 1"),
        (["--teacher", str(teacher), "--device", "tpu"], "is not a torch device"),
        (["--teacher", str(tmp_path / "missing")], "does not exist"),
        (["--teacher", str(teacher), "--data", "nuscenes:x"], "unknown source 'nuscenes'"),
        (["--teacher", str(teacher), "--data", f"drivelm:{tmp_path / 'none'}"], "not found"),
        (["--teacher", str(teacher), "--augment", "-1"], "--augment must be in 0..32"),
        (["--teacher", str(teacher), "--action-weight", "0"], "--action-weight must be positive"),
        (["--teacher", str(teacher), "--on-policy", "1.5"], "--on-policy must be a share from 0 to 1"),
        (["--teacher", str(teacher), "--speed-resample", "2"], "--speed-resample must be in 0..1"),
    ]
    for extra, needle in cases:
        assert main(["recover", "--model", str(pruned), "--out", str(tmp_path / "out"), *extra]) == 2, extra
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("owled recover: error:") and needle in errors[0], (extra, errors)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("structure", ["unstructured", "channels", "layers"])
def test_prune_with_recover_steps_keeps_what_was_pruned(models, tmp_path: Path, structure: str) -> None:
    teacher, _ = models
    out = tmp_path / "out"
    method = ["--method", "magnitude"] if structure == "unstructured" else []
    args = ["prune", "--model", str(teacher), "--structure", structure, *method, "--sparsity", "0.5", "--calib", "scenes",
            "--calib-samples", "2", "--recover-steps", "2", "--out", str(out)]
    assert main(args) == 0
    vlm = load_vlm(out)
    record = vlm.meta["recovered"]
    assert record["steps"] == 2 and record["teacher"] == str(teacher)
    report = json.loads((out / "prune_report.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no work dir, no temporary left
    weights = _lm_weights(out)
    linears = [k for k in weights if ".layers." in k and k.endswith("proj.weight")]
    if structure == "unstructured":
        assert record["masked_tensors"] == len(linears) == 14
        for k in linears:  # exactly the zeros the prune left: none filled, none added
            assert (weights[k] == 0).float().mean().item() == pytest.approx(report["layer_sparsity"][f"lm.{k[:-7]}"]), k
    elif structure == "channels":
        assert record["masked_tensors"] == 0
        widths = [layer.mlp.gate_proj.out_features for layer in vlm.lm.get_decoder().layers]
        assert widths == report["widths"]["llm"]["intermediate_size"] and max(widths) < 64
    else:
        assert len(vlm.lm.get_decoder().layers) == 1 and len(report["removed_layers"]) == 1


def test_recover_reads_speed_resample_as_train_does() -> None:
    from owled_ros.cli import build_parser
    from owled_ros.commands.recover import _config

    parser, _ = build_parser()
    args = parser.parse_args(["recover", "--model", "m", "--out", "o", "--speed-resample", "0.5"])
    assert _config(args).speed_resample == 0.5
    assert _config(parser.parse_args(["recover", "--model", "m", "--out", "o"])).speed_resample == 0.0
