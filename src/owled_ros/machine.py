"""Who measured a number: every benchmark table carries the CPU model, threads and date.

Speed on this project's vehicle CPUs differs by CPU type (an AMD EPYC without AMX and an
Intel Xeon with AMX give different int8 ratios), so no figure is published without it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import resource
from collections.abc import Callable
from pathlib import Path

from owled_ros.cpu import cpu_flags

_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    VmHWM of /proc/self/status where there is one: ru_maxrss also counts the parent's memory at
    fork (Linux folds the forked address space's high-water mark into it at exec), so a prune
    started from a big Python process would report that process's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info(threads: int | None = None, command: str | None = None) -> dict:
    """A dict to store beside measured numbers (JSON) and print above their table."""
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_features": [f for f in _FEATURES if f in flags],
        "cores": os.cpu_count(),
        "threads": threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        "date": _dt.date.today().isoformat(),
        "command": command or "",
    }


def machine_line(info: dict) -> str:
    """One Markdown line naming the machine a table was measured on."""
    cpu = info.get("cpu", "?")
    if "cpu_features" in info:  # absent where a result predates recording them
        cpu += f" ({', '.join(info['cpu_features']) or 'none of AVX2/AVX-512/AMX'})"
    line = f"Measured {info.get('date', '?')} on {cpu}, {info.get('threads', '?')} thread(s)"
    if info.get("command"):
        line += f"; command: `{info['command']}`"
    return line + "."


def benchmark_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], None], markdown: Callable[[dict], str]) -> None:
    """A benchmark's command line: measure and write --results (the default), or `markdown`: print
    the table of --results (what benchmarks/regenerate.py puts in BENCHMARKS.md)."""
    parser.add_argument("mode", nargs="?", choices=("run", "markdown"), default="run")
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    if args.mode == "markdown":
        print(markdown(json.loads(args.results.read_text())))
    else:
        run(args)
