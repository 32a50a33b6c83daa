"""Does torch's dynamic int8 quantization give the default VLM a usable speed-up? (It does not.)

Greedy frame answers (description + action, 64 tokens) on the first 6 test scenes, batched,
one torch thread: the fp32 default model, then copies of its LM with torch.ao's dynamic int8
quantization (int8 weights, activations quantized per tensor on the fly) in four variants.
Reports wall time and how many parsed actions match fp32. Side by side in one process.
First, weight-only int8 (`torch._weight_int8pack_mm`) against fp32 on one SmolLM2 MLP matrix
(1536 x 576) times one token, the batch-1 decode case.

    source scripts/env.sh
    OMP_NUM_THREADS=1 python benchmarks/int8_probe.py
"""
from __future__ import annotations

import copy
import json
import time
import warnings

import torch
from torch import nn
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

from owled_ros.eval.driving_qa import generated_frames
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.runtime.pipeline import parse_answer

FRAMES = 6


def answers(vlm, frames) -> tuple[list[str], float, list[str]]:
    start = time.perf_counter()
    with torch.no_grad():
        gens = vlm.generate([f.image for f in frames], [f.state for f in frames], [FRAME_QUESTION] * len(frames), max_new_tokens=64)
    return [parse_answer(g).action.name for g in gens], time.perf_counter() - start, [g.text for g in gens]


def weight_only_matvec_us(reps: int = 2000) -> dict:
    x, w = torch.randn(1, 576), torch.randn(1536, 576)
    scales = w.abs().amax(1) / 127
    wq = torch.round(w / scales[:, None]).to(torch.int8)
    out = {}
    for name, f in (("fp32", lambda: x @ w.T), ("int8 weight-only", lambda: torch._weight_int8pack_mm(x, wq, scales))):
        f()
        start = time.perf_counter()
        for _ in range(reps):
            f()
        out[name] = (time.perf_counter() - start) / reps * 1e6
    return out


def main() -> None:
    warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
    torch.set_num_threads(1)
    print("matvec us", json.dumps(weight_only_matvec_us()), flush=True)
    frames = generated_frames("test", FRAMES)
    base = load_vlm("default")
    ref, ref_s, _ = answers(base, frames)
    results = {"fp32": {"seconds": ref_s, "actions": ref}}
    names = [n for n, m in base.lm.named_modules() if isinstance(m, nn.Linear)]
    variants = {
        "int8 per-channel, all Linear": {nn.Linear: per_channel_dynamic_qconfig},
        "int8 per-channel, lm_head fp32": {n: per_channel_dynamic_qconfig for n in names if n != "lm_head"},
        "int8 per-tensor, lm_head fp32": {n: default_dynamic_qconfig for n in names if n != "lm_head"},
        "int8 per-channel, MLP only": {n: per_channel_dynamic_qconfig for n in names if "mlp" in n},
    }
    for label, spec in variants.items():
        vlm = copy.deepcopy(base)
        quantize_dynamic(vlm.lm, spec, inplace=True)
        actions, seconds, texts = answers(vlm, frames)
        results[label] = {
            "seconds": seconds, "time_ratio": seconds / ref_s, "actions_as_fp32": sum(a == b for a, b in zip(actions, ref)),
            "actions": actions, "first_text": texts[0],
        }
        print(label, json.dumps(results[label]), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
