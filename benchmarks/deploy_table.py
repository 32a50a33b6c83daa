"""The deploy path on this CPU: every backend against dense fp32 torch, side by side in one run.

The models are made first, with the CLI a user runs, into runs/deploy_bench/: the default model
(dense) and OWL-Wanda prunes of it at each --sparsities, each deployed with
`owled deploy --backend auto --keep-all --threads T`, which times every installed backend on gate frames
in one process (ratios against the fp32 model timed in that same process) and keeps the fastest
that passes the gate. A structured-pruned fp32 directory joins with --structured DIR.

Then, each in a fresh process of its own (so peak RSS is its own VmHWM), one after another:
dense fp32 torch, and for each deployed model its torch int8 form and every backend it kept.
Each measures a frame stage by stage at batch 1 (image preprocessing, vision = encoder +
projector, prefill, one decode step, the whole greedy answer; what is left of the frame is
Python and sampling), then action accuracy on --frames test frames and peak RSS.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/deploy_table.py --results benchmarks/deploy_table.json
    python benchmarks/deploy_table.py --markdown --results benchmarks/deploy_table.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "deploy_bench"

CHILD = r"""
import json, sys, time
import numpy as np, torch
from owled_ros.deploy.runner import load_runtime
from owled_ros.eval.driving_qa import evaluate, generated_frames
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.machine import peak_rss_mb
spec, kind, frames_n, latency_n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
t = time.perf_counter()
runtime = kind.startswith("runtime:")
model = load_runtime(spec, threads, kind.split(":")[1]) if runtime else load_vlm(spec, kind)
out = {"load_s": time.perf_counter() - t}
frames = generated_frames("test", latency_n)
stages = {k: [] for k in ("preprocess", "vision", "prefill", "decode_step", "frame", "tokens")}
def timed(key, f):
    t = time.perf_counter(); r = f(); stages[key].append(1000 * (time.perf_counter() - t)); return r
with torch.no_grad():
    for i, f in enumerate([frames[0], *frames]):  # the first is a warm-up
        if runtime:
            pixels = timed("preprocess", lambda: model.preprocessor.preprocess([f.image]).numpy())
            visual = torch.from_numpy(timed("vision", lambda: model.graphs.vision(pixels))[0])
            from owled_ros.model.vlm import assemble_lm_inputs
            embeds = assemble_lm_inputs(model.tokenizer, model.embed, visual, [f.state], [FRAME_QUESTION], None, False, model.prompt_cues)[0].numpy()
            k = v = model._empty_cache()[0]
            logits, k, v = timed("prefill", lambda: model.graphs.lm_step(embeds, np.arange(embeds.shape[1])[None], k, v))
            one = embeds[:, -1:]
            timed("decode_step", lambda: model.graphs.lm_step(one, np.array([[embeds.shape[1]]]), k, v))
        else:
            pixels = timed("preprocess", lambda: model.encoder.preprocess([f.image]))
            visual = timed("vision", lambda: model.projector(model.encoder(pixels)))
            embeds, mask, _ = model.lm_inputs(visual, [f.state], [FRAME_QUESTION])
            past = timed("prefill", lambda: model.lm(inputs_embeds=embeds, use_cache=True)).past_key_values
            timed("decode_step", lambda: model.lm(inputs_embeds=embeds[:, -1:], past_key_values=past, use_cache=True))
        gen = timed("frame", lambda: model.generate([f.image], [f.state], [FRAME_QUESTION], 64)[0])
        stages["tokens"].append(len(gen.token_texts))
        if i == 0:
            for values in stages.values():
                values.clear()
    out.update({f"{k}_ms": float(np.median(v)) for k, v in stages.items() if k != "tokens"})
    out["tokens"] = float(np.mean(stages["tokens"]))
    metrics = evaluate(model, generated_frames("test", frames_n), batch=8, qa=False)
out.update(action_accuracy=metrics["action_accuracy"], frames=metrics["frames"], peak_rss_mb=peak_rss_mb())
print(json.dumps(out))
"""


def _owled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], check=True, stdout=subprocess.DEVNULL)


GATE_LINE = re.compile(
    r"\[owled deploy\] (\S+): action agreement ([\d.]+), token KL ([\d.]+), frame p50 (\d+) ms \(fp32 (\d+)\) -> (accepted|refused)"
)


def _deploy(label: str, spec: str, out: Path, threads: int, gate_frames: int) -> dict:
    """`owled deploy --backend auto` of one model: its backend record, or, when the gate refused every
    backend (nothing is written then), the gate's timings as the command printed them."""
    from owled_ros.deploy.runner import read_backend

    refused = out.with_name(out.name + ".refused.json")  # a rerun reuses the gate's verdict rather than deploying again
    if refused.exists():
        return json.loads(refused.read_text())
    if not out.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "owled_ros.cli", "deploy", "--model", spec, "--backend", "auto", "--keep-all", "--threads", str(threads),
             "--gate-frames", str(gate_frames), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            gate = GATE_LINE.findall(proc.stderr)
            if not gate:
                sys.exit(f"deploy_table: owled deploy of {label} failed: {proc.stderr.strip().splitlines()[-1]}")
            timings = [{"backend": b, "action_agreement": float(a), "token_kl": float(k), "frame_ms_p50": float(ms), "accepted": v == "accepted"}
                       for b, a, k, ms, _fp32, v in gate]
            record = {"model": label, "backend": None, "fp32_frame_ms_p50": float(gate[0][4]), "timings": timings,
                      "refused": proc.stderr.strip().splitlines()[-1]}
            refused.write_text(json.dumps(record))
            return record
    return {"model": label, **read_backend(out), "dir": str(out)}


def models(sparsities: list[float], structured: Path | None, threads: int, gate_frames: int) -> list[dict]:
    """Each model's `owled deploy --backend auto` record (with its directory, unless the gate refused it); prunes and deploys what is missing."""
    WORK.mkdir(parents=True, exist_ok=True)
    sources = [("dense", "default")]
    for s in sparsities:
        pruned = WORK / f"owl{int(s * 100)}"
        if not pruned.exists():
            _owled("prune", "--sparsity", str(s), "--out", str(pruned))
        sources.append((f"OWL {s:.0%}", str(pruned)))
    if structured is not None:
        sources.append(("structured", str(structured)))
    return [_deploy(label, spec, WORK / f"{label.replace(' ', '').replace('%', '')}-auto", threads, gate_frames) for label, spec in sources]


def _child(spec: str, kind: str, frames: int, latency_frames: int, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, spec, kind, str(frames), str(latency_frames), str(threads)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(results: Path, frames: int, latency_frames: int, sparsities: list[float], structured: Path | None, gate_frames: int) -> None:
    from owled_ros.fsutil import write_text_atomic
    from owled_ros.machine import machine_info

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    auto = models(sparsities, structured, threads, gate_frames)
    runs = [("dense", "default", "fp32")]
    for record in auto:
        if "dir" in record:  # a model the gate refused on every backend has no deployed form to run
            runs.append((record["model"], record["dir"], "int8"))
            runs += [(record["model"], record["dir"], f"runtime:{name}") for name in record.get("kept", {})]
    rows = []
    for label, spec, kind in runs:
        start = time.perf_counter()
        row = {"model": label, "spec": spec, "kind": kind, **_child(spec, kind, frames, latency_frames, threads)}
        row["backend"] = {"fp32": "torch fp32", "int8": "torch int8"}.get(kind, kind.partition(":")[2])
        rows.append(row)
        print(f"{label} {row['backend']}: {json.dumps(row)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    command = (f"OMP_NUM_THREADS={threads} python benchmarks/deploy_table.py --frames {frames} --latency-frames {latency_frames} "
               f"--gate-frames {gate_frames} --sparsities {' '.join(map(str, sparsities))}" + (f" --structured {structured}" if structured else ""))
    data = {"machine": machine_info(threads, command), "frames": frames, "auto": auto, "rows": rows}
    write_text_atomic(results, json.dumps(data, indent=1))


def markdown(results: dict) -> str:
    from owled_ros.machine import machine_line

    lines = [
        machine_line(results["machine"]),
        "",
        "`owled deploy --backend auto`: every installed backend answering the gate frames one by one (batch 1, "
        "64 tokens at most), against the fp32 torch model in the same process.",
        "",
        "| model | backend | frame p50 (ms) | ratio to fp32 torch | action agreement | answer-token KL | accepted | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in results["auto"]:
        base = record.get("fp32_frame_ms_p50")
        for t in record["timings"]:
            ratio = f"{t['frame_ms_p50'] / base:.2f}" if base else "n/a"
            lines.append(
                f"| {record['model']} | {t['backend']} | {t['frame_ms_p50']:.0f} | {ratio} | {t['action_agreement']:.2f} | "
                f"{t['token_kl']:.4f} | {'yes' if t['accepted'] else 'no'} | {'**yes**' if t['backend'] == record['backend'] else ''} |"
            )
        if record.get("refused"):
            lines.append(f"| {record['model']} | (none) | | | | | | refused: no backend passed the gate |")
    rows = results["rows"]
    dense = rows[0]
    lines += [
        "",
        f"Each in a fresh process: stages of a frame (median over frames, batch 1) and action accuracy on {results['frames']} test frames; "
        "ratios against dense fp32 torch from the same run.",
        "",
        "| model | backend | preprocess (ms) | vision (ms) | prefill (ms) | decode step (ms) | frame (ms) | tokens | frame ratio | "
        "action accuracy | Δ action (pts) | peak RSS (MB) | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['preprocess_ms']:.1f} | {r['vision_ms']:.1f} | {r['prefill_ms']:.0f} | "
            f"{r['decode_step_ms']:.1f} | {r['frame_ms']:.0f} | {r['tokens']:.1f} | {r['frame_ms'] / dense['frame_ms']:.2f} | "
            f"{r['action_accuracy']:.3f} | {100 * (r['action_accuracy'] - dense['action_accuracy']):+.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / dense['peak_rss_mb']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "deploy_table.json")
    p.add_argument("--frames", type=int, default=200, help="test frames for action accuracy")
    p.add_argument("--latency-frames", type=int, default=8, help="test frames timed stage by stage")
    p.add_argument("--sparsities", type=float, nargs="*", default=[0.5, 0.7], help="OWL-Wanda prunes of the default model")
    p.add_argument("--gate-frames", type=int, default=8, help="owled deploy --gate-frames")
    p.add_argument("--structured", type=Path, default=None, help="a structured-pruned fp32 model directory to deploy too")
    p.add_argument("--markdown", action="store_true", help="print the table from --results and exit")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args.results, args.frames, args.latency_frames, args.sparsities, args.structured, args.gate_frames)


if __name__ == "__main__":
    main()
