"""One command for every measured table: run the benchmarks, then rewrite their tables in BENCHMARKS.md.

    make bench                                        # every table (hours on 2 cores), then BENCHMARKS.md
    python benchmarks/regenerate.py --only deploy     # re-measure some tables, rewrite all
    python benchmarks/regenerate.py --tables-only     # rewrite the tables from the JSON results

Each benchmark script (TABLES) takes `--results PATH`, writes JSON that records the machine
(owled_ros.machine.machine_info) and has a `markdown(results) -> str` whose table starts with
the machine line. Scripts run one per core, each with one torch thread, as many at once as
there are cores; each measures the sides it compares alternately in one run, so its ratios
hold. A table sits in BENCHMARKS.md between `<!-- generated:NAME -->` and `<!-- end:NAME -->`;
the prose around it is never touched. Results are written to a temp file and renamed, so an
interrupted or failed run leaves the last good JSON and table.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE / "BENCHMARKS.md"
TABLES = {  # name -> (script, results json)
    "llmcompressor": (HERE / "llmcompressor_compare.py", HERE / "llmcompressor_compare.json"),
    "deploy": (HERE / "deploy_table.py", HERE / "deploy_table.json"),
    "prune_ppl": (HERE / "prune_ppl_table.py", HERE / "prune_ppl.json"),
    "prune_owl_sweep": (HERE / "prune_owl_sweep.py", HERE / "prune_owl_sweep.json"),
    "input_soak": (HERE / "input_soak.py", HERE / "input_soak.json"),
    "stream_vlm": (HERE / "stream_vlm.py", HERE / "stream_vlm.json"),
    "stream_scale": (HERE / "stream_scale.py", HERE / "stream_scale.json"),
    "structured_prune": (HERE / "structured_prune.py", HERE / "structured_prune.json"),
    "fleet_throughput": (HERE / "fleet_throughput.py", HERE / "fleet_throughput.json"),
    "recovery": (HERE / "recovery.py", HERE / "recovery.json"),
    "ood": (HERE / "ood_table.py", HERE / "ood_table.json"),
    "real_roads": (HERE / "real_roads.py", HERE / "real_roads.json"),
    "trim_vocab": (HERE / "trim_vocab.py", HERE / "trim_vocab.json"),
    "closed_loop": (HERE / "closed_loop.py", HERE / "closed_loop.json"),
}


def _module(script: Path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(names: list[str]) -> None:
    """Each comparison pinned to a core of its own with one torch thread, as many at once as
    there are cores; fresh results replace the old ones only when a run succeeds."""
    queue = [(name, *TABLES[name]) for name in names]
    running: dict[int, tuple] = {}
    failed = []
    while queue or running:
        free = [core for core in range(os.cpu_count() or 1) if core not in running]
        while queue and free:
            core = free.pop(0)
            name, script, results = queue.pop(0)
            fresh = results.with_suffix(".new.json")
            fresh.unlink(missing_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cmd = ["taskset", "-c", str(core), sys.executable, str(script), "--results", str(fresh)]
            print(f"regenerate: {name} on core {core}: {' '.join(cmd[3:])}", flush=True)
            running[core] = (name, fresh, results, subprocess.Popen(cmd, env=env))
        pid, status = os.wait()
        core = next(c for c, run in running.items() if run[3].pid == pid)
        name, fresh, results, proc = running.pop(core)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not fresh.is_file():
            failed.append(name)
        else:
            fresh.replace(results)
    if failed:
        sys.exit(f"regenerate: {', '.join(failed)} failed; their tables were left as they were")


def rewrite_tables() -> None:
    text = DOC.read_text()
    for name, (script, results) in TABLES.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"regenerate: {DOC} has no <!-- generated:{name} --> ... <!-- end:{name} --> block")
        table = _module(script).markdown(json.loads(results.read_text()))
        text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(DOC)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables-only", action="store_true", help="do not measure; rewrite the tables from the JSON results")
    p.add_argument("--only", nargs="+", choices=sorted(TABLES), default=None, help="measure only these tables")
    args = p.parse_args()
    if not args.tables_only:
        measure(args.only or list(TABLES))
    rewrite_tables()
    print(f"regenerate: tables rewritten in {DOC}")


if __name__ == "__main__":
    main()
