"""owled_ros against llm-compressor on the same SmolLM2-135M pruning jobs, side by side in one run.

Both tools prune the plain SmolLM2-135M-Instruct (the default VLM's LM before its LoRA) with
the same 64 calibration windows of 512 tokens (docs/design.md protocol, written once to a
file), each in a fresh process of its own venv: ours in .venv (`owled-job` below),
llm-compressor 0.14 in .venv-llmcompressor (benchmarks/llmcompressor/job.py, its sequential
pipeline, `ignore=["re:.*lm_head"]`). Wall time is the whole child process, model loading
and saving included; peak RSS is the child's own VmHWM. Perplexity and achieved sparsity are
then measured by one evaluator (ours, docs/design.md protocol) on both saved models. The
tools take turns case by case, so drifting machine load hits both alike.

The comparison is only published if both tools pruned the same weights: for every case the
run asserts, from the saved files, that the same tensors were pruned (the 7 linears of every
decoder layer, nothing else: embedding / lm_head and norms equal the dense model's) and, for
uniform ratios, with the same number of zeros in every tensor. It also records, per decoder
layer, how many of the weights we removed llm-compressor removed too (`mask_agreement`).

Our job is what `owled prune --model LM_DIR --calib wiki` runs: the LM streamed from its
safetensors files one decoder layer at a time (prune/stream.py), calibration products in bf16
where the CPU has bf16 dot products (--calib-dtype auto); an fp32 run of ours (the arithmetic
of llm-compressor's fp32 run) separates the two. Each tool calibrates a block on the outputs of
the blocks before it as pruned (both tools' default); the "dense inputs" case calibrates every
block on the dense model's activations (ours `--calib-inputs dense`, theirs
`propagate_error=False`).

    python -m venv .venv-llmcompressor && .venv-llmcompressor/bin/pip install torch==2.13.0 llmcompressor==0.14.0.1
    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/llmcompressor_compare.py --results benchmarks/llmcompressor_compare.json
    python benchmarks/llmcompressor_compare.py --markdown --results benchmarks/llmcompressor_compare.json
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
LLMC_PYTHON = ROOT / ".venv-llmcompressor" / "bin" / "python"
LLMC_JOB = ROOT / "benchmarks" / "llmcompressor" / "job.py"
WORK = ROOT / "runs" / "llmc_compare"
CALIB = WORK / "calib.safetensors"
OWL_M, OWL_LAMBDA = 7.0, 0.2  # owled_ros defaults (prune/config.py), given to both tools
CASES = (  # (method, ratios, sparsity, calibration inputs), the 70 % jobs first
    ("wanda", "uniform", 0.7, "pruned"), ("wanda", "uniform", 0.7, "dense"), ("sparsegpt", "uniform", 0.7, "pruned"),
    ("wanda", "owl", 0.7, "pruned"), ("wanda", "uniform", 0.5, "pruned"),
)
THEIRS = "llm-compressor"
# ours with its default (--calib-dtype auto: bf16 products on CPUs with bf16 dot products), ours in
# fp32 (the same arithmetic as llm-compressor's fp32 run), theirs
TOOLS = ("owled_ros", "owled_ros fp32", THEIRS)
MACHINE_KEY = "machine"


def owled_job(args: argparse.Namespace) -> None:
    """Our side of one case, in a fresh process like llm-compressor's."""
    start = time.perf_counter()
    from safetensors.torch import load_file

    from owled_ros.machine import peak_rss_mb
    from owled_ros.model.lm import default_lm_dir
    from owled_ros.prune.config import PruneConfig, resolve_calib_dtype
    from owled_ros.prune.stream import prune_lm_dir

    config = PruneConfig(args.method, args.ratios, 0.0, args.sparsity, owl_m=OWL_M, owl_lambda=OWL_LAMBDA,
                         calib_dtype=resolve_calib_dtype(args.calib_dtype), calib_inputs=args.calib_inputs)
    report = prune_lm_dir(default_lm_dir(), load_file(str(CALIB))["windows"], config, Path(args.out), {"source": str(CALIB)})
    print(json.dumps({"prune_s": report["seconds"], "process_s": time.perf_counter() - start,
                      "peak_rss_mb": peak_rss_mb(), "calib_dtype": config.calib_dtype}))


def _child(cmd: list[str]) -> dict:
    """Run one job; its anonymous and file-backed peaks sampled from here, the same way for both tools."""
    from owled_ros.prune.memory import MemorySampler

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with MemorySampler(proc.pid) as memory:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"wall_s": round(wall, 1), "error": stderr.strip().splitlines()[-15:]}
    return {"wall_s": round(wall, 1), **memory.peaks.to_dict(), **json.loads(stdout.strip().splitlines()[-1])}


def _state(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


TIED = {"lm_head.weight": "model.embed_tokens.weight"}  # SmolLM2 ties them; a tool may save both


def _pruned(state: dict, dense: dict) -> dict[str, int]:
    """Tensor name -> zeros, for every tensor that has other zeros than the dense model's."""
    out = {}
    for name, t in state.items():
        zeros = int((t == 0).sum())
        reference = dense.get(name, dense.get(TIED.get(name, "")))
        if reference is None or zeros != int((reference == 0).sum()):
            out[name] = zeros
    return out


def check_same_weights(records: dict[str, dict], dense: dict, uniform: bool) -> None:
    """Raise unless every tool pruned exactly the decoder layers' linears (and, uniform, as many weights each)."""
    linears = {n for n in dense if ".layers." in n and n.endswith("_proj.weight")}
    for tool, r in records.items():
        pruned = set(r["pruned_zeros"])
        if pruned != linears:
            extra, missed = sorted(pruned - linears), sorted(linears - pruned)
            raise AssertionError(f"{tool} pruned other tensors than the decoder linears: extra {extra[:3]}, untouched {missed[:3]}")
    if uniform:
        (first_tool, first), *rest = records.items()
        for tool, r in rest:
            diff = [n for n in linears if r["pruned_zeros"][n] != first["pruned_zeros"][n]]
            if diff:
                n = sorted(diff)[0]
                raise AssertionError(f"{n}: {tool} zeroed {r['pruned_zeros'][n]} weights, {first_tool} {first['pruned_zeros'][n]}")


def mask_agreement(ours: dict, theirs: dict, layers: int) -> list[float]:
    """Per decoder layer: the share of the weights we zeroed that the other tool zeroed too."""
    out = []
    for k in range(layers):
        names = [n for n in ours if f".layers.{k}." in n and n.endswith("_proj.weight")]
        both = sum(int(((ours[n] == 0) & (theirs[n] == 0)).sum()) for n in names)
        out.append(both / sum(int((ours[n] == 0).sum()) for n in names))
    return out


def _evaluate(model_dir: Path) -> dict:
    import torch

    from owled_ros.eval.perplexity import wiki_perplexity
    from owled_ros.model.lm import load_hf_lm

    lm, tok = load_hf_lm(model_dir)
    linears = [m for layer in lm.get_decoder().layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    return {"achieved": zeros / sum(m.weight.numel() for m in linears), "perplexity": wiki_perplexity(lm, tok).perplexity}


def _command(tool: str, method: str, ratios: str, sparsity: float, inputs: str, out: Path) -> list[str]:
    if tool.startswith("owled_ros"):
        return [sys.executable, __file__, "owled-job", "--method", method, "--ratios", ratios, "--sparsity", str(sparsity),
                "--out", str(out), "--calib-dtype", "fp32" if tool.endswith("fp32") else "auto", "--calib-inputs", inputs]
    cmd = [str(LLMC_PYTHON), str(LLMC_JOB), "--model", str(_default_lm_dir()), "--calib", str(CALIB),
           "--method", method, "--sparsity", str(sparsity), "--out", str(out)]
    cmd += ["--no-propagate-error"] if inputs == "dense" else []
    return cmd + (["--owl-m", str(int(OWL_M)), "--owl-lambda", str(OWL_LAMBDA)] if ratios == "owl" else [])


def _case(method: str, ratios: str, sparsity: float, inputs: str) -> str:
    return f"{method}/{ratios}/{sparsity:g}" + ("/dense" if inputs == "dense" else "")


def _save(results: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def run(results_path: Path, only: list[str]) -> None:
    """Every case of CASES not yet in the results (only those named METHOD/RATIOS/SPARSITY[/dense] in `only`, if any)."""
    from safetensors.torch import save_file

    from owled_ros.data.wiki import calibration_windows
    from owled_ros.machine import machine_info
    from owled_ros.model.lm import load_default_lm

    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results[MACHINE_KEY] = machine_info(command=shlex.join(["python", *sys.argv]))
    WORK.mkdir(parents=True, exist_ok=True)
    if not CALIB.is_file():
        save_file({"windows": calibration_windows(load_default_lm()[1], 64, 512).contiguous()}, str(CALIB))
    dense = _state(_default_lm_dir())
    layers = 1 + max(int(n.split(".layers.")[1].split(".")[0]) for n in dense if ".layers." in n)
    for method, ratios, sparsity, inputs in CASES:
        case = _case(method, ratios, sparsity, inputs)
        if only and case not in only:
            continue
        keys = {tool: f"{tool}/{case}" for tool in TOOLS}
        if all(k in results for k in keys.values()):
            continue
        records, states = {}, {}
        for tool, key in keys.items():
            out = WORK / key.replace("/", "_").replace(" ", "_")
            shutil.rmtree(out, ignore_errors=True)
            record = {"tool": tool, "method": method, "ratios": ratios, "sparsity": sparsity, "calib_inputs": inputs,
                      **_child(_command(tool, method, ratios, sparsity, inputs, out))}
            if "error" not in record:
                record |= _evaluate(out)
                states[tool] = _state(out)
                record["pruned_zeros"] = _pruned(states[tool], dense)
            shutil.rmtree(out, ignore_errors=True)
            records[tool] = record
            print(key, {k: record.get(k) for k in ("wall_s", "peak_rss_mb", "achieved", "perplexity", "error")}, flush=True)
        if THEIRS in states:
            for tool in states:
                if tool != THEIRS:
                    records[tool]["mask_agreement"] = mask_agreement(states[tool], states[THEIRS], layers)
        results.update((keys[tool], r) for tool, r in records.items())
        _save(results, results_path)
        check_same_weights({t: r for t, r in records.items() if "error" not in r}, dense, ratios == "uniform")


def _default_lm_dir() -> Path:
    from owled_ros.model.lm import default_lm_dir

    return default_lm_dir()


def _job(method: str, ratios: str, sparsity: float, inputs: str) -> str:
    name = f"{'OWL-' if ratios == 'owl' else ''}{'Wanda' if method == 'wanda' else 'SparseGPT'} {sparsity:.0%}"
    return name + (", dense inputs" if inputs == "dense" else "")


def markdown(results: dict) -> str:
    from owled_ros.machine import machine_line

    lines = [
        machine_line(results[MACHINE_KEY]),
        "",
        "| job | tool | wall time (s) | peak RSS (MB) | peak anon / file (MB) | achieved sparsity | perplexity "
        "| time ratio ours/theirs | RSS ratio | anon ratio | ppl ratio | mask agreement layer 0 / mean |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, ratios, sparsity, inputs in CASES:
        rows = [results.get(f"{t}/{_case(method, ratios, sparsity, inputs)}") for t in TOOLS]
        theirs = rows[-1]
        for r in rows:
            if r is None:
                continue
            job = _job(method, ratios, sparsity, inputs)
            if "error" in r:
                lines.append(f"| {job} | {r['tool']} | {r['wall_s']} | failed: `{r['error'][-1]}` | | | | | | | | |")
                continue
            ratio = " | | | |"
            if r is not theirs and theirs and "error" not in theirs:
                ratio = (f" {r['wall_s'] / theirs['wall_s']:.2f} | {r['peak_rss_mb'] / theirs['peak_rss_mb']:.2f} "
                         f"| {r['peak_anon_mb'] / theirs['peak_anon_mb']:.2f} | {r['perplexity'] / theirs['perplexity']:.2f} |")
            agree = r.get("mask_agreement")
            agree_cell = f" {agree[0]:.3f} / {sum(agree) / len(agree):.3f} |" if agree else " |"
            lines.append(f"| {job} | {r['tool']} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} "
                         f"| {r['peak_anon_mb']:.0f} / {r['peak_file_mb']:.0f} | {r['achieved']:.3f} "
                         f"| {r['perplexity']:.1f} |" + ratio + agree_cell)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what")
    job = sub.add_parser("owled-job")
    job.add_argument("--method", choices=("wanda", "sparsegpt"), default="wanda")
    job.add_argument("--ratios", required=True)
    job.add_argument("--sparsity", type=float, required=True)
    job.add_argument("--out", required=True)
    job.add_argument("--calib-dtype", choices=("auto", "fp32", "bf16"), default="auto")
    job.add_argument("--calib-inputs", choices=("pruned", "dense"), default="pruned")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "llmcompressor_compare.json")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--only", nargs="*", default=[], metavar="METHOD/RATIOS/SPARSITY", help="run only these cases, e.g. sparsegpt/uniform/0.7, wanda/uniform/0.7/dense")
    args = p.parse_args()
    if args.what == "owled-job":
        owled_job(args)
    elif args.markdown:
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args.results, args.only)


if __name__ == "__main__":
    main()
