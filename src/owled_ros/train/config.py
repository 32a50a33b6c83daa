"""Training settings, apart from the trainer so `owled --help` reads the defaults without importing torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    scenes: int = 2000
    steps: int = 400
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 20
    frame_share: float = 0.6  # share of examples that are the node's per-frame question
    speed_resample: float = 0.0  # share of examples whose ego speed is redrawn (0-30 m/s) and relabelled by the expert
    prompt_cues: bool = False  # prompt carries the speed's gap / stop-zone / braking distances (model/prompt.py)
    init_from: str = ""  # model directory whose encoder, projector and LoRA start stage 2 (stage 1 is skipped)
    lora_rank: int = 8
    seed: int = 0
    checkpoint_every: int = 50
    threads: int = 0  # 0: torch default
    device: str = "cpu"  # stage 2 runs here ("cuda" on a GPU machine); stage 1 and the exported files stay on the CPU
    data: tuple[str, ...] = ("gen",)  # training sources, data/sources.py specs (KIND[:PATH][@WEIGHT])
    val_share: float = 0.1  # share of a file source's scenes held out for validation
    augment: int = 0  # camera variations of each file-source training frame, beside the recorded one (data/augment.py)
    val_frames: int = 100  # validation frames per source scored after training (0: none)
    ood_holdout: int = 500  # validation frames the OOD threshold is set on


@dataclass
class EncoderTrainConfig:
    """Stage 1 (perception heads train the encoder's late blocks); epochs 0 keeps the ImageNet encoder."""

    scenes: int = 5000
    epochs: int = 6
    batch: int = 32
    lr: float = 1e-3
    first_block: int = 9  # blocks before it stay frozen (their outputs are computed once)
    val_scenes: int = 500
    seed: int = 0


@dataclass
class RecoverConfig(TrainConfig):
    """Distillation recovery of a pruned model (train/recover.py): its kept LM weights and projector
    train against the dense teacher; the encoder stays as pruned (its features are computed once)."""

    scenes: int = 400
    steps: int = 100
    batch: int = 4
    lr: float = 2e-5
    warmup: int = 10
    checkpoint_every: int = 25
    teacher: str = "default"
    feature_weight: float = 1.0  # hidden states of the kept layers against the teacher's mapped layers
    kl_weight: float = 1.0  # KL(teacher || student) on the answer-token logits
    task_weight: float = 1.0  # cross-entropy on the answer tokens
    temperature: float = 1.0  # of the KL
    action_weight: float = 1.0  # answer tokens from "Action:" on, against 1 for the description's (kl and task)
    on_policy: float = 0.0  # share of steps whose answers the student writes itself (greedy); KL and features only there
    val_examples: int = 16  # held-out val examples on which the distillation loss is reported before and after
