"""Frame latency when the model is loaded in one thread and run in another (the node until session 13).

torch's OpenMP pool belongs to the calling thread. Loading in the main thread and generating in
a worker made two pools on two cores; libgomp then waits passively and every small parallel
region (fbgemm's batch-1 int8 linears above all) pays a wake-up. Three ways, one process each:
load and run in the main thread; load in the main thread, run in a worker; load and run in one
worker (what owled_node does now).

    source scripts/env.sh
    python benchmarks/thread_pools.py --model runs/s15/w10-int8-d03 --frames 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

WAYS = ("main thread", "loaded in main, run in a worker", "loaded and run in one worker")


def measure(model: str, way: str, frames: int) -> float:
    from owled_ros.eval.driving_qa import generated_frames
    from owled_ros.model.checkpoint import load_vlm
    from owled_ros.model.prompt import FRAME_QUESTION

    scenes = generated_frames("test", frames)
    times: list[float] = []

    def run(vlm) -> None:
        vlm.generate([scenes[0].image], [scenes[0].state], [FRAME_QUESTION], 64)  # warm-up
        for f in scenes:
            start = time.perf_counter()
            vlm.generate([f.image], [f.state], [FRAME_QUESTION], 64)
            times.append(time.perf_counter() - start)

    if way == WAYS[2]:
        worker = threading.Thread(target=lambda: run(load_vlm(model)))
    else:
        vlm = load_vlm(model)
        if way == WAYS[0]:
            run(vlm)
            return statistics.median(times) * 1e3
        worker = threading.Thread(target=run, args=(vlm,))
    worker.start()
    worker.join()
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--way", choices=WAYS, default=None, help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.way:
        print(measure(args.model, args.way, args.frames))
        return
    result = {"model": args.model, "frames": args.frames}
    for way in WAYS:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--frames", str(args.frames), "--way", way],
                             capture_output=True, text=True, check=True)
        result[f"{way}: p50 ms"] = round(float(out.stdout.strip().splitlines()[-1]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
