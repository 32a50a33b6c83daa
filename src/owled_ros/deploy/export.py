"""A DrivingVLM as two ONNX graphs other runtimes (ONNX Runtime, OpenVINO) can run.

- `vision.onnx`: normalized pixels (1, 3, H, W) -> the LM-space visual tokens (1, N, hidden):
  encoder + projector in one graph; and the encoder's tokens averaged over the grid (1, C),
  the feature the out-of-distribution score reads (model/ood.py).
- `lm.onnx`: one LM step with a KV cache. Inputs: `inputs_embeds` (1, T, hidden),
  `position_ids` (1, T), `past_keys` / `past_values` (layers, 1, kv_heads, P, head_dim).
  Outputs: `logits` of the last position only (1, vocab) and the cache grown to P + T.
  A structured-pruned model may keep a different number of KV heads in each layer: the cache
  has the most any layer keeps, and a layer with fewer reads its first heads and writes zeros
  into the rest (one tensor per cache, at the cost of those zeros).
  A prefill is one call with the prompt (P = 0); a decode step a call with one token.

The LM step is written out here with the HF layers' own modules (norms, projections, MLP,
rotary embedding) and an explicit causal attention over cache + new tokens, because
transformers' cache classes and mask builders do not trace into a fixed graph. Only
Llama-style decoders (llama, qwen2) are exported; a pruned model exports with whatever
widths its weights have.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from owled_ros.deploy.config import LM_ONNX, VISION_ONNX
from owled_ros.errors import OwledError
from owled_ros.model.encoders import EfficientNetEncoder
from owled_ros.model.vlm import DrivingVLM

EXPORTABLE_LM_TYPES = ("llama", "qwen2")
OPSET = 17


class VisionGraph(nn.Module):
    """Encoder + projector for one fixed input size. The encoder's adaptive pooling onto its token
    grid becomes a constant (tokens x pixels) averaging matrix: the same numbers, but a graph
    the exporters accept (the SAME padding hides the feature map's size from them)."""

    def __init__(self, vlm: DrivingVLM) -> None:
        super().__init__()
        if not isinstance(vlm.encoder, EfficientNetEncoder):
            raise OwledError(f"export runs the EfficientNet-Lite0 encoder; this model has {vlm.encoder.config.kind!r}")
        self.backbone, self.projector = vlm.encoder.backbone, vlm.projector
        w, h = vlm.encoder.config.image_size
        with torch.no_grad():
            fh, fw = self.backbone.features(torch.zeros(1, 3, h, w)).shape[2:]
            eye = torch.eye(fh * fw).reshape(fh * fw, 1, fh, fw)
            pooled = vlm.encoder.pool(eye)  # (pixels, tokens, 1): where each pixel lands
        self.register_buffer("pool", pooled[:, :, 0].t().contiguous())  # (tokens, pixels)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone.features(pixels)
        tokens = torch.matmul(self.pool, fmap.flatten(2).transpose(1, 2))
        return self.projector(tokens), tokens.mean(dim=1)


class LMStep(nn.Module):
    """One forward of a Llama-style decoder over new tokens, given and returning its KV cache."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        if lm.config.model_type not in EXPORTABLE_LM_TYPES:
            raise OwledError(f"export runs {', '.join(EXPORTABLE_LM_TYPES)} LMs; this one is {lm.config.model_type!r}")
        self.decoder, self.lm_head = lm.get_decoder(), lm.get_output_embeddings()
        self.cache_heads = kv_geometry(lm)[1]

    def forward(
        self, embeds: torch.Tensor, position_ids: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        hidden = embeds
        cos, sin = self.decoder.rotary_emb(hidden, position_ids)
        past_len = past_keys.shape[3]
        key_pos = torch.arange(past_len + embeds.shape[1], device=embeds.device)
        allowed = key_pos[None, :] <= position_ids[0][:, None]  # (T, P + T): causal over cache + new
        bias = torch.zeros(allowed.shape, dtype=hidden.dtype).masked_fill(~allowed, torch.finfo(hidden.dtype).min)
        keys_out, values_out = [], []
        for i, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            head_dim = attn.head_dim
            q = attn.q_proj(x).view(1, -1, attn.q_proj.out_features // head_dim, head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(1, -1, attn.k_proj.out_features // head_dim, head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(1, -1, attn.v_proj.out_features // head_dim, head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            heads = k.shape[1]
            k = torch.cat([past_keys[i][:, :heads], k], dim=2)
            v = torch.cat([past_values[i][:, :heads], v], dim=2)
            missing = (0, 0, 0, 0, 0, self.cache_heads - heads)  # zeros for the heads this layer does not keep
            keys_out.append(nn.functional.pad(k, missing))
            values_out.append(nn.functional.pad(v, missing))
            groups = q.shape[1] // k.shape[1]  # grouped-query attention: kv heads shared by query heads
            k_all, v_all = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            scores = q @ k_all.transpose(2, 3) / math.sqrt(head_dim) + bias
            out = (scores.softmax(-1) @ v_all).transpose(1, 2).reshape(1, -1, q.shape[1] * head_dim)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        last = self.decoder.norm(hidden[:, -1])
        return self.lm_head(last), torch.stack(keys_out), torch.stack(values_out)


def kv_geometry(lm: nn.Module) -> tuple[int, int, int]:
    """(layers, cache heads, head dim) as the weights have them: the most KV heads any layer keeps
    (a structured-pruned model may keep fewer, and not the same number in every layer)."""
    layers = lm.get_decoder().layers
    head_dim = layers[0].self_attn.head_dim
    return len(layers), max(layer.self_attn.k_proj.out_features // head_dim for layer in layers), head_dim


@torch.no_grad()
def export_onnx(vlm: DrivingVLM, out_dir: Path) -> None:
    """Write vision.onnx and lm.onnx (fp32) for the model as it is (pruned, smoothed: its weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = vlm.encoder.config.image_size
    pixels = torch.zeros(1, 3, h, w)
    torch.onnx.export(
        VisionGraph(vlm).eval(), (pixels,), str(out_dir / VISION_ONNX), dynamo=False, opset_version=OPSET,
        input_names=["pixels"], output_names=["visual", "features"],
    )
    step = LMStep(vlm.lm).eval()
    layers, kv_heads, head_dim = kv_geometry(vlm.lm)
    hidden = vlm.lm.config.hidden_size
    past = torch.zeros(layers, 1, kv_heads, 3, head_dim)
    args = (torch.zeros(1, 2, hidden), torch.tensor([[3, 4]]), past, past.clone())
    torch.onnx.export(
        step, args, str(out_dir / LM_ONNX), dynamo=False, opset_version=OPSET,
        input_names=["inputs_embeds", "position_ids", "past_keys", "past_values"],
        output_names=["logits", "keys", "values"],
        dynamic_axes={
            "inputs_embeds": {1: "tokens"}, "position_ids": {1: "tokens"},
            "past_keys": {3: "past"}, "past_values": {3: "past"}, "keys": {3: "total"}, "values": {3: "total"},
        },
    )
