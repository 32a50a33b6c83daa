"""Recovery of a pruned model by distillation from its dense teacher (`owled recover`).

What trains: the weights of every Linear inside the LM's decoder layers, and the projector. What
stays: the structure (a channel- or layer-pruned model keeps its smaller shapes, since no layer is
added or resized) and, for an unstructured model, its zero mask (gradients and weights are
multiplied by it every step, so a pruned weight is exactly 0 after training too). The encoder stays
as pruned: its features are computed once per work dir, the projector learns to read them.

The examples are generated scenes, or a mix with file sources (`--data`, as `owled train` reads them:
train/mixture.py), so a model fine-tuned on a team's frames is recovered on those frames too. The
held-out loss before and after is always on generated validation scenes, the same for every mix.

The loop, learning-rate schedule, checkpoints and `--resume` are `owled train`'s (train/trainer.py);
the loss is train/distill.py's. The output model is written whole or not at all; the work dir (the
checkpoints) is removed once it is.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from owled_ros.data.scenes import SPLIT_SEEDS, Scene, generate_scene
from owled_ros.errors import OwledError
from owled_ros.machine import peak_rss_mb
from owled_ros.model.checkpoint import PRUNE_REPORT, carried_files, load_vlm, resolve_model_dir, save_vlm
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.widths import output_tokens
from owled_ros.runtime.pipeline import PipelineConfig
from owled_ros.schema import VehicleState
from owled_ros.train.config import RecoverConfig
from owled_ros.train.distill import DistillWeights, Distiller, check_teacher, decoder_layers
from owled_ros.train.mixture import load_pools
from owled_ros.train.trainer import (Example, Trainer, cached, cached_features, data_specs, example_state, sample_batch,
                                     scene_state, weights_digest)

CHECKPOINT_NAME = "checkpoint.safetensors"
FEATURE_NAMES = ("student_features", "teacher_features", "student_val_features", "teacher_val_features")
MODELS = ("teacher", "student")  # each model's file-source features are cached in its own subdirectory of the work dir


def default_work_dir(out: Path) -> Path:
    return Path(out).parent / f"{Path(out).name}.recover-work"


class Recoverer(Trainer):
    desc = "recovering (distillation)"

    def __init__(self, student: DrivingVLM, teacher: DrivingVLM, cfg: RecoverConfig, work_dir: Path,
                 teacher_features: torch.Tensor, removed_layers: list[str]) -> None:
        self.teacher, self.teacher_features = teacher, teacher_features
        super().__init__(student, cfg, work_dir, work_dir)
        self.distiller = Distiller(student, teacher, DistillWeights(cfg.feature_weight, cfg.kl_weight, cfg.task_weight, cfg.temperature,
                                                                   cfg.action_weight),
                                   removed_layers)
        self.masks = {n: p != 0 for n, p in self.params.items() if n in self.linear_weights and not bool(p.all())}
        for n, mask in self.masks.items():
            self.params[n].register_hook(lambda grad, mask=mask: grad * mask)
        self.last_parts: dict[str, float] = {}

    def prepare(self) -> None:
        """Nothing is added; names the decoder's Linear weights, the LM part that trains."""
        linears = {id(m.weight) for layer in decoder_layers(self.vlm) for m in layer.modules() if isinstance(m, nn.Linear)}
        self.linear_weights = {n for n, p in self.vlm.named_parameters() if id(p) in linears}
        self.teacher.to(self.cfg.device)

    def trains(self, name: str) -> bool:
        return name in self.linear_weights or name.startswith("projector.")

    def loss(self, batch: list[Example], idx: torch.Tensor, features: torch.Tensor, rng: random.Random) -> torch.Tensor:
        states, questions, answers = [example_state(e, rng) for e in batch], [e.question for e in batch], [e.answer for e in batch]
        own = self.cfg.on_policy > 0 and rng.random() < self.cfg.on_policy
        if own:
            answers = self.own_answers(features[idx], states, questions)
        parts = self.distiller.losses(features[idx], self.teacher_features[idx], states, questions, answers, task=0.0 if own else None)
        self.last_parts = {k: float(v.detach()) for k, v in parts.items()}
        return parts["total"]

    def own_answers(self, features: torch.Tensor, states: list[VehicleState | None], questions: list[str]) -> list[str]:
        """The student's greedy answers (on-policy distillation, as in GKD): trained only on the labels'
        token sequences, a cut model reads at test time descriptions it wrote itself. (On the
        channels-20 % cut it lowered the held-out loss and changed no decision: docs/recovery.md.)"""
        self.vlm.eval()
        with torch.no_grad():
            answers = [g.text for g in self.vlm.generate_from(self.vlm.projector(features), states, questions,
                                                          PipelineConfig.max_new_tokens)]
        self.vlm.train()
        return answers

    @torch.no_grad()
    def after_step(self) -> None:
        for n, mask in self.masks.items():
            self.params[n].mul_(mask)

    def load_checkpoint(self) -> bool:
        """As `owled train`'s, but only into a run of the same settings (steps may grow)."""
        file = self.ckpt_dir / CHECKPOINT_NAME
        if file.is_file():
            from safetensors import safe_open

            with safe_open(str(file), "pt") as f:
                theirs = json.loads(f.metadata()["meta"])["config"]
            mine = json.loads(json.dumps({k: v for k, v in asdict(self.cfg).items() if k not in ("steps", "threads", "device")}))
            if {k: v for k, v in theirs.items() if k not in ("steps", "threads", "device")} != mine:
                raise OwledError(f"{file}: made with other recovery settings {theirs}; use another --work-dir or the same settings")
        return super().load_checkpoint()

    @torch.no_grad()
    def evaluate(self, examples: list[Example], student_features: torch.Tensor, teacher_features: torch.Tensor) -> dict[str, float]:
        """Mean loss parts over held-out examples (the same examples and vehicle states every call)."""
        self.vlm.eval()
        rng = random.Random(self.cfg.seed)
        totals: dict[str, float] = {}
        for i in range(0, len(examples), self.cfg.batch):
            chunk = examples[i : i + self.cfg.batch]
            idx = torch.tensor([e.index for e in chunk], device=student_features.device)
            parts = self.distiller.losses(student_features[idx], teacher_features[idx], [scene_state(e.scene, rng) for e in chunk],
                                          [e.question for e in chunk], [e.answer for e in chunk], action=1.0)
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(chunk)
        return {k: round(v / len(examples), 5) for k, v in totals.items()}


def removed_layers(model_dir: Path) -> list[str]:
    """Names of the layers a structured prune dropped (its prune_report.json), none for other models."""
    file = model_dir / PRUNE_REPORT
    if not file.is_file():
        return []
    try:
        return list(json.loads(file.read_text()).get("removed_layers", []))
    except (json.JSONDecodeError, AttributeError, TypeError) as err:
        raise OwledError(f"{file}: unreadable prune report ({err})") from None


def _scenes(split: str, n: int, desc: str) -> list[Scene]:
    return [generate_scene(SPLIT_SEEDS[split], i) for i in tqdm(range(n), desc=desc, unit="scene")]


def _remove_work(work_dir: Path) -> None:
    for name in (CHECKPOINT_NAME, *(f"{n}.safetensors" for n in FEATURE_NAMES)):
        (work_dir / name).unlink(missing_ok=True)
    for sub in (work_dir / m for m in MODELS):
        for file in sub.glob("features-*.safetensors"):
            file.unlink()
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    if work_dir.is_dir() and not any(work_dir.iterdir()):
        work_dir.rmdir()


def _check_untrimmed(name: str | Path, vlm: DrivingVLM) -> None:
    """A trimmed head scores other tokens at the lowest float: no KL against it is meaningful."""
    if output_tokens(vlm.lm.config):
        raise OwledError(f"{name}: its LM head is trimmed (owled trim-vocab); recover the untrimmed models, then trim")


def recover(model: str | Path, out: Path, cfg: RecoverConfig, work_dir: Path, resume: bool, command: str) -> dict:
    """Distil `cfg.teacher` into the pruned `model`, write the result to `out`; returns the record kept in its meta."""
    out, work_dir = Path(out), Path(work_dir)
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0, cpu0 = time.time(), time.process_time()
    source = resolve_model_dir(model)
    student = load_vlm(source, "fp32")
    if student.meta.get("int8"):
        raise OwledError(f"{model}: is an int8 deploy model; recover the fp32 pruned model, then run owled deploy")
    _check_untrimmed(model, student)
    teacher = load_vlm(cfg.teacher, "fp32")
    _check_untrimmed(cfg.teacher, teacher)
    check_teacher(student, teacher, str(cfg.teacher))
    specs = data_specs(cfg.data)
    gen = next((s for s in specs if s.kind == "gen"), None)
    scenes = _scenes("train", cfg.scenes if gen else 0, "generating scenes")
    val = _scenes("val", cfg.val_examples, "generating val scenes")
    feats, pools = {}, ()
    same_encoder = weights_digest(student.encoder) == weights_digest(teacher.encoder)  # e.g. pruned by LM layers only
    for name, vlm in zip(MODELS, (teacher, student)):
        vlm.to(cfg.device)
        if name == "student" and same_encoder:
            feats["student"], feats["student_val"] = feats["teacher"], feats["teacher_val"]
            continue
        parts = [cached_features(vlm, scenes, work_dir, f"{name}_features")] if scenes else []
        pools, pool_features = load_pools(vlm, [s for s in specs if s.kind != "gen"], len(scenes), work_dir / name, cfg.val_share,
                                          cached, cfg.augment)
        feats[name] = torch.cat([*parts, *pool_features]).to(cfg.device)
        feats[f"{name}_val"] = cached_features(vlm, val, work_dir, f"{name}_val_features", SPLIT_SEEDS["val"]).to(cfg.device)
    recoverer = Recoverer(student, teacher, cfg, work_dir, feats["teacher"], removed_layers(source))
    recoverer.pools, recoverer.gen_weight = pools, gen.weight if gen else 0.0
    val_examples = sample_batch(val, replace(cfg, batch=cfg.val_examples, speed_resample=0.0), random.Random(cfg.seed))
    before = recoverer.evaluate(val_examples, feats["student_val"], feats["teacher_val"])
    if resume and recoverer.load_checkpoint():
        print(f"[owled] resumed from step {recoverer.step} ({work_dir})")
    losses = recoverer.fit(scenes, feats["student"])
    after = recoverer.evaluate(val_examples, feats["student_val"], feats["teacher_val"])
    print("[owled] distillation loss on held-out val examples: "
          + ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before))
    record = {
        **{k: v for k, v in asdict(cfg).items() if k not in ("lora_rank", "init_from", "prompt_cues")},
        "model": str(model), "masked_tensors": len(recoverer.masks),
        "val_before": before, "val_after": after, "seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1), "peak_rss_mb": round(peak_rss_mb()),
        "final_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4), "command": command,
    }
    student.to("cpu").meta["recovered"] = record
    save_vlm(student, out, extra=carried_files(source))
    _remove_work(work_dir)
    return record
