"""What `owled trim-vocab` buys: each model with its full LM head and with the head trimmed to the
tokens it says, fp32 and deployed int8 (torch), answering the same generated test frames in turns
at batch 1. Both forms of a model must give the same answers (counted), and the frame latency is
compared as a ratio to dense fp32 in the same run.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/trim_vocab.py --models default runs/ch20-r60p140 \
        --frames 16 --results benchmarks/trim_vocab.json
    python benchmarks/trim_vocab.py markdown --results benchmarks/trim_vocab.json

Each model is trimmed and deployed (`owled trim-vocab`, `owled deploy --backend torch --down-alpha 0.3`)
by the real commands in child processes, into a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from owled_ros.eval.driving_qa import generated_frames
from owled_ros.machine import benchmark_main, machine_info, machine_line
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.runtime.answer import parse_answer


def _owled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], check=True)


def _variants(model: str, work: Path, calib_samples: int) -> dict[str, str]:
    """fp32 / fp32 trimmed / int8 / int8 trimmed directories of one model."""
    name = Path(model).name
    trimmed = work / f"{name}-tv"
    _owled("trim-vocab", "--model", model, "--calib-samples", str(calib_samples), "--out", str(trimmed))
    dirs = {"fp32": model, "fp32 trimmed": str(trimmed)}
    for key, src in (("int8", model), ("int8 trimmed", str(trimmed))):
        out = work / f"{name}-{key.replace(' ', '-')}"
        _owled("deploy", "--model", src, "--backend", "torch", "--down-alpha", "0.3", "--out", str(out))
        dirs[key] = str(out)
    return dirs


def run(args: argparse.Namespace) -> None:
    frames = generated_frames("test", args.frames)
    with tempfile.TemporaryDirectory(prefix="trim-vocab-", dir=os.environ.get("TMPDIR")) as tmp:
        dirs = {f"{m} | {k}": d for m in args.models for k, d in _variants(m, Path(tmp), args.calib_samples).items()}
        models = {key: load_vlm(d) for key, d in dirs.items()}
        kept = {key: vlm.meta.get("output_vocab", {}).get("kept_tokens") for key, vlm in models.items()}
        for vlm in models.values():  # warm-up
            vlm.generate([frames[0].image], [frames[0].state], [FRAME_QUESTION], args.max_new_tokens)
        rec: dict[str, dict[str, list]] = {k: {"latency": [], "text": [], "correct": []} for k in models}
        for i, f in enumerate(frames):
            for key, vlm in models.items():  # in turns: load on a shared machine hits every model alike
                start = time.perf_counter()
                gen = vlm.generate([f.image], [f.state], [FRAME_QUESTION], args.max_new_tokens)[0]
                rec[key]["latency"].append((time.perf_counter() - start) * 1e3)
                rec[key]["text"].append(gen.text)
                rec[key]["correct"].append(parse_answer(gen).action is f.action)
            print(f"frame {i + 1}/{len(frames)}", file=sys.stderr, flush=True)
    rows = {key: {"latency_ms_p50": statistics.median(r["latency"]), "action_accuracy": sum(r["correct"]) / len(frames),
                  "texts": r["text"], "kept_tokens": kept[key]} for key, r in rec.items()}
    results = {"frames": len(frames), "max_new_tokens": args.max_new_tokens, "models": args.models, "rows": rows,
               "machine": machine_info(torch.get_num_threads(), " ".join(["python", *sys.argv]))}
    tmp_path = args.results.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(results, indent=1))
    tmp_path.replace(args.results)
    print(markdown(results))


def markdown(results: dict) -> str:
    rows = results["rows"]
    dense = rows[f"{results['models'][0]} | fp32"]
    lines = [machine_line(results["machine"]), "",
             f"{results['frames']} generated test frames, batch 1, greedy, {results['max_new_tokens']} new tokens at most; "
             f"ratios to `{results['models'][0]}` fp32 from the same run. \"same answers\": frames whose answer text equals "
             "the untrimmed form's, word for word.", "",
             "| model | form | output tokens | p50 frame latency | vs dense fp32 | vs untrimmed | same answers | action acc. |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        model, form = key.split(" | ")
        base = rows[f"{model} | {form.replace(' trimmed', '')}"]
        same = sum(a == b for a, b in zip(r["texts"], base["texts"]))
        lines.append(f"| `{model}` | {form} | {r['kept_tokens'] or 49152} | {r['latency_ms_p50']:.0f} ms | "
                     f"{r['latency_ms_p50'] / dense['latency_ms_p50']:.2f}x | {r['latency_ms_p50'] / base['latency_ms_p50']:.2f}x | "
                     f"{same}/{results['frames']} | {r['action_accuracy']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default"], help="fp32 model directories (the first is the dense reference)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    benchmark_main(parser, run, markdown)
