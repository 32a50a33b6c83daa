"""A 7B-wide LLaVA pruned streamed: peak memory and time against LM depth.

The model is built from a config with random bf16 weights (nothing is downloaded): a vision
tower at CLIP ViT-L/14-336 width (hidden 1024, MLP 4096, 24 layers, 577 tokens), LLaVA-1.5's
projector, and an LM at LLaMA-7B width (hidden 4096, MLP 11008, 32 heads) with 2, 4 and 8
decoder layers; the vocabulary is the default tokenizer's (49152; LLaMA's is 32000). Each depth
is pruned by `owled prune --model DIR` (the streamed LLaVA path, OWL-Wanda 50 %, the encoder at
the default S/4) on real dashcam frames, in a fresh process, and the report's time and sampled
anonymous / file-backed peaks are recorded. A line fitted through the three depths gives the
cost of one more LM layer, and docs/streaming.md checks its memory formula against it.

    source scripts/env.sh
    python benchmarks/stream_scale.py --results benchmarks/stream_scale.json     # ~15 min on 2 cores, 14 GB of disk
    python benchmarks/stream_scale.py markdown --results benchmarks/stream_scale.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "stream_scale"
DEPTHS = (2, 4, 8)
SAMPLES, SPARSITY = 8, 0.5
PLOT = ROOT / "benchmarks" / "stream_scale.png"
VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
              projection_dim=768)
TEXT = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)


def build(depth: int, out: Path) -> None:
    """A LLaVA directory with random bf16 weights, one shard per block, written without the model in memory."""
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from owled_ros.model.lm import default_lm_dir
    from owled_ros.model.weight_files import INDEX_NAME

    tokenizer = AutoTokenizer.from_pretrained(default_lm_dir())
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION),
                         text_config=LlamaConfig(vocab_size=len(tokenizer), num_hidden_layers=depth, **TEXT),
                         image_token_index=len(tokenizer) - 1)
    with init_empty_weights():
        shapes = {n: p.shape for n, p in LlavaForConditionalGeneration(config).state_dict().items()}
    groups: dict[str, list[str]] = {}
    for name in shapes:
        parts = name.split(".")
        key = ".".join(parts[: parts.index("layers") + 2]) if "layers" in parts else "rest"
        groups.setdefault(key, []).append(name)
    out.mkdir(parents=True)
    gen = torch.Generator().manual_seed(depth)
    weight_map = {}
    for i, (key, names) in enumerate(groups.items()):
        tensors = {}
        for n in names:
            norm = "norm" in n and n.endswith("weight")
            tensors[n] = torch.ones(shapes[n], dtype=torch.bfloat16) if norm else (torch.randn(shapes[n], generator=gen) * 0.02).bfloat16()
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update((n, shard) for n in names)
    (out / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def job(model: Path, out: Path) -> None:
    """One streamed prune in this fresh process (what `owled prune --model DIR` runs); prints the report's figures."""
    from owled_ros.data.calibration import load_calibration
    from owled_ros.prune.config import DEFAULT_ENCODER_SHARE, PruneConfig, resolve_calib_dtype
    from owled_ros.prune.stream import open_streamed, prune_vlm_dir

    config = PruneConfig("wanda", "owl", DEFAULT_ENCODER_SHARE * SPARSITY, SPARSITY, calib_dtype=resolve_calib_dtype("auto"))
    opened = open_streamed(model)
    calib = load_calibration("dashcam", SAMPLES, opened.vlm.tokenizer, 512)
    report = prune_vlm_dir(opened, calib, config, out, {"source": "dashcam", "samples": SAMPLES})
    print(json.dumps({k: report[k] for k in ("seconds", "peak_rss_mb", "peak_anon_mb", "peak_file_mb", "achieved_sparsity")}
                     | {"llm_layers": len(report["blocks"]["llm"]), "encoder_layers": len(report["blocks"]["encoder"]),
                        "calib_dtype": config.calib_dtype}))


def _slope(runs: list[dict], key: str) -> float:
    """Least-squares slope of `key` against LM depth."""
    xs, ys = [r["lm_layers"] for r in runs], [r[key] for r in runs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def at_32_layers(runs: list[dict]) -> float:
    """Peak anonymous MB expected of a 32-layer LM: the largest peak measured, plus the fitted growth per layer
    up to 32 where it grows (a negative slope is noise: nothing held in memory shrinks with depth)."""
    deepest = max(r["lm_layers"] for r in runs)
    return max(r["peak_anon_mb"] for r in runs) + max(0.0, _slope(runs, "peak_anon_mb")) * (32 - deepest)


def run(args: argparse.Namespace) -> None:
    from owled_ros.machine import machine_info

    results = {"machine": machine_info(command=shlex.join(["python", *sys.argv])), "samples": SAMPLES, "runs": []}
    for depth in DEPTHS:
        model, out = WORK / f"llava-7bw-{depth}L", WORK / f"pruned-{depth}L"
        shutil.rmtree(model, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, __file__, "build", str(depth), str(model)], check=True)
        size_gb = sum(f.stat().st_size for f in model.glob("*.safetensors")) / 1e9
        done = subprocess.run([sys.executable, __file__, "job", str(model), str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"stream_scale: the {depth}-layer prune failed:\n{done.stderr[-3000:]}")
        record = {"lm_layers": depth, "model_gb": round(size_gb, 2), **json.loads(done.stdout.strip().splitlines()[-1])}
        results["runs"].append(record)
        print(record, flush=True)
        shutil.rmtree(model)
        shutil.rmtree(out)
    _plot(results)
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.results)


def _plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    xs = [r["lm_layers"] for r in runs]
    fig, (mem, sec) = plt.subplots(1, 2, figsize=(9, 3.4))
    mem.plot(xs, [r["peak_anon_mb"] / 1024 for r in runs], "o-", label="peak anonymous")
    mem.plot(xs, [r["peak_file_mb"] / 1024 for r in runs], "s--", label="peak file-backed")
    mem.plot(xs, [r["model_gb"] / 1.0737 for r in runs], ":", color="grey", label="model on disk (bf16)")
    mem.set(xlabel="LM decoder layers (7B width)", ylabel="GiB", title="memory of a streamed prune", ylim=(0, None))
    mem.legend(fontsize=8)
    sec.plot(xs, [r["seconds"] / 60 for r in runs], "o-")
    sec.set(xlabel="LM decoder layers (7B width)", ylabel="minutes", title="prune time (CLIP-L tower included)")
    fig.suptitle(results["machine"].get("cpu", ""), fontsize=8)
    fig.tight_layout()
    tmp = PLOT.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(PLOT)


def markdown(results: dict) -> str:
    from owled_ros.machine import machine_line

    lines = [
        machine_line(results["machine"]),
        "",
        f"OWL-Wanda {SPARSITY:.0%} (encoder {SPARSITY / 4:.1%}), {results['samples']} dashcam frames, streamed LLaVA path, "
        "a fresh process per depth.",
        "",
        "| LM layers | model on disk (GB, bf16) | prune s | peak anonymous (MB) | peak file-backed (MB) | VmHWM (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(f"| {r['lm_layers']} | {r['model_gb']:.1f} | {r['seconds']:.0f} | {r['peak_anon_mb']:.0f} | {r['peak_file_mb']:.0f} "
                     f"| {r['peak_rss_mb']:.0f} |")
    runs = results["runs"]
    lines += ["", f"Fitted against depth: {_slope(runs, 'seconds'):.1f} s and {_slope(runs, 'peak_anon_mb'):+.0f} MB of peak anonymous "
              f"memory per LM layer. A 32-layer LM (7B): at most {at_32_layers(runs) / 1024:.2f} GiB anonymous peak (the largest measured, "
              "plus any growth per layer). Plot: `benchmarks/stream_scale.png`."]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("build", "job"):
        what, a, b = sys.argv[1:4]
        build(int(a), Path(b)) if what == "build" else job(Path(a), Path(b))
        return
    from owled_ros.machine import benchmark_main

    benchmark_main(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter), run, markdown)


if __name__ == "__main__":
    main()
