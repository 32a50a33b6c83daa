"""Structured pruning: SmolLM2 Wikipedia perplexity, and the driving VLM's accuracy and frame latency.

`ppl`: the plain SmolLM2-135M-Instruct (docs/design.md protocol), channels at several shares
of the decoder weights, OWL vs uniform ratios, each importance (activation = the gradient-free
Wanda-sp baseline), and whole layers by block influence. Scores are computed once per
importance on the dense model; every configuration is cut from them on a fresh copy.
`vlm`: the default DrivingVLM dense and structured (channels, activation, OWL, encoder at a
quarter of S), each frame answered by every model in turn: action accuracy (paired against
dense), ROUGE-L of the description, median frame latency at batch 1 (greedy, the node's 64
new tokens), parameters.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/structured_prune.py --results benchmarks/structured_prune.json
    python benchmarks/structured_prune.py markdown --results benchmarks/structured_prune.json
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from owled_ros.data.calibration import CalibrationSet, load_calibration
from owled_ros.data.wiki import calibration_windows, eval_windows
from owled_ros.eval.driving_qa import generated_frames
from owled_ros.eval.metrics import paired_difference, rouge_l
from owled_ros.eval.perplexity import window_losses
from owled_ros.machine import machine_info, machine_line
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.lm import load_default_lm
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import make_blocks
from owled_ros.prune.structured import cut_channels, prune_layers, prune_vlm_structured, score_channels, window_losses as taylor_losses
from owled_ros.prune.structured_groups import lm_groups
from owled_ros.prune.structured_importance import taylor_scores
from owled_ros.prune.vlm import capture_windows
from owled_ros.runtime.answer import parse_answer


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def save(self) -> None:
        self.data["machine"] = machine_info(torch.get_num_threads(), " ".join(["python", *sys.argv]))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_ppl(results: Results, sparsities: list[float], layer_sparsities: list[float], importances: list[str],
            calib_n: int, eval_n: int) -> None:
    table = results.data.setdefault("ppl", {})
    lm, tokenizer = load_default_lm()
    windows = calibration_windows(tokenizer, calib_n)
    evals = eval_windows(tokenizer, eval_n)
    table.update(calib_windows=calib_n, eval_windows=eval_n)

    def ppl(model) -> float:
        return float(torch.exp(window_losses(model, evals).double().mean()))

    if "dense" not in table:
        table["dense"] = {"perplexity": ppl(lm), "params": _params(lm)}
        results.save()
    blocks = make_blocks(lm, list(lm.get_decoder().layers))
    captured = capture_windows(lm, windows)
    runs = table.setdefault("runs", {})
    for importance in importances:
        todo = [(s, r) for s in sparsities for r in ("owl", "uniform") if f"channels/{importance}/{r}/{s:g}" not in runs]
        if not todo:
            continue
        groups = [g for b in blocks for g in lm_groups(b)]
        config = PruneConfig("wanda", "owl", 0.0, sparsities[0], structure="channels", importance=importance)
        start = time.perf_counter()
        taylor = taylor_scores(groups, list(windows), taylor_losses(lm), conflict=False) if importance == "taylor" else None
        with torch.no_grad():
            plan = score_channels("llm", blocks, groups, captured, config, taylor)
        score_seconds = time.perf_counter() - start
        for s, ratios in todo:
            trial = copy.deepcopy(lm)
            t_blocks = make_blocks(trial, list(trial.get_decoder().layers))
            t_groups = [g for b in t_blocks for g in lm_groups(b)]
            cfg = PruneConfig("wanda", ratios, 0.0, s, structure="channels", importance=importance)
            with torch.no_grad():
                part = cut_channels(plan, t_blocks, t_groups, s, cfg)
            removed = 1 - sum(layer.weight.numel() for b in t_blocks for layer in b.module.modules() if isinstance(layer, torch.nn.Linear)) / sum(
                layer.weight.numel() for b in blocks for layer in b.module.modules() if isinstance(layer, torch.nn.Linear))
            runs[f"channels/{importance}/{ratios}/{s:g}"] = {
                "structure": "channels", "importance": importance, "ratios": ratios, "sparsity": s, "achieved": removed,
                "params": _params(trial), "perplexity": ppl(trial), "score_seconds": round(score_seconds, 1),
                "kv_groups_removed": sum(v.get("heads", 0) for v in part.removed_units.values())}
            results.save()
            print(f"channels {importance}/{ratios} {s:g}: {runs[f'channels/{importance}/{ratios}/{s:g}']['perplexity']:.2f}", flush=True)
            del trial
    for s in layer_sparsities:
        key = f"layers/{s:g}"
        if key in runs:
            continue
        trial = copy.deepcopy(lm)
        t_blocks = make_blocks(trial, list(trial.get_decoder().layers))
        with torch.no_grad():
            part = prune_layers(trial, t_blocks, captured, s, PruneConfig("wanda", "owl", 0.0, s, structure="layers"))
        runs[key] = {"structure": "layers", "importance": "block influence", "ratios": "-", "sparsity": s,
                     "achieved": len(part.dropped) / len(t_blocks), "params": _params(trial), "perplexity": ppl(trial),
                     "removed_layers": part.dropped}
        results.save()
        print(f"layers {s:g}: {runs[key]['perplexity']:.2f}", flush=True)


@torch.no_grad()
def _answer_side_by_side(models: dict, frames, max_new_tokens: int) -> dict[str, dict]:
    """Every model answers each frame in turn (so load changes on a shared machine hit all alike)."""
    for vlm in models.values():  # warm-up
        vlm.generate([frames[0].image], [frames[0].state], [FRAME_QUESTION], max_new_tokens)
    rec = {k: {"latency": [], "correct": [], "hyps": []} for k in models}
    for f in frames:
        for key, vlm in models.items():
            start = time.perf_counter()
            gen = vlm.generate([f.image], [f.state], [FRAME_QUESTION], max_new_tokens)[0]
            rec[key]["latency"].append((time.perf_counter() - start) * 1e3)
            parsed = parse_answer(gen)
            rec[key]["correct"].append(parsed.action is f.action)
            rec[key]["hyps"].append(parsed.description)
    refs = [f.description for f in frames]
    return {key: {"latency_ms_p50": statistics.median(r["latency"]), "action_accuracy": sum(r["correct"]) / len(frames),
                  "rouge_l": rouge_l(refs, r["hyps"]), "correct": r["correct"], "params": _params(models[key])}
            for key, r in rec.items()}


def run_vlm(results: Results, sparsities: list[float], frames_n: int, calib_n: int, max_new_tokens: int) -> None:
    frames = generated_frames("test", frames_n)
    dense = load_vlm("default")
    calib: CalibrationSet = load_calibration("scenes", calib_n, dense.tokenizer, 512)
    models = {"dense": dense}
    for s in sparsities:
        vlm = copy.deepcopy(dense)
        prune_vlm_structured(vlm, calib, PruneConfig("wanda", "owl", s / 4, s, structure="channels"))
        models[f"channels/activation/owl/{s:g}"] = vlm
    table = {"frames": frames_n, "split": "test", "max_new_tokens": max_new_tokens, "calib_samples": calib_n}
    table.update(_answer_side_by_side(models, frames, max_new_tokens))
    results.data["vlm"] = table
    results.save()
    for key in models:
        print(f"{key}: action {table[key]['action_accuracy']:.3f}, p50 {table[key]['latency_ms_p50']:.0f} ms", flush=True)


def markdown(results: dict) -> str:
    lines = [machine_line(results["machine"]), ""] if "machine" in results else []
    ppl = results.get("ppl")
    if ppl:
        lines += [f"SmolLM2-135M-Instruct, Wikipedia perplexity ({ppl['calib_windows']} calibration windows, "
                  f"{ppl['eval_windows']} evaluation windows; dense {ppl['dense']['perplexity']:.2f}, "
                  f"{ppl['dense']['params'] / 1e6:.1f} M parameters). Sparsity = share of the decoder's Linear weights removed.", "",
                  "| structure | importance | ratios | target | removed | params (M) | perplexity |", "|---|---|---|---|---|---|---|"]
        for r in sorted(ppl["runs"].values(), key=lambda r: (r["structure"], r["sparsity"], r["importance"], r["ratios"])):
            lines.append(f"| {r['structure']} | {r['importance']} | {r['ratios']} | {r['sparsity']:.0%} | {r['achieved']:.1%} | "
                         f"{r['params'] / 1e6:.1f} | {r['perplexity']:.2f} |")
        lines.append("")
    vlm = results.get("vlm")
    if vlm and "dense" in vlm:
        d = vlm["dense"]
        lines += [f"Default driving VLM, {vlm['frames']} generated {vlm['split']} frames, batch 1, greedy, "
                  f"{vlm['max_new_tokens']} new tokens at most, fp32, no recovery.", "",
                  "| model | params (M) | action acc. | paired vs dense | ROUGE-L | p50 frame latency | vs dense |", "|---|---|---|---|---|---|---|"]
        for key, r in vlm.items():
            if not isinstance(r, dict):
                continue
            diff = paired_difference(d["correct"], r["correct"]) if key != "dense" else None  # compared minus dense
            paired = f"{diff.points:+.1f} +- {diff.standard_error:.1f} pts" if diff else "-"
            lines.append(f"| {key} | {r['params'] / 1e6:.1f} | {r['action_accuracy']:.3f} | {paired} | {r['rouge_l']:.3f} | "
                         f"{r['latency_ms_p50']:.0f} ms | {r['latency_ms_p50'] / d['latency_ms_p50']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="all", choices=("all", "ppl", "vlm", "markdown"))
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    p.add_argument("--layer-sparsities", type=float, nargs="+", default=[0.1, 0.2])
    p.add_argument("--importances", nargs="+", default=["activation", "taylor"], choices=("activation", "taylor"))
    p.add_argument("--calib-windows", type=int, default=64)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--vlm-sparsities", type=float, nargs="+", default=[0.2, 0.35, 0.5])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()
    results = Results(args.results)
    if args.what == "markdown":
        print(markdown(results.data))
        return
    torch.manual_seed(0)
    if args.what in ("all", "ppl"):
        run_ppl(results, args.sparsities, args.layer_sparsities, args.importances, args.calib_windows, args.eval_windows)
    if args.what in ("all", "vlm"):
        run_vlm(results, args.vlm_sparsities, args.frames, args.calib_samples, args.max_new_tokens)
    print(markdown(results.data))


if __name__ == "__main__":
    main()
