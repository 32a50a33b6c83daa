"""owled_ros against llm-compressor on the same SmolLM2-135M pruning job, side by side in one run.

Both tools prune the plain SmolLM2-135M-Instruct (the default VLM's LM before its LoRA) with
the same 64 calibration windows of 512 tokens (docs/design.md protocol, written once to a file),
each in a fresh process of its own venv: ours in .venv (`owled-job` below), llm-compressor in
.venv-llmcompressor (benchmarks/llmcompressor/job.py). Wall time is the whole child process,
model loading and saving included; peak RSS is the child's own VmHWM. Perplexity and
achieved sparsity are then measured by one evaluator (ours, docs/design.md protocol) on both
saved models. Cases alternate between the tools so drifting machine load hits both alike.
Our job is what `owled prune --model LM_DIR --calib wiki` runs: the LM streamed from its
safetensors files one decoder layer at a time (prune/stream.py), calibration products in
bf16 where the CPU has bf16 dot products (--calib-dtype auto); an fp32 run of ours on the
uniform jobs separates the two.

    python -m venv .venv-llmcompressor && .venv-llmcompressor/bin/pip install torch==2.13.0 llmcompressor==0.14.0.1
    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/llmcompressor_compare.py --results benchmarks/llmcompressor_compare.json
    python benchmarks/llmcompressor_compare.py --markdown --results benchmarks/llmcompressor_compare.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLMC_PYTHON = ROOT / ".venv-llmcompressor" / "bin" / "python"
LLMC_JOB = ROOT / "benchmarks" / "llmcompressor" / "job.py"
WORK = ROOT / "runs" / "llmc_compare"
CALIB = WORK / "calib.safetensors"
OWL_M, OWL_LAMBDA = 7.0, 0.2  # owled_ros defaults (prune/config.py), given to both tools
CASES = (("uniform", 0.7), ("owl", 0.7), ("uniform", 0.5), ("owl", 0.5))
# ours with its default (--calib-dtype auto: bf16 products on CPUs with bf16 dot products), ours in
# fp32 (the same arithmetic as llm-compressor's fp32 run), theirs; the fp32 variant on uniform jobs only
TOOLS = ("owled_ros", "owled_ros fp32", "llm-compressor")


def owled_job(args: argparse.Namespace) -> None:
    """Our side of one case, in a fresh process like llm-compressor's."""
    start = time.perf_counter()
    from safetensors.torch import load_file

    from owled_ros.model.lm import default_lm_dir
    from owled_ros.prune.config import PruneConfig, resolve_calib_dtype
    from owled_ros.prune.report import peak_rss_mb
    from owled_ros.prune.stream import prune_lm_dir

    config = PruneConfig("wanda", args.ratios, 0.0, args.sparsity, owl_m=OWL_M, owl_lambda=OWL_LAMBDA,
                         calib_dtype=resolve_calib_dtype(args.calib_dtype))
    report = prune_lm_dir(default_lm_dir(), load_file(str(CALIB))["windows"], config, Path(args.out), {"source": str(CALIB)})
    print(json.dumps({"prune_s": report["seconds"], "process_s": time.perf_counter() - start,
                      "peak_rss_mb": peak_rss_mb(), "calib_dtype": config.calib_dtype}))


def _child(cmd: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"wall_s": round(wall, 1), "error": done.stderr.strip().splitlines()[-15:]}
    return {"wall_s": round(wall, 1), **json.loads(done.stdout.strip().splitlines()[-1])}


def _evaluate(model_dir: Path) -> dict:
    import torch

    from owled_ros.eval.perplexity import wiki_perplexity
    from owled_ros.model.lm import load_hf_lm

    lm, tok = load_hf_lm(model_dir)
    linears = [m for layer in lm.get_decoder().layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    return {"achieved": zeros / sum(m.weight.numel() for m in linears), "perplexity": wiki_perplexity(lm, tok).perplexity}


def run(results_path: Path) -> None:
    from safetensors.torch import save_file

    from owled_ros.data.wiki import calibration_windows
    from owled_ros.model.lm import load_default_lm

    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    WORK.mkdir(parents=True, exist_ok=True)
    if not CALIB.is_file():
        save_file({"windows": calibration_windows(load_default_lm()[1], 64, 512).contiguous()}, str(CALIB))
    for ratios, sparsity in CASES:
        for tool in TOOLS:
            key = f"{tool}/wanda/{ratios}/{sparsity:g}"
            if key in results or (tool == "owled_ros fp32" and ratios != "uniform"):
                continue
            out = WORK / key.replace("/", "_").replace(" ", "_")
            shutil.rmtree(out, ignore_errors=True)
            if tool.startswith("owled_ros"):
                cmd = [sys.executable, __file__, "owled-job", "--ratios", ratios, "--sparsity", str(sparsity), "--out", str(out),
                       "--calib-dtype", "fp32" if tool.endswith("fp32") else "auto"]
            else:
                cmd = [str(LLMC_PYTHON), str(LLMC_JOB), "--model", str(_default_lm_dir()), "--calib", str(CALIB),
                       "--method", "wanda", "--sparsity", str(sparsity), "--out", str(out)]
                cmd += ["--owl-m", str(int(OWL_M)), "--owl-lambda", str(OWL_LAMBDA)] if ratios == "owl" else []
            record = {"tool": tool, "ratios": ratios, "sparsity": sparsity, **_child(cmd)}
            if "error" not in record:
                record |= _evaluate(out)
            shutil.rmtree(out, ignore_errors=True)
            results[key] = record
            print(key, {k: record.get(k) for k in ("wall_s", "peak_rss_mb", "achieved", "perplexity", "error")}, flush=True)
            tmp = results_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            tmp.replace(results_path)


def _default_lm_dir() -> Path:
    from owled_ros.model.lm import default_lm_dir

    return default_lm_dir()


def markdown(results: dict) -> str:
    lines = [
        "| job | tool | wall time (s) | peak RSS (MB) | achieved sparsity | perplexity | time ratio ours/theirs | RSS ratio | ppl ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ratios, sparsity in CASES:
        rows = [results.get(f"{t}/wanda/{ratios}/{sparsity:g}") for t in TOOLS]
        theirs = rows[-1]
        for r in rows:
            if r is None:
                continue
            job = f"{'OWL-' if ratios == 'owl' else ''}Wanda {sparsity:.0%}"
            if "error" in r:
                lines.append(f"| {job} | {r['tool']} | {r['wall_s']} | failed: `{r['error'][-1]}` | | | | | |")
                continue
            ratio = ""
            if r is not theirs and theirs and "error" not in theirs:
                ratio = (f" {r['wall_s'] / theirs['wall_s']:.2f} | {r['peak_rss_mb'] / theirs['peak_rss_mb']:.2f} "
                         f"| {r['perplexity'] / theirs['perplexity']:.2f} |")
            lines.append(
                f"| {job} | {r['tool']} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['achieved']:.3f} | {r['perplexity']:.2f} |"
                + (ratio or " | | |")
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what")
    job = sub.add_parser("owled-job")
    job.add_argument("--ratios", required=True)
    job.add_argument("--sparsity", type=float, required=True)
    job.add_argument("--out", required=True)
    job.add_argument("--calib-dtype", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "llmcompressor_compare.json")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.what == "owled-job":
        owled_job(args)
    elif args.markdown:
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args.results)


if __name__ == "__main__":
    main()
