"""The default driving VLM pruned streamed (prune/stream.py) against loaded whole, side by side in one run.

Each path runs in a fresh child process on the same calibration samples (`--calib scenes`,
OWL-Wanda, the `owled prune` defaults): `streamed` is what `owled prune --model default`
runs (LM read one decoder layer at a time, LoRA merged as read); `in-memory` loads the whole
model (load_vlm + prune_vlm), as `owled prune` did before. The run asserts that both wrote
identical weights, then records wall time, time per LM layer, VmHWM and the sampled
anonymous and file-backed peaks (prune/memory.py). The paths alternate over `--repeats`.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/stream_vlm.py --results benchmarks/stream_vlm.json
    python benchmarks/stream_vlm.py --markdown --results benchmarks/stream_vlm.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "stream_vlm"
PATHS = ("in-memory", "streamed")
SAMPLES, SPARSITY = 32, 0.5


def job(path: str, out: Path) -> None:
    """One prune of the default model, in this (fresh) process; prints the report's timing and memory."""
    from owled_ros.data.calibration import load_calibration
    from owled_ros.model.checkpoint import default_model_dir, load_vlm
    from owled_ros.prune.config import DEFAULT_ENCODER_SHARE, PruneConfig, resolve_calib_dtype
    from owled_ros.prune.memory import MemorySampler
    from owled_ros.prune.report import build_report, count_zeros
    from owled_ros.prune.save import write_pruned
    from owled_ros.prune.stream import open_vlm_dir, prune_vlm_dir
    from owled_ros.prune.vlm import prune_vlm

    config = PruneConfig("wanda", "owl", DEFAULT_ENCODER_SHARE * SPARSITY, SPARSITY, calib_dtype=resolve_calib_dtype("auto"))
    record = {"source": "scenes", "samples": SAMPLES}
    start = time.perf_counter()
    if path == "streamed":
        opened = open_vlm_dir(default_model_dir())
        calib = load_calibration("scenes", SAMPLES, opened.vlm.tokenizer, 512)
        report = prune_vlm_dir(opened, calib, config, out, record)
    else:
        with MemorySampler() as memory:
            vlm = load_vlm("default", "fp32")
            calib = load_calibration("scenes", SAMPLES, vlm.tokenizer, 512)
            parts = prune_vlm(vlm, calib, config)
        blocks = [b for part in parts for b in part.blocks]
        report = build_report(config, parts, record, time.perf_counter() - start, count_zeros(blocks), memory.peaks)
        write_pruned(vlm, report, out)
    print(json.dumps({k: report[k] for k in ("seconds", "peak_rss_mb", "peak_anon_mb", "peak_file_mb")}
                     | {"llm_layers": len(report["blocks"]["llm"]), "calib_dtype": config.calib_dtype}))


def _weights(model_dir: Path) -> dict:
    from owled_ros.model.checkpoint import load_vlm

    return load_vlm(model_dir).state_dict()


def run(results_path: Path, repeats: int) -> None:
    import torch

    from owled_ros.machine import machine_info

    results = {"machine": machine_info(command=shlex.join(["python", *sys.argv])), "runs": []}
    WORK.mkdir(parents=True, exist_ok=True)
    for r in range(repeats):
        outs = {}
        for path in PATHS if r % 2 == 0 else PATHS[::-1]:
            out = WORK / path
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "job", path, str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"stream_vlm: the {path} job failed:\n{done.stderr[-3000:]}")
            record = {"path": path, "wall_s": round(time.perf_counter() - start, 1), **json.loads(done.stdout.strip().splitlines()[-1])}
            results["runs"].append(record)
            outs[path] = out
            print(record, flush=True)
        a, b = (_weights(outs[p]) for p in PATHS)
        different = [n for n in a if not torch.equal(a[n], b[n])]
        if different or a.keys() != b.keys():
            sys.exit(f"stream_vlm: the streamed prune wrote other weights than the in-memory one ({different[:3]})")
        results["identical_weights"] = True
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_path)


def markdown(results: dict) -> str:
    from owled_ros.machine import machine_line

    lines = [
        machine_line(results["machine"]),
        "",
        f"OWL-Wanda {SPARSITY:.0%} of the default model, {SAMPLES} `scenes` samples; identical weights from both paths: "
        f"{'yes' if results.get('identical_weights') else 'not checked'}.",
        "",
        "| path | prune s | prune s ÷ LM layers | VmHWM (MB) | peak anonymous (MB) | peak file-backed (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for path in PATHS:
        runs = [r for r in results["runs"] if r["path"] == path]
        if not runs:
            continue
        mean = lambda key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
        lines.append(f"| {path} | {mean('seconds'):.0f} | {mean('seconds') / runs[0]['llm_layers']:.2f} | {mean('peak_rss_mb'):.0f} "
                     f"| {mean('peak_anon_mb'):.0f} | {mean('peak_file_mb'):.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what")
    j = sub.add_parser("job")
    j.add_argument("path", choices=PATHS)
    j.add_argument("out", type=Path)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "stream_vlm.json")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.what == "job":
        job(args.path, args.out)
    elif args.markdown:
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args.results, args.repeats)


if __name__ == "__main__":
    main()
