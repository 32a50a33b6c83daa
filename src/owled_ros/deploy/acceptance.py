"""Before a backend is accepted: does it answer like the fp32 model, and how fast is it here?

The check runs on calibration frames with the node's question. The fp32 model answers
greedily; the candidate must (1) give the same action on at least `min_action_agreement` of
the frames, and (2) put close to the same next-token distribution on the fp32 answer, teacher-
forced: the mean over answer tokens of KL(fp32 || candidate) at most `max_token_kl` nats.
Timing: the same frames answered one by one (batch 1, the node's question and token budget)
by the fp32 model and every candidate, taking turns frame by frame so that the machine's load
hits them alike, after one warm-up frame each; the median frame is kept.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from owled_ros.data.calibration import VisualSample
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM
from owled_ros.runtime.answer import parse_answer


@dataclass(frozen=True)
class GateConfig:
    min_action_agreement: float = 0.95
    """On the default 8 gate frames: every action as fp32's. 0.85 let through an ONNX Runtime int8
    form that agreed on 7 of 8 (and one that agreed on 4 of 4, then flipped 26 % of 200 test
    frames of a structured model); a flip on few frames is a warning worth a refusal."""
    max_token_kl: float = 0.005
    """Nats. Accepted int8 forms that held their model's accuracy on 200 test frames had KL
    0.0001-0.0041 on the gate frames; ONNX Runtime forms of structured models agreed on every
    gate action with KL 0.0066 and 0.019, then lost 26 and 21 points (BENCHMARKS 4). 0.1 let both through."""


@dataclass(frozen=True)
class Reference:
    """The fp32 model's answers on the gate frames, computed once for every candidate."""

    texts: tuple[str, ...]
    actions: tuple[str, ...]
    log_probs: tuple[np.ndarray, ...]
    frame_ms_p50: float  # the fp32 torch model's own time on the frames: what the backends' times compare with


@dataclass(frozen=True)
class Verdict:
    backend: str
    action_agreement: float
    token_kl: float
    frame_ms_p50: float
    accepted: bool

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@torch.no_grad()
def torch_answer_log_probs(vlm: DrivingVLM, sample: VisualSample, answer: str) -> np.ndarray:
    """(answer tokens, vocab) next-token log-probabilities of a torch DrivingVLM, teacher-forced."""
    embeds, mask, spans = vlm.lm_inputs(vlm.visual_embeds([sample.image]), [sample.state], [FRAME_QUESTION], [answer])
    start, ans = spans[0]
    logits = vlm.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, start - 1 : start - 1 + len(ans)]
    return logits.float().log_softmax(-1).cpu().numpy()


def log_probs_of(model: object, sample: VisualSample, answer: str) -> np.ndarray:
    if isinstance(model, DrivingVLM):
        return torch_answer_log_probs(model, sample, answer)
    return model.answer_log_probs(sample.image, sample.state, FRAME_QUESTION, answer)


FP32 = "fp32 torch"


def answer_round_robin(models: dict[str, object], frames: list[VisualSample], max_new_tokens: int) -> dict[str, tuple[list, float]]:
    """Every model answers every frame alone (batch 1), taking turns frame by frame after one
    warm-up frame each, so a change in the machine's load hits them all alike: name ->
    (generations, median ms)."""
    def answer(model: object, frame: VisualSample):
        return model.generate([frame.image], [frame.state], [FRAME_QUESTION], max_new_tokens)[0]

    for model in models.values():
        answer(model, frames[0])
    gens: dict[str, list] = {name: [] for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    for frame in frames:
        for name, model in models.items():
            start = time.perf_counter()
            gens[name].append(answer(model, frame))
            times[name].append(time.perf_counter() - start)
    return {name: (gens[name], 1000 * float(np.median(times[name]))) for name in models}


def reference(vlm: DrivingVLM, frames: list[VisualSample], gens: list, frame_ms: float) -> Reference:
    """The fp32 model's answers (from `answer_round_robin`) with its teacher-forced distributions."""
    texts = tuple(g.text for g in gens)
    actions = tuple(parse_answer(g).action.name for g in gens)
    return Reference(texts, actions, tuple(log_probs_of(vlm, f, t) for f, t in zip(frames, texts)), frame_ms)


def judge(
    backend: str, model: object, frames: list[VisualSample], ref: Reference, gate: GateConfig, gens: list, frame_ms: float
) -> Verdict:
    """Compare a backend's answers (from `answer_round_robin`) and teacher-forced distributions with the reference."""
    agreement = float(np.mean([parse_answer(g).action.name == a for g, a in zip(gens, ref.actions)]))
    kls = []
    for frame, ref_text, ref_lp in zip(frames, ref.texts, ref.log_probs):
        got = log_probs_of(model, frame, ref_text)
        kls.append(float((np.exp(ref_lp) * (ref_lp - got)).sum(-1).mean()))
    kl = float(np.mean(kls))
    accepted = agreement >= gate.min_action_agreement and kl <= gate.max_token_kl
    return Verdict(backend, agreement, kl, frame_ms, accepted)
