"""Training stage 1: teach the encoder's late blocks to see what the expert needs.

Why: a probe on the frozen ImageNet features names the expert's action in only half the
test scenes (BENCHMARKS §2.1); the distances the rules compare are not in them. Heads
supervised by the scene ground truth (every road user by lane and distance, the light or
sign and its distance, road, weather, and the action given the ego speed) train the
encoder from block `first_block` on. The heads read the same pooled tokens the projector
sees, so what they learn is what the LM will get; they are thrown away afterwards.

Cost control for the CPU: the blocks before `first_block` stay frozen (ImageNet) and their
outputs are computed once per work dir and kept in fp16. The trained encoder is rounded to
fp16 once, the precision it ships in, before stage 2 reads features from it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from owled_ros.data.scenes import (
    ADJACENT_DISTANCES, CONTROL_DISTANCES, EGO_DISTANCES, ROADSIDE_DISTANCES, WEATHERS, Scene, render_scene,
)
from owled_ros.errors import OwledError
from owled_ros.fsutil import save_safetensors_atomic
from owled_ros.model.encoders import EfficientNetEncoder
from owled_ros.train.config import EncoderTrainConfig
from owled_ros.vocab import Action, LightState, ObjectPosition

GRID_DISTANCES: tuple[float, ...] = tuple(sorted({*EGO_DISTANCES, *ADJACENT_DISTANCES, *ROADSIDE_DISTANCES}))
GRID_POSITIONS = (ObjectPosition.EGO_LANE, ObjectPosition.LEFT_LANE, ObjectPosition.RIGHT_LANE, ObjectPosition.ROADSIDE)
USER_CLASSES = ("none", "car", "truck", "slow car", "slow truck", "pedestrian", "cyclist", "crossing pedestrian")
CONTROL_CLASSES = ("none", "red light", "yellow light", "green light", "stop sign")
HEADS: dict[str, int] = {  # head -> classes; "grid" is one softmax per (position, distance) cell
    "grid": len(USER_CLASSES),
    "control": len(CONTROL_CLASSES),
    "control_distance": 1 + len(CONTROL_DISTANCES),
    "road": 3,
    "weather": len(WEATHERS),
    "action": len(Action),
}


def _user_class(o) -> str:
    if o.crossing:
        return "crossing pedestrian"
    return f"slow {o.object_class}" if o.slow else o.object_class


def perception_targets(scene: Scene) -> dict[str, torch.Tensor]:
    """Integer labels of one scene, one tensor per head (the grid as positions x distances)."""
    grid = torch.zeros(len(GRID_POSITIONS), len(GRID_DISTANCES), dtype=torch.long)
    for o in scene.objects:
        grid[GRID_POSITIONS.index(o.position), GRID_DISTANCES.index(o.distance_m)] = USER_CLASSES.index(_user_class(o))
    control, control_distance = "none", 0
    if scene.control is not None:
        control = "stop sign" if scene.stop_sign else f"{scene.light.name.lower()} light"
        control_distance = 1 + CONTROL_DISTANCES.index(int(scene.control.distance_m))
    road = 0 if scene.curvature == 0 else (1 if scene.curvature > 0 else 2)
    return {
        "grid": grid,
        "control": torch.tensor(CONTROL_CLASSES.index(control)),
        "control_distance": torch.tensor(control_distance),
        "road": torch.tensor(road),
        "weather": torch.tensor(WEATHERS.index(scene.weather)),
        "action": torch.tensor(int(scene.expert.action)),
    }


def speed_features(scenes: list[Scene]) -> torch.Tensor:
    """What the action head knows of the ego state: the speed, scaled, and its square (braking distance)."""
    v = torch.tensor([float(s.ego.speed_mps or 0.0) / 30.0 for s in scenes]).unsqueeze(1)
    return torch.cat([v, v * v], 1)


class PerceptionHeads(nn.Module):
    """Small heads over the pooled tokens: a per-token squeeze keeps the signal where the projector reads it."""

    def __init__(self, dim: int, n_tokens: int, squeeze: int = 64, hidden: int = 512) -> None:
        super().__init__()
        self.squeeze = nn.Linear(dim, squeeze)
        self.trunk = nn.Sequential(nn.Linear(n_tokens * squeeze, hidden), nn.ReLU())  # no dropout: resume stays exact
        cells = len(GRID_POSITIONS) * len(GRID_DISTANCES)
        self.out = nn.ModuleDict({
            "grid": nn.Linear(hidden, cells * HEADS["grid"]),
            **{k: nn.Linear(hidden, n) for k, n in HEADS.items() if k not in ("grid", "action")},
        })
        self.action = nn.Sequential(nn.Linear(hidden + 2, 128), nn.ReLU(), nn.Linear(128, HEADS["action"]))

    def forward(self, tokens: torch.Tensor, speed: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(F.relu(self.squeeze(tokens)).flatten(1))
        out = {k: head(h) for k, head in self.out.items()}
        out["grid"] = out["grid"].view(len(h), HEADS["grid"], len(GRID_POSITIONS), len(GRID_DISTANCES))
        out["action"] = self.action(torch.cat([h, speed], 1))
        return out


GRID_NONE_WEIGHT = 0.25
"""Most grid cells are empty; summed per scene with empty cells down-weighted, each road user
counts as much as the light does (a plain mean over 40 cells learnt only objects within 15 m)."""


def perception_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    weight = torch.ones(HEADS["grid"])
    weight[0] = GRID_NONE_WEIGHT
    grid = F.cross_entropy(logits["grid"], targets["grid"], weight=weight, reduction="sum") / len(targets["grid"])
    return grid + sum(F.cross_entropy(logits[k], targets[k]) for k in HEADS if k != "grid")


def head_accuracy(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per head; the grid counts a scene right only when every cell is (the description lists them all)."""
    acc = {k: float((logits[k].argmax(1) == targets[k]).float().mean()) for k in HEADS if k != "grid"}
    acc["grid_scene"] = float((logits["grid"].argmax(1) == targets["grid"]).flatten(1).all(1).float().mean())
    return acc


class EncoderStage:
    """Frozen prefix, trainable suffix of the EfficientNet backbone, heads, optimizer, checkpoints."""

    def __init__(self, encoder: EfficientNetEncoder, cfg: EncoderTrainConfig, work_dir: Path) -> None:
        self.encoder, self.cfg, self.work_dir = encoder, cfg, Path(work_dir)
        blocks = encoder.backbone.blocks
        if not 1 <= cfg.first_block < len(blocks):
            raise OwledError(f"first_block must be in 1..{len(blocks) - 1}, got {cfg.first_block}")
        self.prefix, self.suffix = blocks[: cfg.first_block], blocks[cfg.first_block :]
        torch.manual_seed(cfg.seed)
        self.heads = PerceptionHeads(encoder.out_dim, math.prod(encoder.config.grid))
        self.params = [*self.suffix.parameters(), *self.heads.parameters()]
        self.opt = torch.optim.AdamW(
            [{"params": list(self.suffix.parameters()), "lr": cfg.lr}, {"params": list(self.heads.parameters()), "lr": 3 * cfg.lr}],
            weight_decay=0.01,
        )
        self.epoch = 0

    @torch.no_grad()
    def prefix_outputs(self, scenes: list[Scene], name: str, seed: int) -> torch.Tensor:
        """fp16 outputs of the frozen blocks, cached in the work dir under a key of what made them."""
        key = json.dumps({"scenes": len(scenes), "seed": seed, "first_block": self.cfg.first_block,
                          "encoder": self.encoder.config.to_dict()}, sort_keys=True)
        file = self.work_dir / f"encoder_inputs_{name}.safetensors"
        if file.is_file():
            from safetensors import safe_open

            with safe_open(str(file), "pt") as f:
                if f.metadata().get("key") == key:
                    return f.get_tensor("x")
        self.prefix.eval()
        out = []
        for i in tqdm(range(0, len(scenes), 32), desc=f"frozen encoder blocks ({name})", unit="batch"):
            x = self.encoder.preprocess([render_scene(s) for s in scenes[i : i + 32]])
            for block in self.prefix:
                x = block(x)
            out.append(x.half())
        x = torch.cat(out)
        save_safetensors_atomic({"x": x}, file, metadata={"key": key})
        return x

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.suffix:
            x = block(x)
        return self.encoder.pool(x)

    def lr_scale(self, step: int, total: int) -> float:
        warm = max(1, total // 20)
        return (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    # ---- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_file(self) -> Path:
        return self.work_dir / "encoder_checkpoint.safetensors"

    def save_checkpoint(self) -> None:
        tensors = {f"suffix/{k}": v for k, v in self.suffix.state_dict().items()}
        tensors.update({f"heads/{k}": v for k, v in self.heads.state_dict().items()})
        for i, state in self.opt.state_dict()["state"].items():
            for k, v in state.items():
                tensors[f"opt/{i}/{k}"] = torch.as_tensor(v)
        meta = {"epoch": self.epoch, "config": asdict(self.cfg)}
        save_safetensors_atomic(tensors, self._checkpoint_file(), metadata={"meta": json.dumps(meta)})

    def load_checkpoint(self) -> bool:
        file = self._checkpoint_file()
        if not file.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(file), "pt") as f:
            meta = json.loads(f.metadata()["meta"])
        mine = {k: v for k, v in asdict(self.cfg).items() if k != "epochs"}
        if {k: v for k, v in meta["config"].items() if k != "epochs"} != mine:
            raise OwledError(f"{file}: made with other encoder settings {meta['config']}; use another --work-dir")
        tensors = load_file(str(file))
        self.suffix.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("suffix/")})
        self.heads.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("heads/")})
        sd = self.opt.state_dict()
        sd["state"] = {}
        for k, v in tensors.items():
            if k.startswith("opt/"):
                _, i, name = k.split("/", 2)
                sd["state"].setdefault(int(i), {})[name] = v
        self.opt.load_state_dict(sd)
        self.epoch = int(meta["epoch"])
        return True

    # ---- loop -----------------------------------------------------------------------------------
    def fit(self, x: torch.Tensor, scenes: list[Scene]) -> list[float]:
        targets = [perception_targets(s) for s in scenes]
        stacked = {k: torch.stack([t[k] for t in targets]) for k in HEADS}
        speed = speed_features(scenes)
        per_epoch = math.ceil(len(x) / self.cfg.batch)
        total = per_epoch * self.cfg.epochs
        base = [g["lr"] for g in self.opt.param_groups]
        losses: list[float] = []
        bar = tqdm(total=total, initial=self.epoch * per_epoch, desc="training encoder (perception heads)", unit="step")
        while self.epoch < self.cfg.epochs:
            self.suffix.train()
            self.heads.train()
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch))
            for j in range(per_epoch):
                step = self.epoch * per_epoch + j
                for g, lr in zip(self.opt.param_groups, base):
                    g["lr"] = lr * self.lr_scale(step, total)
                idx = perm[j * self.cfg.batch : (j + 1) * self.cfg.batch]
                logits = self.heads(self.tokens(x[idx].float()), speed[idx])
                loss = perception_loss(logits, {k: v[idx] for k, v in stacked.items()})
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 2.0)
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            for g, lr in zip(self.opt.param_groups, base):
                g["lr"] = lr
            self.epoch += 1
            self.save_checkpoint()
        bar.close()
        self.suffix.eval()
        self.heads.eval()
        return losses

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
        self.suffix.eval()
        self.heads.eval()
        targets = [perception_targets(s) for s in scenes]
        stacked = {k: torch.stack([t[k] for t in targets]) for k in HEADS}
        logits = [self.heads(self.tokens(x[i : i + 64].float()), speed_features(scenes[i : i + 64])) for i in range(0, len(x), 64)]
        return head_accuracy({k: torch.cat([lg[k] for lg in logits]) for k in HEADS}, stacked)


def round_to_fp16(encoder: nn.Module) -> None:
    """The encoder ships in fp16; round it here so stage 2 trains on exactly the features the node computes."""
    with torch.no_grad():
        for t in [*encoder.parameters(), *encoder.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())


def encoder_state_fp16(encoder: nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in encoder.state_dict().items()}
