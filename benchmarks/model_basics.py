"""Default-model basics: load time (cold from GGUF, warm from cache), image encode, prefill and decode
tokens/s, peak RSS. Each measurement runs in a fresh process so RSS and caches do not leak between them.

    .venv/bin/python benchmarks/model_basics.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import numpy as np, torch
from owled_ros.model.checkpoint import load_vlm
vlm = load_vlm("default")
load_s = time.perf_counter() - t0
out = {"load_s": load_s}
if sys.argv[1] == "full":
    reps = int(sys.argv[2])
    img = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    with torch.no_grad():
        vlm.encode([img])
        t = time.perf_counter()
        for _ in range(reps):
            vlm.encode([img])
        out["encode_ms"] = 1000 * (time.perf_counter() - t) / reps
        ids = torch.randint(100, 40000, (1, 512))
        vlm.lm(ids)
        t = time.perf_counter()
        for _ in range(reps):
            vlm.lm(ids)
        out["prefill_tok_s"] = 512 * reps / (time.perf_counter() - t)
        prompt = torch.randint(100, 40000, (1, 64))
        gen = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=vlm.tokenizer.eos_token_id)
        vlm.lm.generate(prompt, **gen)
        t = time.perf_counter()
        for _ in range(reps):
            vlm.lm.generate(prompt, **gen)
        total = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(reps):
            vlm.lm(prompt)
        prefill64 = time.perf_counter() - t
        out["decode_tok_s"] = 64 * reps / (total - prefill64)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(mode: str, repeats: int, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(repeats)], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cold_cache:
        cold = child("load", 1, {**os.environ, "OWLED_CACHE": cold_cache})
    warm = child("full", args.repeats, dict(os.environ))
    print(json.dumps({"cold_load_s": cold["load_s"], **{("warm_" + k if k == "load_s" else k): v for k, v in warm.items()}}, indent=2))


if __name__ == "__main__":
    main()
