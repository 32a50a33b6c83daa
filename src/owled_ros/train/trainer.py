"""Projector + LoRA training on generated scenes, designed for a 2-core CPU (a GPU, where there is one, runs stage 2 faster).

Cost control (one step through the frozen 135M LM dominates):
- encoder features are computed once, up front (the encoder is frozen);
- loss on answer tokens only, lm_head applied to those positions alone;
- short prompts; LoRA instead of full fine-tuning.
Checkpoints hold projector, adapters, optimizer and step, so `--resume` continues exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from owled_ros.data.sources import DataSpec, load_source, parse_data_spec
from owled_ros.data.scenes import MAX_SPEED_MPS, SPLIT_SEEDS, Scene, generate_scene, render_scene, with_speed
from owled_ros.data.targets import frame_answer, scene_qa
from owled_ros.errors import OwledError
from owled_ros.fsutil import save_safetensors_atomic, write_text_atomic
from owled_ros.model.checkpoint import CONFIG_NAME, WHEEL_ENCODER
from owled_ros.model.encoders import EncoderConfig
from owled_ros.model.lora import LoraConfig, add_lora, lora_state_dict
from owled_ros.model.ood import OOD_FILE
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.train.config import EncoderTrainConfig, TrainConfig
from owled_ros.train.mixture import FramePool, load_pools, mixture_ood, pick_pool, validation_scores
from owled_ros.train.perception import EncoderStage, encoder_state_fp16, round_to_fp16
from owled_ros.schema import VehicleState


@dataclass(frozen=True)
class Example:
    index: int  # into the scenes and their cached features
    scene: Scene | None  # that scene, or it at a redrawn ego speed; None for a frame of a file source (--data)
    question: str
    answer: str
    ego: VehicleState | None = None  # a file source's frame: its recorded state


def example_state(e: Example, rng: random.Random) -> VehicleState | None:
    return scene_state(e.scene, rng) if e.scene is not None else e.ego


def scene_state(scene: Scene, rng: random.Random) -> VehicleState:
    """Speed always; acceleration and yaw rate dropped at random, as not every stack publishes them."""
    ego = scene.ego
    return VehicleState(
        speed_mps=ego.speed_mps,
        accel_mps2=ego.accel_mps2 if rng.random() < 0.5 else None,
        yaw_rate_rps=ego.yaw_rate_rps if rng.random() < 0.5 else None,
    )


@torch.no_grad()
def encode_scenes(vlm: DrivingVLM, scenes: list[Scene], batch: int = 32) -> torch.Tensor:
    feats = []
    for i in tqdm(range(0, len(scenes), batch), desc="encoding scenes (frozen encoder)", unit="batch"):
        feats.append(vlm.encode([render_scene(s) for s in scenes[i : i + batch]]))
    return torch.cat(feats)


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_features(vlm: DrivingVLM, scenes: list[Scene], work_dir: Path, name: str = "features",
                    seed: int = SPLIT_SEEDS["train"]) -> torch.Tensor:
    """Encoder features are the same for every run over the same scenes and encoder weights: compute once per work dir
    (`name` keeps apart the features of several encoders, e.g. a pruned model's and its teacher's)."""
    key = json.dumps({"scenes": len(scenes), "seed": seed, "encoder": vlm.encoder.config.to_dict(),
                      "weights": weights_digest(vlm.encoder)}, sort_keys=True)
    return cached(work_dir / f"{name}.safetensors", key, lambda: encode_scenes(vlm, scenes))


def cached(file: Path, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor stored in `file` under `key`, else `compute()` stored there."""
    if file.is_file():
        from safetensors import safe_open

        with safe_open(str(file), "pt") as f:
            if f.metadata().get("key") == key:
                return f.get_tensor("features")
    features = compute()
    save_safetensors_atomic({"features": features}, file, metadata={"key": key})
    return features


def sample_batch(scenes: list[Scene], cfg: TrainConfig, rng: random.Random, pools: tuple[FramePool, ...] = (),
                 gen_weight: float = 1.0) -> list[Example]:
    """A redrawn speed shows the same image with another right action: the decision has to come from
    speed and scene together, which 2000 fixed (scene, speed) pairs teach poorly.

    With `pools` (file sources, --data) each example first draws its source by weight (train/mixture.py)."""
    out = []
    for _ in range(cfg.batch):
        pool = pick_pool(gen_weight, pools, rng)
        if pool is not None:
            row, question, answer, ego = pool.example(cfg.frame_share, rng)
            out.append(Example(row, None, question, answer, ego))
            continue
        idx = rng.randrange(len(scenes))
        scene = scenes[idx]
        if cfg.speed_resample and rng.random() < cfg.speed_resample:  # no draw at 0: older runs stay bit-exact
            scene = with_speed(scene, float(rng.randint(0, MAX_SPEED_MPS)))
        if rng.random() < cfg.frame_share:
            out.append(Example(idx, scene, FRAME_QUESTION, frame_answer(scene)))
        else:
            qa = rng.choice(scene_qa(scene))
            out.append(Example(idx, scene, qa.question, qa.answer))
    return out


class Trainer:
    """Projector + LoRA on the answer loss. Subclasses pick other parameters, losses and per-step
    constraints (`prepare`, `trains`, `loss`, `after_step`) and keep the loop, schedule and checkpoints."""

    desc = "training projector+LoRA"

    def __init__(self, vlm: DrivingVLM, cfg: TrainConfig, out_dir: Path, work_dir: Path) -> None:
        self.vlm, self.cfg, self.out_dir = vlm, cfg, Path(out_dir)
        self.ckpt_dir = Path(work_dir)
        for p in vlm.parameters():
            p.requires_grad_(False)
        self.prepare()
        vlm.to(cfg.device)  # new modules too, before the optimizer holds them
        self.params = {n: p for n, p in vlm.named_parameters() if self.trains(n)}
        for p in self.params.values():
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(self.params.values(), lr=cfg.lr, weight_decay=0.0)
        self.step = 0
        self.pools: tuple[FramePool, ...] = ()  # file sources beside the generated scenes (--data)
        self.gen_weight = 1.0

    def prepare(self) -> None:
        self.lora_config = LoraConfig(rank=self.cfg.lora_rank, alpha=2.0 * self.cfg.lora_rank)
        add_lora(self.vlm.lm, self.lora_config)

    def trains(self, name: str) -> bool:
        return "lora_" in name or name.startswith("projector.")

    def loss(self, batch: list[Example], idx: torch.Tensor, features: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """The answer loss of one batch; `features` are all scenes' encoder features, `idx` this batch's rows."""
        return self.vlm.answer_loss(
            self.vlm.projector(features[idx]),
            [example_state(e, rng) for e in batch],
            [e.question for e in batch],
            [e.answer for e in batch],
        )

    def after_step(self) -> None:
        """Constraints that hold after every optimizer step (none for LoRA)."""

    def load_lora(self, file: Path) -> None:
        """Start the adapters from a trained model's delta (`init_from`); the optimizer starts fresh."""
        from owled_ros.errors import OwledError

        state = load_file(str(file))
        mine = {n.removeprefix("lm."): p for n, p in self.params.items() if "lora_" in n}
        if set(state) != set(mine) or any(state[n].shape != p.shape for n, p in mine.items()):
            raise OwledError(f"{file}: LoRA tensors do not match this training's (rank {self.cfg.lora_rank}, targets {self.lora_config.targets})")
        with torch.no_grad():
            for n, p in mine.items():
                p.copy_(state[n])

    def lr_at(self, step: int) -> float:
        if step < self.cfg.warmup:
            return self.cfg.lr * (step + 1) / self.cfg.warmup
        frac = (step - self.cfg.warmup) / max(1, self.cfg.steps - self.cfg.warmup)
        return self.cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tensors = {f"param/{n}": p.detach().contiguous() for n, p in self.params.items()}
        names = list(self.params)
        for i, state in self.opt.state_dict()["state"].items():
            for k, v in state.items():
                tensors[f"opt/{names[i]}/{k}"] = torch.as_tensor(v).contiguous()
        meta = {"step": self.step, "config": asdict(self.cfg)}
        save_safetensors_atomic(tensors, self.ckpt_dir / "checkpoint.safetensors", metadata={"meta": json.dumps(meta)})

    def load_checkpoint(self) -> bool:
        file = self.ckpt_dir / "checkpoint.safetensors"
        if not file.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(file), "pt") as f:
            meta = json.loads(f.metadata()["meta"])
        tensors = load_file(str(file))
        names = list(self.params)
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(tensors[f"param/{n}"])
        state = {
            i: {k.rsplit("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"opt/{n}/")}
            for i, n in enumerate(names)
        }
        sd = self.opt.state_dict()
        sd["state"] = {i: s for i, s in state.items() if s}
        self.opt.load_state_dict(sd)
        self.step = int(meta["step"])
        return True

    # ---- loop -----------------------------------------------------------------------------------
    def fit(self, scenes: list[Scene], features: torch.Tensor) -> list[float]:
        losses: list[float] = []
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.desc, unit="step")
        self.vlm.train()
        while self.step < self.cfg.steps:
            rng = random.Random(self.cfg.seed * 1_000_003 + self.step)  # per-step RNG: resume is exact
            batch = sample_batch(scenes, self.cfg, rng, self.pools, self.gen_weight)
            idx = torch.tensor([e.index for e in batch], device=features.device)
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.step)
            loss = self.loss(batch, idx, features, rng)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params.values(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.after_step()
            self.step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                self.save_checkpoint()
        bar.close()
        self.vlm.eval()
        return losses

    def export(self, base_config: dict, seconds: float, losses: list[float], command: str, encoder_record: dict | None,
               validation: dict | None = None) -> None:
        """Write projector, LoRA, the trained encoder (if stage 1 ran) and owled_vlm.json into out_dir, each atomically."""
        config = dict(base_config)
        if encoder_record is not None:
            save_safetensors_atomic(encoder_state_fp16(self.vlm.encoder), self.out_dir / "encoder.safetensors")
            config["encoder_weights"] = "encoder.safetensors"
        else:
            config["encoder_weights"] = WHEEL_ENCODER
        save_safetensors_atomic(self.vlm.projector.state_dict(), self.out_dir / "projector.safetensors")
        save_safetensors_atomic(lora_state_dict(self.vlm.lm), self.out_dir / "lora.safetensors")
        config["lora"] = {"rank": self.lora_config.rank, "alpha": self.lora_config.alpha, "targets": list(self.lora_config.targets)}
        config["meta"] = {
            **config.get("meta", {}),
            "trained": True,
            "prompt_cues": self.cfg.prompt_cues,
            "train": {**asdict(self.cfg), "train_seed": SPLIT_SEEDS["train"], "seconds": round(seconds, 1),
                      "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4), "command": command,
                      "encoder": encoder_record or "frozen ImageNet (wheel)", "validation": validation or {}},
        }
        write_text_atomic(self.out_dir / CONFIG_NAME, json.dumps(config, indent=2))


def train_encoder(vlm: DrivingVLM, cfg: EncoderTrainConfig, work_dir: Path, resume: bool) -> dict:
    """Stage 1 in place on vlm.encoder; returns what the model's meta records (settings, val accuracy, time)."""
    t0 = time.time()
    stage = EncoderStage(vlm.encoder, cfg, work_dir)
    if resume and stage.load_checkpoint():
        print(f"[owled] encoder stage resumed after epoch {stage.epoch} ({work_dir})")
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(cfg.scenes)]
    losses = stage.fit(stage.prefix_outputs(scenes, "train", SPLIT_SEEDS["train"]), scenes)
    val = [generate_scene(SPLIT_SEEDS["val"], i) for i in range(cfg.val_scenes)]
    accuracy = stage.evaluate(stage.prefix_outputs(val, "val", SPLIT_SEEDS["val"]), val)
    print("[owled] encoder heads on val scenes: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    round_to_fp16(vlm.encoder)
    vlm.encoder.eval()
    final = round(sum(losses[-50:]) / len(losses[-50:]), 4) if losses else None
    return {**asdict(cfg), "val_accuracy": {k: round(v, 4) for k, v in accuracy.items()}, "final_loss": final,
            "seconds": round(time.time() - t0, 1)}


def init_parts(vlm: DrivingVLM, source: Path) -> dict | None:
    """Encoder and projector weights of a trained model directory; returns its encoder record (None: wheel encoder)."""
    from owled_ros.errors import OwledError
    from owled_ros.model.checkpoint import WHEEL_LM, read_model_config

    if not (source / CONFIG_NAME).is_file():
        raise OwledError(f"{source}: not an owled model directory (no {CONFIG_NAME})")
    config = read_model_config(source)
    if config["lm"] != WHEEL_LM:
        raise OwledError(f"{source / CONFIG_NAME}: field 'lm' is {config['lm']!r}; --init-from needs a model trained on {WHEEL_LM}")
    for name in ("projector.safetensors", "lora.safetensors"):
        if not (source / name).is_file():
            raise OwledError(f"{source}: no {name} (--init-from needs a trained model directory, not a pruned or deployed one)")
    vlm.projector.load_state_dict(load_file(str(source / "projector.safetensors")))
    weights = config.get("encoder_weights", WHEEL_ENCODER)
    if weights == WHEEL_ENCODER:
        return None
    vlm.encoder.load_state_dict(load_file(str(source / weights)))
    return {"init_from": str(source), **(config.get("meta", {}).get("train", {}).get("encoder") or {})}


def train(out_dir: Path, work_dir: Path, cfg: TrainConfig, resume: bool, command: str,
          encoder_cfg: EncoderTrainConfig | None = None) -> Path:
    """Starts from the wheels' SmolLM2 and EfficientNet with a fresh projector; `resume` continues from work_dir.

    With `encoder_cfg` (epochs > 0) the encoder's late blocks are trained first (stage 1). With
    `cfg.init_from` stage 2 starts from that model's encoder, projector and LoRA instead (stage 1 skipped)."""
    from owled_ros.model.checkpoint import assemble_vlm, default_model_dir, resolve_model_dir

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    base_config = json.loads((default_model_dir() / CONFIG_NAME).read_text())
    base_config.pop("lora", None)
    vlm = assemble_vlm("default", "efficientnet-lite0", EncoderConfig.from_dict(base_config["encoder"]))
    vlm.meta["prompt_cues"] = cfg.prompt_cues
    t0 = time.time()
    encoder_record = None
    if cfg.init_from:
        encoder_record = init_parts(vlm, resolve_model_dir(cfg.init_from))
    elif encoder_cfg is not None and encoder_cfg.epochs > 0:
        encoder_record = train_encoder(vlm, encoder_cfg, Path(work_dir), resume)
    specs = data_specs(cfg.data)
    gen = next((s for s in specs if s.kind == "gen"), None)
    scenes = [generate_scene(SPLIT_SEEDS["train"], i) for i in tqdm(range(cfg.scenes if gen else 0), desc="generating scenes", unit="scene")]
    vlm.to(cfg.device)
    parts = [cached_features(vlm, scenes, Path(work_dir))] if scenes else []
    pools, pool_features = load_pools(vlm, [s for s in specs if s.kind != "gen"], len(scenes), Path(work_dir), cfg.val_share, cached,
                                      cfg.augment)
    features = torch.cat([*parts, *pool_features]).to(cfg.device)
    trainer = Trainer(vlm, cfg, out_dir, work_dir)
    trainer.pools, trainer.gen_weight = pools, gen.weight if gen else 0.0
    if cfg.init_from:
        trainer.load_lora(resolve_model_dir(cfg.init_from) / "lora.safetensors")
    if resume and trainer.load_checkpoint():
        print(f"[owled] resumed from step {trainer.step} ({work_dir})")
    losses = trainer.fit(scenes, features)
    held_out = max(1, len(features) // 4)  # a tiny run validates on a few frames, not on hundreds
    validation = validation_scores(vlm, specs, min(cfg.val_frames, held_out), cfg.val_share) if cfg.val_frames else {}
    for name, scores in validation.items():
        print(f"[owled] validation {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))
    trainer.export(base_config, time.time() - t0, losses, command, encoder_record, validation)
    mixture_ood(vlm, features, specs, min(cfg.ood_holdout, held_out), cfg.val_share).save(Path(out_dir) / OOD_FILE)
    return out_dir


def data_specs(texts: tuple[str, ...] | list[str]) -> list[DataSpec]:
    """Parsed --data specs; each source at most once."""
    specs = [parse_data_spec(t) for t in texts]
    names = [s.name for s in specs]
    if not specs:
        raise OwledError("--data: give at least one source")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise OwledError(f"--data: {', '.join(twice)} given more than once (give one spec with a weight instead)")
    for spec in specs:
        if spec.kind != "gen":
            load_source(spec, "train", 0)  # reads the whole file: a missing image or field fails before any model loads
    return specs
