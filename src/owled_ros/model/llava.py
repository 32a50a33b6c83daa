"""Native HF LLaVA checkpoints -> DrivingVLM (its CLIP tower, its projector, its language model).

`llava_name` maps a LLaVA checkpoint's tensor names, in the layout of transformers 5 or the older
one the hub's llava-hf checkpoints use, to the DrivingVLM's, so prune/stream.py can read a LLaVA
directory tensor by tensor without loading it.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration

from owled_ros.model.encoders import CLIP_MEAN, CLIP_STD, EncoderConfig, HFVisionEncoder
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM

_RENAMES = (  # checkpoint prefix -> DrivingVLM prefix, first match wins
    (re.compile(r"^(model\.)?vision_tower\.(vision_model\.)?"), "encoder.tower."),  # hub checkpoints nest vision_model
    (re.compile(r"^(model\.)?multi_modal_projector\."), "projector."),
    (re.compile(r"^model\.language_model\."), "lm.model."),
    (re.compile(r"^language_model\.model\."), "lm.model."),
    (re.compile(r"^(language_model\.)?lm_head\."), "lm.lm_head."),
)


def llava_name(stored: str) -> str | None:
    """The DrivingVLM name of a LLaVA checkpoint tensor; None for one it has no use for."""
    for pattern, prefix in _RENAMES:
        if pattern.match(stored):
            return pattern.sub(prefix, stored, count=1)
    return None


def llava_configs(cfg: LlavaConfig) -> tuple[EncoderConfig, ProjectorConfig]:
    """The DrivingVLM encoder and projector configs of a LLaVA config."""
    vision = cfg.vision_config
    layer = cfg.vision_feature_layer if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer[-1]
    encoder = EncoderConfig(kind="clip", image_size=(vision.image_size, vision.image_size), grid=None, feature_layer=layer,
                            mean=CLIP_MEAN, std=CLIP_STD, hf_config=vision.to_dict())
    n_tokens = (vision.image_size // vision.patch_size) ** 2
    hidden = cfg.text_config.hidden_size
    projector = ProjectorConfig(vision.hidden_size, hidden, n_tokens, hidden, False)
    return encoder, projector


def load_llava(path: Path) -> DrivingVLM:
    llava = LlavaForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, trust_remote_code=False, use_safetensors=True, local_files_only=True
    )
    cfg = llava.config
    enc_cfg, proj_cfg = llava_configs(cfg)
    encoder = HFVisionEncoder(enc_cfg, llava.model.vision_tower)

    mmp = llava.model.multi_modal_projector
    projector = MLPProjector(proj_cfg)
    projector.linear_1.load_state_dict(mmp.linear_1.state_dict())
    projector.linear_2.load_state_dict(mmp.linear_2.state_dict())

    lm = AutoModelForCausalLM.from_config(cfg.text_config, dtype=torch.float32)
    lm.get_decoder().load_state_dict(llava.model.language_model.state_dict())
    lm.get_output_embeddings().load_state_dict(llava.lm_head.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    vlm = DrivingVLM(encoder, projector, lm, tokenizer, {"source": f"llava:{path.name}", "trained": True})
    vlm.eval()
    return vlm
