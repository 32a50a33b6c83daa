"""Native HF LLaVA checkpoints -> DrivingVLM (its CLIP tower, its projector, its language model)."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

from owled_ros.model.encoders import EncoderConfig, HFVisionEncoder
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM


def load_llava(path: Path) -> DrivingVLM:
    llava = LlavaForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, trust_remote_code=False, use_safetensors=True, local_files_only=True
    )
    cfg = llava.config
    vision = cfg.vision_config
    layer = cfg.vision_feature_layer if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer[-1]
    enc_cfg = EncoderConfig(
        kind="clip",
        image_size=(vision.image_size, vision.image_size),
        grid=None,
        feature_layer=layer,
        mean=(0.4815, 0.4578, 0.4082),
        std=(0.2686, 0.2613, 0.2758),
        hf_config=vision.to_dict(),
    )
    encoder = HFVisionEncoder(enc_cfg, llava.model.vision_tower)

    mmp = llava.model.multi_modal_projector
    n_tokens = (vision.image_size // vision.patch_size) ** 2
    projector = MLPProjector(
        ProjectorConfig(mmp.linear_1.in_features, mmp.linear_2.out_features, n_tokens, mmp.linear_1.out_features, False)
    )
    projector.linear_1.load_state_dict(mmp.linear_1.state_dict())
    projector.linear_2.load_state_dict(mmp.linear_2.state_dict())

    lm = AutoModelForCausalLM.from_config(cfg.text_config, dtype=torch.float32)
    lm.get_decoder().load_state_dict(llava.model.language_model.state_dict())
    lm.get_output_embeddings().load_state_dict(llava.lm_head.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    vlm = DrivingVLM(encoder, projector, lm, tokenizer, {"source": f"llava:{path.name}", "trained": True})
    vlm.eval()
    return vlm
