"""One llm-compressor oneshot prune, run inside .venv-llmcompressor (its pins never touch ours).

Takes the calibration windows owled_ros wrote (the docs/design.md protocol) so both tools prune
on exactly the same tokens, saves the model uncompressed (dense safetensors with zeros) and
prints one JSON line: seconds inside oneshot, whole process, peak RSS. An exception is printed verbatim and exits 1.

    .venv-llmcompressor/bin/python benchmarks/llmcompressor/job.py --model DIR --calib FILE \
        --method wanda --sparsity 0.7 [--owl-m 7 --owl-lambda 0.2] [--no-propagate-error] --out DIR
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

# llm-compressor 0.14 matches `ignore` against module names exactly and names the head `lm_head.`
# (trailing dot), so a bare "lm_head" never matches and the tied embedding / lm_head gets pruned;
# its docs write the regex form.
LM_HEAD = "re:.*lm_head"


def main() -> int:
    process_start = time.perf_counter()
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--calib", required=True, help="safetensors with 'windows': (N, seqlen) token ids")
    p.add_argument("--method", choices=("wanda", "sparsegpt"), required=True)
    p.add_argument("--sparsity", type=float, required=True)
    p.add_argument("--owl-m", type=int)
    p.add_argument("--owl-lambda", type=float)
    p.add_argument("--no-propagate-error", action="store_true",
                   help="calibrate each layer on the dense model's activations (propagate_error=False)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    windows = load_file(args.calib)["windows"]
    data = Dataset.from_dict({"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()})
    owl = dict(sparsity_profile="owl", owl_m=args.owl_m, owl_lmbda=args.owl_lambda) if args.owl_m is not None else {}
    modifier = (WandaPruningModifier if args.method == "wanda" else SparseGPTModifier)(
        sparsity=args.sparsity, targets=["Linear"], ignore=[LM_HEAD], **owl
    )
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    start = time.perf_counter()
    try:
        oneshot(
            model=model, tokenizer=tokenizer, dataset=data, recipe=modifier, num_calibration_samples=len(windows),
            max_seq_length=windows.shape[1], shuffle_calibration_samples=False,
            propagate_error=not args.no_propagate_error,
        )
    except Exception:  # recorded verbatim in BENCHMARKS.md
        traceback.print_exc()
        return 1
    seconds = time.perf_counter() - start
    model.save_pretrained(args.out, save_compressed=False)
    tokenizer.save_pretrained(args.out)
    # VmHWM, not ru_maxrss: ru_maxrss also counts the parent's memory at fork (see owled_ros.prune.report)
    peak = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"prune_s": seconds, "process_s": time.perf_counter() - process_start, "peak_rss_mb": peak}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
