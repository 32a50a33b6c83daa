"""The default VLM after pruning: action accuracy and description ROUGE-L versus what is pruned.

Each configuration runs the real CLI, as a user would: `owled prune` (default model, the
given method / ratios / targets / calibration) and then `owled eval driving-qa --frame-only`
on the first --frames test scenes. Results go to --results as they finish, so an
interrupted run resumes where it stopped.

    source scripts/env.sh
    taskset -c 0 python benchmarks/prune_vlm_table.py --frames 24 --calib-samples 16 --results benchmarks/prune_vlm.json
    python benchmarks/prune_vlm_table.py --markdown --results benchmarks/prune_vlm.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WORK = Path("runs/prune_vlm")


@dataclass(frozen=True)
class Case:
    part: str  # "llm", "encoder" or "both"
    sparsity: float
    ratios: str = "owl"
    method: str = "wanda"
    calib: str = "scenes"

    @property
    def key(self) -> str:
        return f"{self.part}/{self.method}/{self.ratios}/{self.calib}/{self.sparsity:g}"

    def prune_args(self) -> list[str]:
        llm = self.sparsity if self.part in ("llm", "both") else 0.0
        encoder = {"llm": 0.0, "encoder": self.sparsity, "both": None}[self.part]
        args = ["--method", self.method, "--ratios", self.ratios, "--calib", self.calib, "--llm-sparsity", str(llm)]
        if encoder is not None:
            args += ["--encoder-sparsity", str(encoder)]
        else:  # the recommended split: the encoder gets the default share of S
            args += ["--sparsity", str(self.sparsity)]
        return args


def cases() -> list[Case]:
    """Most telling first (a run may be stopped early): 0.3 where the model still works, then the issue's 0.5 / 0.7 / 0.6."""
    out = []
    for s in (0.3, 0.5, 0.7, 0.6):
        for part in ("llm", "encoder", "both"):
            for ratios in ("uniform", "owl"):
                out.append(Case(part, s, ratios))
        out.append(Case("llm", s, "owl", calib="wiki"))
        out.append(Case("llm", s, "owl", method="sparsegpt"))
    return out


def _run(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if "eval" in cmd else {}


def evaluate(model: str, frames: int) -> dict:
    return _run(["owled", "eval", "driving-qa", "--model", model, "--frame-only", "--limit", str(frames), "--split", "test"])


def run_case(case: Case, frames: int, calib_samples: int) -> dict:
    model = WORK / case.key.replace("/", "_")
    shutil.rmtree(model, ignore_errors=True)
    start = time.perf_counter()
    _run(["owled", "prune", "--model", "default", *case.prune_args(), "--calib-samples", str(calib_samples), "--out", str(model)])
    prune_s = time.perf_counter() - start
    report = json.loads((model / "prune_report.json").read_text())
    metrics = evaluate(str(model), frames)
    shutil.rmtree(model)
    return {**asdict(case), "achieved": report["achieved_sparsity"], "prune_seconds": round(prune_s, 1), **metrics}


def markdown(results: dict) -> str:
    lines = [
        "| pruned | method | ratios | calib | target S | encoder / llm achieved | action_accuracy | rouge_l |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense = results.get("dense")
    if dense:
        lines.append(f"| nothing (dense) | | | | 0 | 0 / 0 | {dense['action_accuracy']:.3f} | {dense['rouge_l']:.3f} |")
    rows = [r for k, r in results.items() if k != "dense"]
    rows.sort(key=lambda r: (r["sparsity"], r["part"], r["method"], r["calib"], r["ratios"]))
    for r in rows:
        a = r["achieved"]
        lines.append(
            f"| {r['part']} | {r['method']} | {r['ratios']} | {r['calib']} | {r['sparsity']:g} | "
            f"{a['encoder']:.3f} / {a['llm']:.3f} | {r['action_accuracy']:.3f} | {r['rouge_l']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("benchmarks/prune_vlm.json"))
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--markdown", action="store_true", help="print the table of --results and stop")
    args = p.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    if args.markdown:
        print(markdown(results))
        return
    WORK.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = args.results.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.results)

    if "dense" not in results:
        results["dense"] = evaluate("default", args.frames)
        save()
    for case in cases():
        if case.key in results:
            continue
        results[case.key] = run_case(case, args.frames, args.calib_samples)
        print(case.key, results[case.key]["action_accuracy"], results[case.key]["rouge_l"], flush=True)
        save()


if __name__ == "__main__":
    main()
