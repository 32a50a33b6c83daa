"""Tiny randomly initialised HF models built from configs, saved as local safetensors checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from owled_ros.model.lm import default_lm_dir

VOCAB = 49152  # the default tokenizer's vocabulary, reused so tiny LMs can talk


def tokenizer():
    return AutoTokenizer.from_pretrained(default_lm_dir())


def text_config(family: str):
    from transformers import GemmaConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if family == "llama":
        return LlamaConfig(**common, tie_word_embeddings=True)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "gemma":
        return GemmaConfig(**common, head_dim=8)
    raise ValueError(family)


def save_tiny_lm(family: str, out: Path) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(text_config(family))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer().save_pretrained(out)
    return out


def vision_config(kind: str, layers: int = 2):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, image_size=32, patch_size=8)
    return CLIPVisionConfig(**common) if kind == "clip" else SiglipVisionConfig(**common)


def save_tiny_tower(kind: str, out: Path) -> Path:
    from transformers import CLIPVisionModel, SiglipVisionModel

    torch.manual_seed(0)
    model = (CLIPVisionModel if kind == "clip" else SiglipVisionModel)(vision_config(kind))
    model.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_llava(out: Path, vision_layers: int = 2, dtype: torch.dtype = torch.float32) -> Path:
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    config = LlavaConfig(vision_config=vision_config("clip", vision_layers), text_config=text_config("llama"), image_token_index=VOCAB - 1)
    LlavaForConditionalGeneration(config).to(dtype).save_pretrained(out, safe_serialization=True)
    tokenizer().save_pretrained(out)
    return out


def tiny_llama(vocab: int = 128, layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny_vlm(out: Path) -> Path:
    """A DrivingVLM directory: the real EfficientNet at 64x64 (2 tokens), a 2-layer tiny Llama, the real tokenizer."""
    from owled_ros.model.checkpoint import save_vlm
    from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
    from owled_ros.model.projector import MLPProjector, ProjectorConfig
    from owled_ros.model.vlm import DrivingVLM

    tok = tokenizer()
    torch.manual_seed(0)
    encoder = EfficientNetEncoder(EncoderConfig(image_size=(64, 64), grid=(1, 2)))
    lm = tiny_llama(len(tok), layers=2)
    projector = MLPProjector(ProjectorConfig(encoder.out_dim, lm.config.hidden_size, encoder.n_tokens()))
    return save_vlm(DrivingVLM(encoder, projector, lm, tok, {"name": "tiny"}).eval(), out)

