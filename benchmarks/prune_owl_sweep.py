"""The OWL (M, lambda) sweep on SmolLM2-135M: prune_ppl_table.py's `sweep`, on the shortened protocol.

OWL-Wanda at 70 %, 16 calibration and 16 evaluation windows so that the whole coordinate
search (M at the OWL paper's lambda, then lambda at the best M) fits in one run.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/prune_owl_sweep.py --results benchmarks/prune_owl_sweep.json
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

_TABLE = runpy.run_path(str(Path(__file__).resolve().parent / "prune_ppl_table.py"))
markdown = _TABLE["sweep_markdown"]

if __name__ == "__main__":
    sys.argv[1:1] = ["sweep", "--calib-windows", "16", "--eval-windows", "16"]
    _TABLE["main"]()
