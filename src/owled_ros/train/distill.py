"""Feature + logit distillation from a dense teacher into a pruned student (both DrivingVLMs).

The loss of one batch has three parts, each a mean so their weights compare across models:
- feature: for every student decoder layer, the output hidden state against the teacher layer it
  stands for (the same index, or the kept index when whole layers were removed), as the squared
  error relative to the teacher's norm, per token, over the batch's real (unpadded) tokens;
- kl: KL(teacher || student) of the answer-token distributions, at a temperature T (times T^2);
- task: cross-entropy of the student on the answer tokens (the loss `owled train` uses).
kl and task are means over answer tokens; `action` weighs the tokens from "Action:" on against
the description's (1: every token alike). On generated frames the description is 30 of 48
answer tokens and the action phrase 2, yet the decision is what a cut model loses first
(docs/recovery.md).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from owled_ros.errors import OwledError
from owled_ros.model.prompt import ACTION_MARKER, end_of_answer, scene_token_count
from owled_ros.model.vlm import DrivingVLM
from owled_ros.schema import VehicleState

REMOVED_LAYER = re.compile(r"\.layers\.(\d+)$")
"""How prune_report.json's `removed_layers` names a dropped decoder layer (e.g. lm.model.layers.7)."""


@dataclass(frozen=True)
class DistillWeights:
    feature: float = 1.0
    kl: float = 1.0
    task: float = 1.0
    temperature: float = 1.0
    action: float = 1.0


def decoder_layers(vlm: DrivingVLM) -> nn.ModuleList:
    return vlm.lm.get_decoder().layers


def check_teacher(student: DrivingVLM, teacher: DrivingVLM, teacher_name: str) -> None:
    """The teacher must read the same token sequence and produce states of the same size."""
    s, t = student.lm.config, teacher.lm.config
    if t.vocab_size != s.vocab_size or len(teacher.tokenizer) != len(student.tokenizer):
        raise OwledError(f"teacher {teacher_name}: vocabulary {t.vocab_size} does not match the pruned model's {s.vocab_size}")
    if t.hidden_size != s.hidden_size:
        raise OwledError(f"teacher {teacher_name}: hidden size {t.hidden_size} does not match the pruned model's {s.hidden_size}")
    if teacher.projector.config.n_tokens != student.projector.config.n_tokens or teacher.prompt_cues != student.prompt_cues:
        raise OwledError(f"teacher {teacher_name}: its prompt (visual tokens, prompt cues) differs from the pruned model's")


def layer_map(student: DrivingVLM, teacher: DrivingVLM, removed_layers: list[str]) -> list[int]:
    """Teacher layer index for each student layer: the teacher's layers minus those the prune report
    lists as removed (LM decoder layers only; an encoder entry is ignored), in order."""
    n_s, n_t = len(decoder_layers(student)), len(decoder_layers(teacher))
    removed = {int(m.group(1)) for name in removed_layers if (m := REMOVED_LAYER.search(name)) and name.startswith("lm.")}
    kept = [i for i in range(n_t) if i not in removed]
    if len(kept) != n_s:
        why = f"its prune report removes {sorted(removed)}" if removed else "no prune report lists removed layers"
        raise OwledError(f"the pruned model has {n_s} decoder layers, the teacher {n_t}, and {why}")
    return kept


@contextmanager
def layer_outputs(layers: list[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collects each listed layer's output hidden state during the forwards run inside the block."""
    outputs: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple, output) -> None:
        outputs.append(output[0] if isinstance(output, tuple) else output)

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Mean over layers and real tokens of ||s - t||^2 / ||t||^2 (relative, so the few huge-norm tokens
    of a Llama residual stream do not drown the rest)."""
    keep = mask.bool()
    losses = []
    for s, t in zip(student, teacher):
        s, t = s[keep].float(), t[keep].float()
        losses.append(((s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-6)).mean())
    return torch.stack(losses).mean()


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, weights: torch.Tensor) -> torch.Tensor:
    """Per-token KL, averaged with `weights` (one per answer token)."""
    s = F.log_softmax(student_logits.float() / temperature, -1)
    t = F.log_softmax(teacher_logits.float() / temperature, -1)
    per_token = F.kl_div(s, t, log_target=True, reduction="none").sum(-1)
    return (per_token * weights).sum() / weights.sum() * temperature**2


def answer_token_weights(tokenizer: PreTrainedTokenizerBase, answers: list[str], action: float) -> torch.Tensor:
    """1 for each description token, `action` for each token from "Action:" on (end of answer
    included), answer after answer, as DrivingVLM.answer_logits lays out its targets; an answer
    without an action (a QA answer) weighs 1 throughout."""
    parts = []
    for answer in answers:
        n = len(tokenizer(answer + end_of_answer(tokenizer), add_special_tokens=False)["input_ids"])
        scene = min(scene_token_count(tokenizer, answer), n) if ACTION_MARKER in answer else n
        parts.append(torch.cat([torch.ones(scene), torch.full((n - scene,), float(action))]))
    return torch.cat(parts)


class Distiller:
    """Runs the teacher (no gradients) and the student on the same batch and combines the three losses."""

    def __init__(self, student: DrivingVLM, teacher: DrivingVLM, weights: DistillWeights, removed_layers: list[str]) -> None:
        self.student, self.teacher, self.weights = student, teacher, weights
        self.pairs = layer_map(student, teacher, removed_layers)
        self.teacher_layers = [decoder_layers(teacher)[i] for i in self.pairs]
        self.student_layers = list(decoder_layers(student))

    def losses(
        self,
        student_features: torch.Tensor,
        teacher_features: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str],
        action: float | None = None,
        task: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """`total` and its parts for one batch; encoder features in, each model through its own projector.
        `action` overrides the action tokens' weight (held-out losses weigh every token alike, so runs compare);
        `task` the task loss's (0 where the answers are the student's own, which are no labels)."""
        with torch.no_grad(), layer_outputs(self.teacher_layers) as t_hidden:
            t_logits, _, _ = self.teacher.answer_logits(self.teacher.projector(teacher_features), states, questions, answers)
        with layer_outputs(self.student_layers) as s_hidden:
            s_logits, targets, mask = self.student.answer_logits(self.student.projector(student_features), states, questions, answers)
        w = self.weights
        token_w = answer_token_weights(self.student.tokenizer, answers, w.action if action is None else action).to(s_logits.device)
        if len(token_w) != len(targets):
            raise RuntimeError(f"answer token weights {len(token_w)} do not match the {len(targets)} answer tokens")
        ce = F.cross_entropy(s_logits.float(), targets, reduction="none")
        parts = {
            "feature": feature_loss(s_hidden, t_hidden, mask),
            "kl": kl_loss(s_logits, t_logits, w.temperature, token_w),
            "task": (ce * token_w).sum() / token_w.sum(),
        }
        parts["total"] = w.feature * parts["feature"] + w.kl * parts["kl"] + (w.task if task is None else task) * parts["task"]
        return parts
