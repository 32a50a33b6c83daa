"""`owled prune`: calibrate, prune (magnitude / Wanda / SparseGPT, uniform or OWL ratios), save.

Targets: --llm-sparsity and --encoder-sparsity default from --sparsity S; the encoder
gets S/4 by default (the more sensitive part, see prune/config.py) and stays dense under
text calibration (wiki has no images) or with --nm (S/4 has no N:M form).
--nm N:M prunes every pruned part in N:M groups along the input dimension (2:4 is what
sparse tensor cores run) with uniform ratios: the reference's OWL + N:M mixes different
N per layer, which no N:M hardware runs, so an explicit --ratios owl with --nm is refused.
An owled model directory (and 'default') or a native LLaVA one is pruned streamed: a
CLIP/SigLIP tower block by block, then the LM one decoder layer at a time, each read from its
safetensors files (prune/stream.py); an EfficientNet encoder and the projector in memory.
--model may also be a plain HF causal LM directory (safetensors): it is calibrated on
--calib wiki and pruned streamed the same way; the output is a sharded HF checkpoint.
The report gives the peak anonymous and
file-backed memory apart (peak_anon_mb, peak_file_mb) beside peak_rss_mb (VmHWM).
--calib-dtype auto runs the calibration forwards in bf16 where the CPU has bf16 dot
products (1.6x faster a block), else fp32; the pruned weights are fp32 either way.
The output directory is built beside --out under a temporary name and renamed at the
end: an interrupted or failed run leaves nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from owled_ros.commands import calib_source
from owled_ros.data.calibration import SOURCES
from owled_ros.prune.config import (CALIB_DTYPES, CALIB_INPUTS, DEFAULT_ENCODER_SHARE, DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M, IMPORTANCES, METHODS,
                                    RATIOS, STRUCTURES)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune the model with OWL / Wanda / SparseGPT and save it")
    p.add_argument("--model", default="default", help="model directory, or 'default', or a plain HF causal LM directory")
    p.add_argument("--structure", choices=STRUCTURES, default="unstructured",
                   help="unstructured: zeros in dense matrices; channels: remove MLP channels, KV groups and MBConv channels; "
                        "layers: remove whole LM decoder layers (docs/structured-pruning.md)")
    p.add_argument("--method", choices=METHODS, default="wanda", help="unstructured pruning method")
    p.add_argument("--importance", choices=IMPORTANCES, default="activation",
                   help="structured unit score: activation (gradient-free), taylor, taylor-conflict (scene vs action tasks)")
    p.add_argument("--ratios", choices=RATIOS, default=None, help="per-block sparsity: uniform, OWL's outlier-weighted, or (--structure channels, --calib scenes) "
                   "weighted by how much each block's cut alone moves the action (default owl; uniform with --nm)")
    p.add_argument("--sparsity", type=float, default=None, help="target sparsity S in [0, 1) (default N/M with --nm)")
    p.add_argument("--encoder-sparsity", type=float, default=None, help=f"encoder target (default {DEFAULT_ENCODER_SHARE:g} * S; 0 for wiki or --nm)")
    p.add_argument("--llm-sparsity", type=float, default=None, help="LM target (default S)")
    p.add_argument("--latency-budget-ms", type=float, default=None, metavar="T",
                   help="--structure channels: measure candidate encoder/LM splits on this CPU and keep the most accurate one "
                        "whose frame latency (batch 1) is at most T ms; it sets the sparsities itself")
    p.add_argument("--latency-frames", type=int, default=12, help="held-out scenes each latency candidate answers")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit of the latency frames (default: the node's)")
    p.add_argument("--nm", default=None, metavar="N:M", help="N:M semi-structured sparsity, e.g. 2:4 (uniform ratios only)")
    p.add_argument("--owl-m", type=float, default=DEFAULT_OWL_M, help="outlier threshold: scores above M * mean")
    p.add_argument("--owl-lambda", type=float, default=DEFAULT_OWL_LAMBDA, help="block sparsities lie in S +- lambda")
    p.add_argument("--calib", type=calib_source, default="scenes", metavar="SOURCE", help=f"calibration data: {', '.join(SOURCES)}")
    p.add_argument("--calib-samples", type=int, default=64, help="images, or text windows for wiki")
    p.add_argument("--seqlen", type=int, default=512, help="text window length (wiki)")
    p.add_argument("--calib-dtype", choices=("auto", *CALIB_DTYPES), default="auto",
                   help="what the calibration forwards compute in (auto: bf16 where the CPU has bf16 dot products)")
    p.add_argument("--calib-inputs", choices=CALIB_INPUTS, default="pruned",
                   help="what each block is calibrated on: the blocks before it as pruned (default) or as dense")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB",
                   help="streamed prunes: calibration activations kept in memory up to MB, the rest in memory-mapped files "
                        "beside --out (default: half of the memory available)")
    p.add_argument("--recover-steps", type=int, default=0, metavar="N",
                   help="then recover by distillation from --model for N steps (owled recover's settings; 0: no recovery)")
    p.add_argument("--out", required=True, help="output model directory (must not exist)")


def _parse_nm(text: str | None) -> tuple[int, int] | None:
    from owled_ros.errors import OwledError

    if text is None:
        return None
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise OwledError(f"--nm must look like N:M (e.g. 2:4), got {text!r}") from None
    if not 0 < n < m:
        raise OwledError(f"--nm {text}: needs 0 < N < M")
    return n, m


def _config(args: argparse.Namespace):
    from owled_ros.errors import OwledError
    from owled_ros.prune.config import PruneConfig, resolve_calib_dtype

    nm = _parse_nm(args.nm)
    for flag in ("sparsity", "encoder_sparsity", "llm_sparsity"):
        value = getattr(args, flag)
        if value is not None and not 0.0 <= value < 1.0:
            raise OwledError(f"--{flag.replace('_', '-')} must lie in [0, 1), got {value}")
    target = args.sparsity if args.sparsity is not None else (nm[0] / nm[1] if nm else None)
    llm = args.llm_sparsity if args.llm_sparsity is not None else target
    if args.latency_budget_ms is not None:
        from owled_ros.prune.structured_latency import ENCODER_SPLITS, LLM_SPLITS

        if args.structure != "channels":
            raise OwledError("--latency-budget-ms chooses a channel split: use it with --structure channels")
        if any(getattr(args, f) is not None for f in ("sparsity", "encoder_sparsity", "llm_sparsity")):
            raise OwledError("--latency-budget-ms picks the encoder and LM sparsities itself: drop --sparsity, --encoder-sparsity, --llm-sparsity")
        if args.ratios == "sensitivity":
            raise OwledError("--latency-budget-ms tries several splits from one set of dense scores; --ratios sensitivity measures one target (use owl or uniform)")
        args.encoder_sparsity, llm = max(ENCODER_SPLITS), max(LLM_SPLITS)  # the largest candidates; the chosen split replaces them
    if llm is None:
        raise OwledError("give --sparsity (or --llm-sparsity, or --nm)")
    no_encoder = nm or args.calib == "wiki" or args.structure == "layers"
    default_encoder = 0.0 if no_encoder else DEFAULT_ENCODER_SHARE * (target if target is not None else llm)
    encoder = args.encoder_sparsity if args.encoder_sparsity is not None else default_encoder
    if args.calib == "wiki" and encoder > 0:
        raise OwledError("--calib wiki has no images to calibrate the encoder; use --encoder-sparsity 0 or an image source")
    if args.calib_samples < 1:
        raise OwledError(f"empty calibration set: --calib-samples must be at least 1, got {args.calib_samples}")
    if args.seqlen < 2:
        raise OwledError(f"--seqlen must be at least 2, got {args.seqlen}")
    try:
        ratios = args.ratios or ("uniform" if nm else "owl")
        return PruneConfig(args.method, ratios, encoder, llm, nm, args.owl_m, args.owl_lambda, resolve_calib_dtype(args.calib_dtype),
                           args.structure, args.importance, args.calib_inputs)
    except ValueError as err:
        raise OwledError(str(err)) from None


def _calibration_record(calib) -> dict:
    return {"source": calib.source, "samples": calib.samples,
            "seqlen": int(calib.windows.shape[1]) if calib.windows is not None else None}


def _print_summary(config, report: dict, out: Path) -> None:
    achieved = report["achieved_sparsity"]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in achieved.items())
    what = config.method if config.structure == "unstructured" else f"{config.structure} {config.importance}"
    print(f"pruned {what}/{report['ratios']} ({config.calib_dtype} calibration): {parts} "
          f"in {report['seconds']:.0f} s, {_memory_text(report)} -> {out}")


def _memory_text(report: dict) -> str:
    text = f"peak {report['peak_rss_mb']:.0f} MB"
    if "peak_anon_mb" in report:
        text += f" (anonymous {report['peak_anon_mb']:.0f} MB, file-backed {report['peak_file_mb']:.0f} MB)"
    return text


def _run_plain_lm(args: argparse.Namespace, path: Path, config, out: Path) -> int:
    import json

    from transformers import AutoTokenizer

    from owled_ros.data.calibration import load_calibration
    from owled_ros.errors import OwledError
    from owled_ros.prune.stream import prune_lm_dir

    if args.calib != "wiki":
        raise OwledError(f"{path}: a plain causal LM has no image input; calibrate it with --calib wiki")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    calib = load_calibration(args.calib, args.calib_samples, tokenizer, args.seqlen)
    if config.structure != "unstructured":
        from owled_ros.prune.structured_save import prune_lm_dir_structured

        report = prune_lm_dir_structured(path, calib.windows, config, out, _calibration_record(calib))
    else:
        with _spill(args, out, calib.windows.numel() * json.loads((path / "config.json").read_text())["hidden_size"] * 4):
            report = prune_lm_dir(path, calib.windows, config, out, _calibration_record(calib))
    _print_summary(config, report, out)
    return 0


def _run_streamed_vlm(args: argparse.Namespace, path: Path, config, out: Path) -> int:
    from owled_ros.data.calibration import load_calibration
    from owled_ros.prune.stream import open_streamed, prune_vlm_dir
    from owled_ros.prune.vlm import activation_bytes

    opened = open_streamed(path)
    calib = load_calibration(args.calib, args.calib_samples, opened.vlm.tokenizer, args.seqlen)
    with _spill(args, out, activation_bytes(opened.vlm, calib)):
        report = prune_vlm_dir(opened, calib, config, out, _calibration_record(calib))
    _print_summary(config, report, out)
    return 0


def _spill(args: argparse.Namespace, out: Path, activation_bytes: int):
    """The --max-memory budget of a streamed prune, spill files in a temporary directory beside --out."""
    from owled_ros.errors import OwledError
    from owled_ros.prune.spill import default_max_memory_mb, spill_beyond

    if args.max_memory is not None and not args.max_memory > 0:
        raise OwledError(f"--max-memory must be a positive number of MB, got {args.max_memory}")
    budget = args.max_memory if args.max_memory is not None else default_max_memory_mb()
    return spill_beyond(budget, out.resolve().parent, activation_bytes)


def _prune_then_recover(args: argparse.Namespace, out: Path) -> int:
    """Prune into the recovery work dir, then distil --model into that pruned model, written to --out.

    An interrupted run keeps the work dir (pruned model + checkpoints): the same command resumes."""
    import json
    import shutil

    from owled_ros.commands.recover import command_line
    from owled_ros.errors import OwledError
    from owled_ros.model.lm import plain_lm_dir
    from owled_ros.train.config import RecoverConfig
    from owled_ros.train.recover import default_work_dir, recover

    if args.recover_steps < 0:
        raise OwledError(f"--recover-steps must be 0 or more, got {args.recover_steps}")
    if plain_lm_dir(args.model) is not None:
        raise OwledError(f"{args.model}: --recover-steps distils a DrivingVLM on driving scenes; prune a plain LM without it")
    work = default_work_dir(out)
    pruned, settings = work / "pruned", work / "prune_args.json"
    mine = json.dumps({k: v for k, v in vars(args).items() if k not in ("out", "recover_steps", "func")}, sort_keys=True, default=str)
    if pruned.exists():
        if not settings.is_file() or settings.read_text() != mine:
            raise OwledError(f"{work}: holds a model pruned with other settings; remove it or prune to another --out")
        print(f"[owled] resuming: the pruned model in {pruned} is kept")
    else:
        run(argparse.Namespace(**{**vars(args), "out": str(pruned), "recover_steps": 0}))
        settings.write_text(mine)
    recover(pruned, out, RecoverConfig(steps=args.recover_steps, teacher=args.model), work, resume=True, command=command_line())
    shutil.rmtree(work)
    return 0


def run(args: argparse.Namespace) -> int:
    import time

    from owled_ros.data.calibration import load_calibration
    from owled_ros.errors import OwledError
    from owled_ros.model.checkpoint import load_vlm, resolve_model_dir
    from owled_ros.model.lm import plain_lm_dir
    from owled_ros.prune.report import build_report, count_zeros
    from owled_ros.prune.save import write_pruned
    from owled_ros.prune.vlm import prune_vlm

    config = _config(args)
    out = Path(args.out)
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    if args.recover_steps:
        return _prune_then_recover(args, out)
    lm_dir = plain_lm_dir(args.model)
    if lm_dir is not None and args.latency_budget_ms is not None:
        raise OwledError(f"{lm_dir}: --latency-budget-ms measures camera frames; it needs a DrivingVLM, not a plain LM")
    if lm_dir is not None:
        return _run_plain_lm(args, lm_dir, config, out)
    from owled_ros.prune.stream import streamable

    if config.structure == "unstructured" and streamable(resolve_model_dir(args.model)):
        return _run_streamed_vlm(args, resolve_model_dir(args.model), config, out)
    start = time.perf_counter()
    vlm = load_vlm(args.model, "fp32")
    if vlm.meta.get("int8"):
        raise OwledError(f"{args.model}: is an int8 deploy model; prune the fp32 model, then run owled deploy")
    calib = load_calibration(args.calib, args.calib_samples, vlm.tokenizer, args.seqlen)
    if config.structure != "unstructured":
        from owled_ros.prune.structured_latency import LatencyBudget
        from owled_ros.prune.structured_save import prune_vlm_to

        try:
            limit = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens is not None else {}
            budget = LatencyBudget(args.latency_budget_ms, args.latency_frames, **limit) if args.latency_budget_ms is not None else None
        except ValueError as err:
            raise OwledError(str(err)) from None
        report = prune_vlm_to(vlm, calib, config, out, _calibration_record(calib), start, budget)
        _print_summary(config, report, out)
        return 0
    parts = prune_vlm(vlm, calib, config)
    blocks = [b for part in parts for b in part.blocks]
    report = build_report(config, parts, _calibration_record(calib), time.perf_counter() - start, count_zeros(blocks))
    write_pruned(vlm, report, out)
    _print_summary(config, report, out)
    return 0
