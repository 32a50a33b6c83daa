"""One command for the measured comparisons: run them, then rewrite their tables in BENCHMARKS.md.

    make bench                                   # both comparisons, then the tables (about 50 min)
    python benchmarks/regenerate.py --tables-only   # rewrite the tables from the JSON results

The two comparisons run at the same time, each pinned to its own core with one torch
thread, and each measures its own sides alternately in one run, so their ratios hold:
- against llm-compressor: benchmarks/llmcompressor_compare.py (needs .venv-llmcompressor,
  which scripts/bench.sh makes);
- the deploy path: benchmarks/deploy_table.py.
A table sits in BENCHMARKS.md between `<!-- generated:NAME -->` and `<!-- end:NAME -->`;
the rest of the file is prose and is never touched. Results are written to a temp file and
renamed, so an interrupted run leaves the last good JSON and tables.
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
}


def _module(script: Path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure() -> None:
    """Both comparisons at once, one core each; fresh results replace the old ones when done."""
    procs = []
    for core, (name, (script, results)) in enumerate(TABLES.items()):
        fresh = results.with_suffix(".new.json")
        fresh.unlink(missing_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = ["taskset", "-c", str(core % os.cpu_count()), sys.executable, str(script), "--results", str(fresh)]
        procs.append((name, fresh, results, subprocess.Popen(cmd, env=env)))
    failed = []
    for name, fresh, results, proc in procs:
        if proc.wait() != 0 or not fresh.is_file():
            failed.append(name)
        else:
            fresh.replace(results)
    if failed:
        sys.exit(f"regenerate: {', '.join(failed)} failed; BENCHMARKS.md left as it was")


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
    args = p.parse_args()
    if not args.tables_only:
        measure()
    rewrite_tables()
    print(f"regenerate: tables rewritten in {DOC}")


if __name__ == "__main__":
    main()
