"""Cost and effect of `owled recover` on pruned default models: steps, wall and CPU minutes, peak RSS,
and the distillation loss parts on the held-out val examples before and after.

Each pruned model is recovered by `owled recover` in a child process; its CPU time (all threads) and
peak RSS are the ones `owled recover` records in the model's meta.recovered:

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/recovery.py --pruned runs/rec/pruned30 --steps 20 \
        --results benchmarks/recovery.json
    python benchmarks/recovery.py markdown --results benchmarks/recovery.json

Without --pruned it prunes the default model first (Wanda 30 % unstructured, channels 20 %), 16 scene samples.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from owled_ros.machine import benchmark_main, machine_info, machine_line

RECIPES = {  # name -> owled prune arguments
    "wanda-30": ["--method", "wanda", "--sparsity", "0.3"],
    "channels-20": ["--structure", "channels", "--sparsity", "0.2"],
}


def _owled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], check=True)


def _measure(pruned: Path, steps: int, scenes: int, batch: int, work: Path) -> dict:
    out = work / f"{pruned.name}-recovered"
    start = time.perf_counter()
    _owled("recover", "--model", str(pruned), "--steps", str(steps), "--scenes", str(scenes), "--batch", str(batch),
           "--threads", str(torch.get_num_threads()), "--out", str(out))
    wall = time.perf_counter() - start
    record = json.loads((out / "owled_vlm.json").read_text())["meta"]["recovered"]
    return {"model": str(pruned), "steps": steps, "batch": batch, "scenes": scenes, "wall_min": round(wall / 60, 2),
            "cpu_min": round(record["cpu_seconds"] / 60, 2), "peak_rss_mb": record["peak_rss_mb"],
            "val_before": record["val_before"], "val_after": record["val_after"]}


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="recovery-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        pruned = [Path(p) for p in args.pruned]
        if not pruned:
            for name, extra in RECIPES.items():
                _owled("prune", "--model", "default", *extra, "--calib", "scenes", "--calib-samples", "16", "--out", str(work / name))
                pruned.append(work / name)
        rows = []
        for model in pruned:
            rows.append(_measure(model, args.steps, args.scenes, args.batch, work))
    command = " ".join(["python", *sys.argv])
    data = {"rows": rows, "machine": machine_info(torch.get_num_threads(), command)}
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(args.results)
    print(markdown(data))


def markdown(results: dict) -> str:
    lines = [machine_line(results["machine"]), "",
             "| pruned model | steps x batch | wall min | CPU min | peak RSS MB | feature | KL | task CE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        b, a = r["val_before"], r["val_after"]
        lines.append(f"| `{r['model']}` | {r['steps']} x {r['batch']} | {r['wall_min']} | {r['cpu_min']} | {r['peak_rss_mb']} | "
                     f"{b['feature']:.4f} -> {a['feature']:.4f} | {b['kl']:.4f} -> {a['kl']:.4f} | {b['task']:.4f} -> {a['task']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruned", nargs="*", default=[], help="pruned model directories (default: prune the recipes first)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scenes", type=int, default=80)
    parser.add_argument("--batch", type=int, default=4)
    benchmark_main(parser, run, markdown)


if __name__ == "__main__":
    main()
