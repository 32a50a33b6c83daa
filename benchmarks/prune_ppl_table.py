"""SmolLM2-135M Wikipedia perplexity after pruning: methods x ratios x sparsities, and an OWL sweep.

Uses the library's own pipeline (prune_part on the default model's LM, wiki calibration
windows, docs/design.md perplexity protocol). One capture and one dense OWL pass (all M at
once) are shared by every configuration; the LM is restored from a dense copy between
runs. Results are appended to a JSON file as they finish, so an interrupted run resumes.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/prune_ppl_table.py --results benchmarks/prune_ppl.json
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/prune_owl_sweep.py --results benchmarks/prune_owl_sweep.json
    python benchmarks/prune_ppl_table.py markdown --results benchmarks/prune_ppl.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from owled_ros.machine import machine_info, machine_line

from owled_ros.data.calibration import CalibrationSet
from owled_ros.data.wiki import calibration_windows, eval_windows
from owled_ros.eval.perplexity import window_losses
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.lm import load_default_lm
from owled_ros.prune.apply import outlier_ratios, prune_part
from owled_ros.prune.config import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M, PruneConfig
from owled_ros.prune.vlm import capture_lm, lm_blocks

TABLE_METHODS = (("magnitude", "uniform"), ("wanda", "uniform"), ("wanda", "owl"), ("sparsegpt", "uniform"), ("sparsegpt", "owl"))
SWEEP_M = (3.0, 5.0, 7.0, 10.0)
SWEEP_LAMBDA = (0.04, 0.08, 0.12, 0.2)
PAPER_LAMBDA = 0.08  # the coordinate search's first leg: M at the OWL paper's lambda


def _key(method: str, ratios: str, sparsity: float, m: float, lam: float) -> str:
    return f"{method}/{ratios}/{sparsity:g}" + (f"/M{m:g}/l{lam:g}" if ratios == "owl" else "")


class Bench:
    def __init__(self, calib_windows: int, eval_max: int, ms: tuple[float, ...], results: Path) -> None:
        self.vlm = load_vlm("default")
        self.lm = self.vlm.lm
        # the plain SmolLM2-135M-Instruct: the default VLM's LM carries merged driving LoRA weights
        self.lm.load_state_dict(load_default_lm()[0].state_dict())
        self.dense = {k: v.clone() for k, v in self.lm.state_dict().items()}
        self.eval = eval_windows(self.vlm.tokenizer, eval_max)
        self.calib = CalibrationSet("wiki", windows=calibration_windows(self.vlm.tokenizer, calib_windows))
        self.blocks = lm_blocks(self.vlm)
        self.captured = capture_lm(self.vlm, self.calib)
        self.results_path = results
        self.results = json.loads(results.read_text()) if results.is_file() else {}
        self.ms = ms
        self.dense_d: dict[float, list[float]] | None = None

    def _save(self) -> None:
        self.results["machine"] = machine_info(torch.get_num_threads(), " ".join(["python", *sys.argv]))
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1))
        tmp.replace(self.results_path)

    def perplexity(self) -> float:
        return float(torch.exp(window_losses(self.lm, self.eval).double().mean()))

    def outliers(self, m: float) -> list[float]:
        if self.dense_d is None:
            self.lm.load_state_dict(self.dense)
            self.dense_d = outlier_ratios(self.blocks, self.captured, self.ms, "dense owl pass")
        return self.dense_d[m]

    def dense_ppl(self) -> None:
        if "dense" not in self.results:
            self.lm.load_state_dict(self.dense)
            self.results["dense"] = {"perplexity": self.perplexity()}
            self._save()
        print(f"dense: {self.results['dense']['perplexity']:.2f}", flush=True)

    def run(self, method: str, ratios: str, sparsity: float, m: float, lam: float) -> None:
        key = _key(method, ratios, sparsity, m, lam)
        if key in self.results:
            print(f"{key}: {self.results[key]['perplexity']:.2f} (cached)", flush=True)
            return
        config = PruneConfig(method, ratios, 0.0, sparsity, owl_m=m, owl_lambda=lam)
        d = self.outliers(m) if ratios == "owl" else None
        self.lm.load_state_dict(self.dense)
        start = time.perf_counter()
        part = prune_part("llm", self.blocks, lambda: self.captured, sparsity, config, dense_outlier_ratios=d, keep_capture=True)
        seconds = time.perf_counter() - start
        zeros = sum(int((layer.weight == 0).sum()) for b in part.blocks for layer in b.layers.values())
        self.results[key] = {
            "method": method, "ratios": ratios, "sparsity": sparsity, "M": m, "lambda": lam,
            "achieved": zeros / sum(part.params), "prune_seconds": round(seconds, 1),
            "perplexity": self.perplexity(), "calib_windows": int(self.calib.windows.shape[0]),
            "eval_windows": int(self.eval.shape[0]),
        }
        self._save()
        print(f"{key}: {self.results[key]['perplexity']:.2f} ({seconds:.0f} s prune)", flush=True)


def _runs(results: dict) -> dict:
    """The pruned runs (not the dense reference, not the machine record)."""
    return {k: r for k, r in results.items() if k not in ("dense", "machine")}


def _machine(results: dict) -> list[str]:
    return [machine_line(results["machine"]), ""] if "machine" in results else []


def markdown(results: dict) -> str:
    runs = _runs(results)
    rows = sorted({(r["method"], r["ratios"]) for r in runs.values()}, key=lambda mr: TABLE_METHODS.index(mr) if mr in TABLE_METHODS else 99)
    sparsities = sorted({r["sparsity"] for r in runs.values()})
    lines = _machine(results) + ["| method | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |", "|---|" + "---|" * len(sparsities)]
    if "dense" in results:
        lines.append(f"| dense | {results['dense']['perplexity']:.2f} |" + " |" * (len(sparsities) - 1))
    for method, ratios in rows:
        cells = []
        for s in sparsities:
            hits = [r for r in runs.values() if (r["method"], r["ratios"], r["sparsity"]) == (method, ratios, s)]
            cells.append(" / ".join(f"{r['perplexity']:.2f}" for r in hits) or "-")
        name = ("OWL-" if ratios == "owl" else "") + {"magnitude": "magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}[method]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_markdown(results: dict) -> str:
    runs = [r for r in _runs(results).values() if r["ratios"] == "owl"]
    ms = sorted({r["M"] for r in runs})
    lams = sorted({r["lambda"] for r in runs})
    uniform = [r for r in _runs(results).values() if r["ratios"] == "uniform"]
    lines = _machine(results) + ([f"Uniform {uniform[0]['method']}: {uniform[0]['perplexity']:.2f}.", ""] if uniform else []) + ["| M \\ lambda | " + " | ".join(f"{lam:g}" for lam in lams) + " |", "|---|" + "---|" * len(lams)]
    for m in ms:
        cells = [next((f"{r['perplexity']:.2f}" for r in runs if (r["M"], r["lambda"]) == (m, lam)), "-") for lam in lams]
        lines.append(f"| {m:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="table", choices=("table", "sweep", "markdown"))
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.7, 0.6, 0.5])
    p.add_argument("--calib-windows", type=int, default=64)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--ratios", choices=("uniform", "owl"), nargs="+", default=["uniform", "owl"], help="table rows to run")
    p.add_argument("--sweep-sparsity", type=float, default=0.7)
    p.add_argument("--sweep-method", default="wanda")
    p.add_argument("--full-grid", action="store_true", help="sweep every (M, lambda) pair, not the coordinate search")
    p.add_argument("--ms", type=float, nargs="+", default=list(SWEEP_M), help="OWL M values to sweep")
    p.add_argument("--lambdas", type=float, nargs="+", default=list(SWEEP_LAMBDA), help="OWL lambda values to sweep")
    args = p.parse_args()
    if args.what == "markdown":
        results = json.loads(args.results.read_text())
        print(markdown(results))
        if len({(r["M"], r["lambda"]) for r in _runs(results).values() if r["ratios"] == "owl"}) > 1:
            print("\n" + sweep_markdown(results))
        return
    torch.manual_seed(0)
    if args.what == "table":
        bench = Bench(args.calib_windows, args.eval_windows, (DEFAULT_OWL_M,), args.results)
        bench.dense_ppl()
        for s in args.sparsities:
            for method, ratios in TABLE_METHODS:
                if ratios in args.ratios:
                    bench.run(method, ratios, s, DEFAULT_OWL_M, DEFAULT_OWL_LAMBDA)
        print(markdown(bench.results))
    else:
        ms, lams = tuple(args.ms), tuple(args.lambdas)
        bench = Bench(args.calib_windows, args.eval_windows, ms, args.results)
        s, method = args.sweep_sparsity, args.sweep_method
        bench.run(method, "uniform", s, DEFAULT_OWL_M, DEFAULT_OWL_LAMBDA)
        if args.full_grid:
            for m in ms:
                for lam in lams:
                    bench.run(method, "owl", s, m, lam)
        else:  # coordinate search (the full grid is |M| x |lambda| prunes): M at the paper's lambda, then lambda at the best M
            for m in ms:
                bench.run(method, "owl", s, m, PAPER_LAMBDA)
            best_m = min(ms, key=lambda m: bench.results[_key(method, "owl", s, m, PAPER_LAMBDA)]["perplexity"])
            for lam in lams:
                bench.run(method, "owl", s, best_m, lam)
        print(sweep_markdown(bench.results))


if __name__ == "__main__":
    main()
