"""Turn an fp32 (pruned) DrivingVLM into the deploy model: calibrate, smooth, write the int8
directory, build and check the backends, keep the fastest that answers like fp32."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from owled_ros.data.calibration import CalibrationSet, load_calibration
from owled_ros.deploy.acceptance import FP32, GateConfig, answer_round_robin, judge, reference
from owled_ros.deploy.backends import BACKENDS, build, unavailable
from owled_ros.deploy.config import DeployConfig
from owled_ros.deploy.export import export_onnx
from owled_ros.deploy.runner import BACKEND_FILE, EMBED_FILE, RUNTIME_DIR, open_runtime
from owled_ros.deploy.smoothquant import input_absmax, smooth_lm
from owled_ros.errors import OwledError
from owled_ros.fsutil import save_safetensors_atomic, staged_dir, write_text_atomic
from owled_ros.machine import machine_info
from owled_ros.model.checkpoint import carried_files, load_vlm, resolve_model_dir, save_vlm
from owled_ros.model.int8 import pack
from owled_ros.model.vlm import DrivingVLM


def smooth_for_int8(vlm: DrivingVLM, calib: CalibrationSet, config: DeployConfig) -> dict:
    """Smooth the LM in place (still fp32); the dict is what `save_vlm(int8=...)` records."""
    worst = smooth_lm(vlm.lm, input_absmax(vlm, calib), config.alpha, config.down_alpha)
    return {
        **asdict(config),
        "scheme": "SmoothQuant + int8 per-channel weights; int8 activations scaled per token in the prefill, per call in decode steps",
        "max_activation_outlier_ratio": round(worst, 1),
    }


def deploy(spec: str, out: Path, config: DeployConfig, threads: int, log: Callable[[str], None]) -> dict:
    """Smooth, write the int8 model directory, and with it every backend asked for that passes the
    gate; the fastest accepted one is recorded in `runtime/backend.json` (auto: all installed)."""
    vlm = load_vlm(spec, "fp32")
    if vlm.meta.get("int8"):
        raise OwledError(f"{spec}: is already an int8 deploy model; deploy the fp32 model it came from")
    candidates = BACKENDS if config.backend == "auto" else (config.backend,)
    for name in candidates:
        reason = unavailable(name)
        if reason is not None and config.backend != "auto":
            raise OwledError(reason)
    calib = load_calibration(config.calib, config.calib_samples, vlm.tokenizer, seqlen=512)
    frames = list(calib.visual[: config.gate_frames]) if calib.has_images else list(load_calibration("scenes", config.gate_frames, vlm.tokenizer, 512).visual)
    info = smooth_for_int8(vlm, calib, config)  # exact in fp32: the smoothed model is the fp32 reference
    verdicts, notes, builds = [], [], {}
    with staged_dir(out) as staged:
        save_vlm(vlm, staged, int8=info, extra=carried_files(resolve_model_dir(spec)))
        runtime = staged / RUNTIME_DIR
        exported = [b for b in candidates if b != "torch" and unavailable(b) is None]
        if exported:
            onnx_dir = runtime / ".onnx"
            export_onnx(vlm, onnx_dir)
            save_safetensors_atomic(dict(zip(("q", "scale"), pack(vlm.lm.get_input_embeddings().weight.detach()))), runtime / EMBED_FILE)
        models: dict[str, object] = {FP32: vlm}
        for name in candidates:
            reason = unavailable(name)
            if reason is not None:
                notes.append(reason)
                log(f"skipped: {reason}")
            elif name == "torch":
                models[name] = load_vlm(staged, "int8")
            else:
                builds[name] = build(name, onnx_dir, runtime / name, lm_sparsity(vlm.lm))
                models[name] = open_runtime(staged, name, builds[name], threads)
        answers = answer_round_robin(models, frames, config.max_new_tokens)
        ref = reference(vlm, frames, *answers.pop(FP32))
        for name, (gens, ms) in answers.items():
            verdict = judge(name, models[name], frames, ref, GateConfig(), gens, ms)
            verdicts.append(verdict)
            log(f"{name}: action agreement {verdict.action_agreement:.2f}, token KL {verdict.token_kl:.4f}, "
                f"frame p50 {verdict.frame_ms_p50:.0f} ms (fp32 {ref.frame_ms_p50:.0f}) -> {'accepted' if verdict.accepted else 'refused'}")
        del models, vlm
        if exported:
            shutil.rmtree(onnx_dir)
        accepted = [v for v in verdicts if v.accepted]
        if not accepted:
            raise OwledError(f"no backend passed the gate ({'; '.join(f'{v.backend}: agreement {v.action_agreement:.2f}, KL {v.token_kl:.3f}' for v in verdicts)})")
        choice = min(accepted, key=lambda v: v.frame_ms_p50)
        kept = {v.backend for v in accepted} if config.keep_all else {choice.backend}
        for name in builds:
            if name not in kept:
                shutil.rmtree(runtime / name)
        if not kept & set(builds) and runtime.exists():
            shutil.rmtree(runtime)
        record = {
            "backend": choice.backend,
            "machine": machine_info(threads),
            "gate": asdict(GateConfig()),
            "fp32_frame_ms_p50": round(ref.frame_ms_p50, 1),
            "timings": [v.to_dict() for v in verdicts],
            "skipped": notes,
            "build": builds.get(choice.backend, {}),
            "kept": {name: builds[name] for name in kept if name in builds},
        }
        write_text_atomic(runtime / BACKEND_FILE, json.dumps(record, indent=1))
    return record


def lm_sparsity(lm: torch.nn.Module) -> float:
    """Fraction of zeros over the LM's decoder linear weights (what OWL pruned)."""
    zeros = total = 0
    for module in lm.get_decoder().modules():
        if isinstance(module, torch.nn.Linear):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / max(total, 1)
