"""Which LM linears carry the int8 error: teacher-forced on the dense model's own val answers.

The fp32 model is smoothed as `owled deploy` smooths it, then one group of linears at a time is
fake-quantized (int8 per-row weights, per-token symmetric 8-bit activations: the prefill's
numerics) and its logits compared with fp32's: KL at the action token, how many action tokens
change their argmax, KL over all answer tokens. Cheaper and far less noisy than scoring actions;
it ranks error sources, it does not replace `owled eval driving-qa --batch 1` (BENCHMARKS 5.0.4).

    source scripts/env.sh
    owled eval driving-qa --model default --split val --limit 500 --frame-only --answers runs/val500.jsonl
    OMP_NUM_THREADS=1 python benchmarks/int8_error_probe.py --answers runs/val500.jsonl --frames 150 [--down-alpha 0.3]
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

from owled_ros.data.calibration import load_calibration
from owled_ros.deploy.build import smooth_for_int8
from owled_ros.deploy.config import DeployConfig
from owled_ros.model.int8 import pack, unpack
from owled_ros.eval.driving_qa import generated_frames
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="default", help="an fp32 model directory, or default")
p.add_argument("--answers", required=True, help="the model's own `--answers` file on the val split")
p.add_argument("--frames", type=int, default=150)
p.add_argument("--alpha", type=float, default=DeployConfig().alpha)
p.add_argument("--down-alpha", type=float, default=None)
p.add_argument("--only", default="", help="comma-separated variant labels (default: all)")
args = p.parse_args()
torch.set_num_threads(1)
answers = [json.loads(line)["text"] for line in open(args.answers)][: args.frames]
frames = generated_frames("val", len(answers))
vlm = load_vlm(args.model, "fp32")
vlm.eval()


def forward(v):
    out = []
    with torch.no_grad():
        for f, a in zip(frames, answers):
            visual = v.visual_embeds([f.image])
            embeds, mask, spans = v.lm_inputs(visual, [f.state], [FRAME_QUESTION], [a], left_pad=False)
            start, ids = spans[0]
            logits = v.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, start - 1 : start - 1 + len(ids)].float()
            # action token: first token after the one completing "Action:"
            k = next(i for i in range(1, len(ids)) if v.tokenizer.decode(ids[:i]).rstrip().endswith("Action:"))
            out.append((logits, k))
    return out


ref = forward(vlm)
info = smooth_for_int8(vlm, load_calibration("scenes", 32, vlm.tokenizer, seqlen=512), DeployConfig(alpha=args.alpha, down_alpha=args.down_alpha))
orig = {n: m.weight.detach().clone() for n, m in vlm.lm.named_modules() if isinstance(m, nn.Linear)}


class Fake(nn.Module):
    def __init__(self, w, wq, aq):
        super().__init__()
        self.w = unpack(*pack(w)) if wq else w
        self.aq = aq

    def forward(self, x):
        if self.aq:
            step = (x.abs().amax(-1, keepdim=True) / 127.0).clamp(min=1e-12)
            x = torch.round(x / step).clamp(-127, 127) * step
        return x @ self.w.t()


def set_variant(mode):
    """mode(name) -> None (fp32) or (quantize weights, quantize activations)."""
    for name in orig:
        parent, _, child = name.rpartition(".")
        mod = vlm.lm.get_submodule(parent) if parent else vlm.lm
        w = orig[name]
        m = mode(name)
        if m is not None:
            setattr(mod, child, Fake(w, *m))
        else:
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight = nn.Parameter(w, requires_grad=False)
            setattr(mod, child, lin)


def score(label):
    out = forward(vlm)
    kl_act, flips, kl_all, tokflips, ntok, dacc = 0.0, 0, 0.0, 0, 0, 0.0
    for (r, k), (o, _) in zip(ref, out):
        lr, lo = F.log_softmax(r, -1), F.log_softmax(o, -1)
        kl = (lr.exp() * (lr - lo)).sum(-1)
        kl_act += float(kl[k]); kl_all += float(kl.sum()); ntok += len(kl)
        flips += int(r[k].argmax() != o[k].argmax())
        tokflips += int((r.argmax(-1) != o.argmax(-1)).sum())
    n = len(ref)
    print(f"{label:28s} action KL {kl_act/n:.4f} flips {flips:3d}/{n}  all-token KL {kl_all/ntok:.4f} flips {tokflips}/{ntok}", flush=True)


Q = (True, True)
def but(parts, m=None):
    return lambda n: m if any(p in n for p in parts) else Q
score_variants = [
    ("all int8", lambda n: Q),
    ("weights only", lambda n: (True, False)),
    ("activations only", lambda n: (False, True)),
    ("lm_head fp32", but(["lm_head"])),
    ("down_proj fp32", but(["down_proj"])),
    ("down_proj w-only", but(["down_proj"], (True, False))),
    ("down_proj a-only", but(["down_proj"], (False, True))),
    ("down+lm_head fp32", but(["down_proj", "lm_head"])),
    ("o_proj fp32", but(["o_proj"])),
    ("qkv fp32", but(["q_proj", "k_proj", "v_proj"])),
    ("gate/up fp32", but(["gate_proj", "up_proj"])),
]
only = args.only
for label, mode in score_variants:
    if only and label not in only.split(","):
        continue
    set_variant(mode)
    score(label)
