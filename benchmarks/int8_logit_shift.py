"""Does int8 shift the action logits one way, and would a calibrated logit bias undo it? (experiment)

The pruned 10 % int8 recipe turns right "accelerate"s into "keep speed" far more often than
the reverse (BENCHMARKS 5.0.5). Teacher-forced on the reference frame answers, the fp32 model
and a fake-int8 copy (smoothed as `owled deploy` smooths, int8 per-row weights, per-token 8-bit
activations) are compared at every answer token. A logit bias (fp32 - int8) is estimated on
train scenes stage 2 never used, three ways (mean over all answer tokens; weighted by the fp32
probability; at the action token only), and scored on val frames. Not shipped: see BENCHMARKS.

    source scripts/env.sh
    OMP_NUM_THREADS=1 python benchmarks/int8_logit_shift.py --model runs/s15/wanda10 --down-alpha 0.3
"""
import argparse
import copy
import json

import torch
import torch.nn.functional as F
from torch import nn

from owled_ros.data.calibration import load_calibration
from owled_ros.data.scenes import SPLIT_SEEDS, Scene, generate_scene, render_scene
from owled_ros.data.targets import frame_answer
from owled_ros.deploy.build import smooth_for_int8
from owled_ros.deploy.config import DeployConfig
from owled_ros.model.int8 import pack, unpack
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import ACTION_MARKER, FRAME_QUESTION
from owled_ros.model.vlm import DrivingVLM


class FakeInt8(nn.Module):
    """The int8 runtime's prefill numerics in fp32: rounded weights, per-token 8-bit activations."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = unpack(*pack(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = (x.abs().amax(-1, keepdim=True) / 127.0).clamp(min=1e-12)
        return (torch.round(x / step).clamp(-127, 127) * step) @ self.weight.t()


def fake_int8(vlm: DrivingVLM, config: DeployConfig) -> DrivingVLM:
    q = copy.deepcopy(vlm)
    smooth_for_int8(q, load_calibration("scenes", config.calib_samples, q.tokenizer, seqlen=512), config)
    for name, m in [(n, m) for n, m in q.lm.named_modules() if isinstance(m, nn.Linear)]:
        parent, _, child = name.rpartition(".")
        setattr(q.lm.get_submodule(parent) if parent else q.lm, child, FakeInt8(m.weight.detach()))
    return q


@torch.no_grad()
def answer_logits(vlm: DrivingVLM, scene: Scene) -> tuple[torch.Tensor, int]:
    """Logits predicting each reference answer token, and the index of the action token."""
    embeds, mask, spans = vlm.lm_inputs(vlm.visual_embeds([render_scene(scene)]), [scene.ego], [FRAME_QUESTION], [frame_answer(scene)], left_pad=False)
    start, ids = spans[0]
    logits = vlm.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, start - 1 : start - 1 + len(ids)].float()
    k = next(i for i in range(1, len(ids)) if vlm.tokenizer.decode(ids[:i]).rstrip().endswith(ACTION_MARKER))
    return logits, k


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="an fp32 model directory, or default")
    p.add_argument("--down-alpha", type=float, default=None)
    p.add_argument("--calib-frames", type=int, default=150)
    p.add_argument("--val-frames", type=int, default=150)
    args = p.parse_args()
    torch.set_num_threads(1)
    vlm = load_vlm(args.model, "fp32")
    q = fake_int8(vlm, DeployConfig(down_alpha=args.down_alpha))
    vocab = vlm.lm.config.vocab_size
    total, weighted, weight, at_action, tokens = torch.zeros(vocab), torch.zeros(vocab), torch.zeros(vocab), torch.zeros(vocab), 0
    calib = [generate_scene(SPLIT_SEEDS["train"], 3000 + i) for i in range(args.calib_frames)]  # stage 2 used 0-1999
    for scene in calib:
        (r, k), (o, _) = answer_logits(vlm, scene), answer_logits(q, scene)
        d, prob = r - o, F.softmax(r, -1)
        total += d.sum(0); tokens += len(d); weighted += (prob * d).sum(0); weight += prob.sum(0); at_action += d[k]
    corrections = {"none": torch.zeros(vocab), "mean over answer tokens": total / tokens,
                   "fp32-probability weighted": weighted / weight.clamp(min=1e-12), "at the action token": at_action / len(calib)}
    scores = {c: {"action_kl": 0.0, "action_flips": 0, "token_flips": 0} for c in corrections}
    shift, counts = torch.zeros(vocab), {}
    val = [generate_scene(SPLIT_SEEDS["val"], i) for i in range(args.val_frames)]
    for scene in val:
        (r, k), (o, _) = answer_logits(vlm, scene), answer_logits(q, scene)
        top = int(r[k].argmax()); counts[top] = counts.get(top, 0) + 1; shift += o[k] - r[k]
        for label, c in corrections.items():
            oc = o + c
            lr, lo = F.log_softmax(r[k], -1), F.log_softmax(oc[k], -1)
            s = scores[label]
            s["action_kl"] += float((lr.exp() * (lr - lo)).sum()) / len(val)
            s["action_flips"] += int(top != int(oc[k].argmax()))
            s["token_flips"] += int((r.argmax(-1) != oc.argmax(-1)).sum())
    ids = list(counts)
    shift /= len(val)
    name = vlm.tokenizer.decode
    print(json.dumps({
        "model": args.model, "down_alpha": args.down_alpha, "calib_frames": len(calib), "val_frames": len(val),
        "val_action_tokens": {name([t]): n for t, n in counts.items()},
        "val_int8_minus_fp32_action_logit": {name([t]): round(float(shift[t] - shift[ids].mean()), 3) for t in ids},
        "calibrated_correction_at_action": {name([t]): round(float(corrections["at the action token"][t] - corrections["at the action token"][ids].mean()), 3) for t in ids},
        "scores": {c: {**s, "action_kl": round(s["action_kl"], 4)} for c, s in scores.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
