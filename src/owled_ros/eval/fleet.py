"""Fleet evaluation: many recorded drives, one row per bag and fleet totals.

Each bag goes through bag_eval's offline path (the node's decoders, input checks, pairing and
stamp guard) on a worker that loaded the model once, or with `online` through bag_eval's
real-node path (one node process per worker, each worker on its own ROS domain); Ray places
the workers (fleet_ray.py).
This module holds what needs no Ray: finding the bags, where each bag's result lives, which
results a rerun may keep (--resume), and the fleet totals and their report.

Layout of --out:
    bags/<name>-<hash>/report.json, report.md   one scored bag, written whole or not at all
    fleet.json, fleet.md, fleet.png              every bag's row, the failed bags, the totals
A bag that cannot be scored (missing, corrupt, a worker that died twice on it) is a row with
its error; it never stops the other bags.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from owled_ros.errors import OwledError
from owled_ros.eval.bag_eval import REPORT_JSON, REPORT_MD, EvalConfig, report_markdown
from owled_ros.fsutil import staged_dir, write_text_atomic

BAGS_DIR = "bags"
FLEET_JSON, FLEET_MD, FLEET_PLOT = "fleet.json", "fleet.md", "fleet.png"
BAG_METADATA = "metadata.yaml"
SUMMED = ("frames_in", "frames_published", "frames_dropped", "out_of_order", "gaps", "frames_missing_in_gaps", "frames_scored")
"""Per-bag counts whose fleet total is their sum."""


@dataclass(frozen=True)
class FleetConfig:
    eval: EvalConfig
    workers: int = 1
    address: str | None = None
    """None: a local Ray started for this run; else ray.init's address ("auto", "HOST:PORT", "ray://HOST:PORT")."""
    camera_topic: str | None = None
    """None: each bag's only camera topic (as `owled bag eval`)."""
    state_topic: str | None = None
    online: bool = False
    """Each worker replays its bags into a real node process (bag_eval.run_online) instead of the in-process pipeline."""

    @property
    def mode(self) -> str:
        return "online" if self.online else "offline"


# ---- which bags -------------------------------------------------------------------------------
def discover_bags(paths: Iterable[Path]) -> list[Path]:
    """The bags named or found under `paths`, each once, in a stable order.

    A rosbag2 directory (it holds metadata.yaml) is a bag. So is a path that does not exist
    or is not a directory: it is scored and fails with its error, rather than silently
    skipped. Any other directory is searched for rosbag2 directories at any depth.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir() or (path / BAG_METADATA).is_file():
            found.append(path)
        else:
            found += sorted(meta.parent for meta in path.rglob(BAG_METADATA))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise OwledError(f"no bags found in {', '.join(map(str, paths))} (a rosbag2 bag is a directory holding {BAG_METADATA})")
    return unique


def bag_key(bag: Path) -> str:
    """The bag's directory name under bags/: its name and a hash of its absolute path (two drives may share a name)."""
    return f"{bag.name}-{hashlib.sha1(str(Path(bag).resolve()).encode()).hexdigest()[:8]}"


def bag_dir(out: Path, bag: Path) -> Path:
    return Path(out) / BAGS_DIR / bag_key(bag)


def write_bag_result(out: Path, report: dict) -> None:
    """report.json and report.md of one bag, staged and renamed together."""
    with staged_dir(bag_dir(out, Path(report["bag"])), replace=True) as staged:
        staged.mkdir()
        write_text_atomic(staged / REPORT_JSON, json.dumps(report, indent=1) + "\n")
        write_text_atomic(staged / REPORT_MD, report_markdown(report))


def kept_result(out: Path, bag: Path, config: EvalConfig, mode: str) -> dict | None:
    """The bag's earlier report if it was scored in `mode` by the same model with the same settings (for --resume)."""
    path = bag_dir(out, bag) / REPORT_JSON
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = (report.get("bag"), report.get("mode"), report.get("model"), report.get("max_new_tokens")) == (
        str(bag), mode, config.model, config.max_new_tokens,
    )
    return report if same else None


# ---- one bag's outcome and the fleet totals -------------------------------------------------
@dataclass(frozen=True)
class BagOutcome:
    bag: Path
    report: dict | None
    """bag_eval.score()'s report (frames included); None when the bag failed."""
    error: str | None = None
    resumed: bool = False
    """Kept from an earlier run (--resume) rather than scored now."""


def wilson_ci95(correct: int, total: int) -> tuple[float, float] | None:
    """95 % Wilson score interval of a share (scipy), which stays inside [0, 1] for small counts."""
    from scipy.stats import binomtest

    if total == 0:
        return None
    ci = binomtest(correct, total).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def fleet_totals(reports: Sequence[dict]) -> dict:
    """Totals over every frame of the scored bags: sums of counts, and accuracy, ROUGE-L and
    latency percentiles pooled over frames (so a long drive weighs more than a short one)."""
    frames = [f for r in reports for f in r["frames"]]
    scored = [f for f in frames if f["correct"] is not None]
    correct = sum(bool(f["correct"]) for f in scored)
    ci = wilson_ci95(correct, len(scored))
    latency = _percentiles([f["latency_ms"] for f in frames if f["latency_ms"] is not None])
    model_latency = _percentiles([f["model_latency_ms"] for f in frames if f["model_latency_ms"] is not None])
    totals = {k: sum(r[k] for r in reports) for k in SUMMED}
    rejected = sum((Counter(r["inputs_rejected"] or {}) for r in reports), Counter())
    return totals | {
        "inputs_rejected": dict(sorted(rejected.items())),
        "bags_scored": len(reports),
        "frames_correct": correct,
        "action_accuracy": correct / len(scored) if scored else None,
        "action_accuracy_ci95": list(ci) if ci else None,
        "rouge_l": float(np.mean([f["rouge_l"] for f in scored])) if scored else None,
        "latency_p50_ms": latency[0], "latency_p95_ms": latency[1], "latency_p99_ms": latency[2],
        "model_latency_p50_ms": model_latency[0], "model_latency_p95_ms": model_latency[1], "model_latency_p99_ms": model_latency[2],
        "bag_seconds": sum(r["wall_s"] for r in reports),
    }


def bag_row(outcome: BagOutcome) -> dict:
    """One bag of the fleet report: its summary (no frames) or its error."""
    row = {"bag": str(outcome.bag), "key": bag_key(outcome.bag), "status": "failed" if outcome.report is None else "scored"}
    if outcome.report is None:
        return row | {"error": outcome.error}
    summary = {k: v for k, v in outcome.report.items() if k not in ("frames", "bag", "bag_info")}
    correct = sum(bool(f["correct"]) for f in outcome.report["frames"] if f["correct"] is not None)
    ci = wilson_ci95(correct, outcome.report["frames_scored"])
    return row | summary | {"action_accuracy_ci95": list(ci) if ci else None, "resumed": outcome.resumed}


def fleet_report(outcomes: Sequence[BagOutcome], config: EvalConfig, mode: str, run: dict) -> dict:
    """fleet.json: the run (workers, where, times, frames per second), the totals, one row per bag.

    frames_per_s counts the frames of the bags scored in this run over score_s, from the moment
    every worker had its model loaded; frames_per_s_wall over the whole run (Ray start and
    model loading included).
    """
    scored = [o.report for o in outcomes if o.report is not None]
    fresh = [o.report for o in outcomes if o.report is not None and not o.resumed]
    fresh_frames = sum(r["frames_published"] for r in fresh)
    return {
        "model": config.model, "mode": mode, "max_new_tokens": config.max_new_tokens, "max_state_age_s": config.max_state_age_s,
        "bags": len(outcomes), "bags_scored": len(scored), "bags_failed": len(outcomes) - len(scored),
        "bags_resumed": sum(o.resumed for o in outcomes),
        **run,
        "frames_scored_now": fresh_frames,
        "frames_per_s": fresh_frames / run["score_s"] if run["score_s"] else None,
        "frames_per_s_wall": fresh_frames / run["wall_s"] if run["wall_s"] else None,
        "totals": fleet_totals(scored),
        "rows": [bag_row(o) for o in outcomes],
    }


# ---- the fleet report ------------------------------------------------------------------------
def _fmt(value: object, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}"


def _rejected(by_reason: dict[str, int] | None) -> str:
    """"3 (corrupt_image 2, stamp_future 1)": inputs the gate rejected, by reason."""
    if not by_reason:
        return "0"
    return f"{sum(by_reason.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) + ")"


def _named(row: dict) -> str:
    """A failed bag's error, prefixed with the bag unless the error already names it."""
    return row["error"] if row["error"].startswith(row["bag"]) else f"{row['bag']}: {row['error']}"


def fleet_markdown(report: dict) -> str:
    t = report["totals"]
    lines = [
        f"# Fleet evaluation: {report['bags_scored']} of {report['bags']} bags scored ({report['bags_failed']} failed)",
        "",
        f"Model `{report['model']}`, {report['mode']}, {report['workers']} worker(s) on {report['where']}: {report['frames_scored_now']} frames scored "
        f"in this run, {_fmt(report['frames_per_s'], '.2f')} frames/s once the workers were loaded "
        f"({_fmt(report['frames_per_s_wall'], '.2f')} over the whole {report['wall_s']:.1f} s, Ray start and model loading included).",
        "",
        "| bag | status | frames | published | dropped | rejected inputs | action acc. | 95 % CI | ROUGE-L | latency p50 / p95 ms | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        name = Path(r["bag"]).name
        if r["status"] == "failed":
            lines.append(f"| {name} | failed | | | | | | | | | {_named(r).replace('|', '/')} |")
            continue
        lines.append(
            f"| {name} | scored | {r['frames_in']} | {r['frames_published']} | {r['frames_dropped']} | {_rejected(r['inputs_rejected'])} "
            f"| {_fmt(r['action_accuracy'], '.3f')} "
            f"| {_ci(r['action_accuracy_ci95'])} | {_fmt(r['rouge_l'], '.3f')} "
            f"| {_fmt(r['latency_p50_ms'], '.0f')} / {_fmt(r['latency_p95_ms'], '.0f')} | {'resumed' if r['resumed'] else ''} |"
        )
    lines.append(
        f"| **fleet** | {t['bags_scored']} scored | {t['frames_in']} | {t['frames_published']} | {t['frames_dropped']} "
        f"| {_rejected(t['inputs_rejected'])} | {_fmt(t['action_accuracy'], '.3f')} | {_ci(t['action_accuracy_ci95'])} | {_fmt(t['rouge_l'], '.3f')} "
        f"| {_fmt(t['latency_p50_ms'], '.0f')} / {_fmt(t['latency_p95_ms'], '.0f')} | p99 {_fmt(t['latency_p99_ms'], '.0f')} ms |"
    )
    return "\n".join(lines) + "\n"


def plot_fleet(report: dict, path: Path) -> None:
    """Action accuracy per bag with its 95 % interval (the fleet's as a band), and latency p50/p95 per bag; failed bags marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, t = report["rows"], report["totals"]
    x = np.arange(len(rows))
    names = [Path(r["bag"]).name + (" (failed)" if r["status"] == "failed" else "") for r in rows]
    ok = [i for i, r in enumerate(rows) if r["status"] == "scored" and r["action_accuracy"] is not None]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.5 * len(rows) + 3), 6), sharex=True)
    if ok:
        acc = np.array([rows[i]["action_accuracy"] for i in ok])
        low = np.array([rows[i]["action_accuracy_ci95"][0] for i in ok])
        high = np.array([rows[i]["action_accuracy_ci95"][1] for i in ok])
        top.errorbar(x[ok], acc, yerr=[acc - low, high - acc], fmt="o", capsize=3, label="bag (95 % CI)")
    if t["action_accuracy_ci95"]:
        top.axhspan(*t["action_accuracy_ci95"], color="tab:green", alpha=0.2, label=f"fleet {t['action_accuracy']:.3f} (95 % CI)")
    for i, r in enumerate(rows):
        if r["status"] == "failed":
            top.plot(i, 0.0, "x", color="tab:red", markersize=10)
    top.set_ylim(-0.05, 1.05)
    top.set_ylabel("action accuracy")
    if ok:
        top.legend(loc="lower right")
    top.set_title(f"{report['bags_scored']} of {report['bags']} bags scored, {report['workers']} worker(s), model {Path(report['model']).name}")
    lat = [i for i, r in enumerate(rows) if r["status"] == "scored" and r["latency_p50_ms"] is not None]
    if lat:
        bottom.plot(x[lat], [rows[i]["latency_p50_ms"] for i in lat], "o", label="p50")
        bottom.plot(x[lat], [rows[i]["latency_p95_ms"] for i in lat], "v", label="p95")
        bottom.legend(loc="upper right")
    bottom.set_ylabel("decode + model latency (ms)")
    bottom.set_xticks(x, names, rotation=30, ha="right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_fleet_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / FLEET_JSON, json.dumps(report, indent=1) + "\n")
    write_text_atomic(out / FLEET_MD, fleet_markdown(report))
    plot_fleet(report, out / FLEET_PLOT)


def summary_line(report: dict) -> str:
    t = report["totals"]
    acc = "n/a" if t["action_accuracy"] is None else f"{t['action_accuracy']:.3f} ({_ci(t['action_accuracy_ci95'])})"
    failed = [r for r in report["rows"] if r["status"] == "failed"]
    line = (
        f"fleet: {report['bags_scored']}/{report['bags']} bags scored ({report['bags_resumed']} resumed), {t['frames_in']} frames, "
        f"action accuracy {acc}, ROUGE-L {_fmt(t['rouge_l'], '.3f')}, latency p50 {_fmt(t['latency_p50_ms'], '.0f')} ms, "
        f"{report['workers']} worker(s) {report['wall_s']:.1f} s, {_fmt(report['frames_per_s'], '.2f')} frames/s"
    )
    return line + "".join(f"\n  failed: {_named(r)}" for r in failed)


# ---- the whole run ---------------------------------------------------------------------------
def evaluate_fleet(paths: Sequence[Path], config: FleetConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Find the bags, keep what --resume may keep, score the rest on Ray, write every result and the fleet report."""
    from owled_ros.eval.fleet_ray import run_fleet

    bags = discover_bags(paths)
    outcomes: dict[Path, BagOutcome] = {}
    for bag in bags if resume else ():
        kept = kept_result(out, bag, config.eval, config.mode)
        if kept is not None:
            outcomes[bag] = BagOutcome(bag, kept, resumed=True)

    def on_result(bag: Path, report: dict | None, error: str | None) -> None:
        if report is not None:
            write_bag_result(out, report)
        outcomes[bag] = BagOutcome(bag, report, error)

    run = run_fleet([b for b in bags if b not in outcomes], config, on_result, progress)
    report = fleet_report([outcomes[b] for b in bags], config.eval, config.mode, run)
    write_fleet_report(report, out)
    return report
