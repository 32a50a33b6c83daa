"""SmoothQuant (Xiao et al. 2023): move activation outliers into the weights before int8.

For a linear layer fed by X, scale input channel j by 1/s_j and the weight's column j
by s_j, with s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha); the product is unchanged in
exact arithmetic. The 1/s_j is folded into whatever produces X, so it costs nothing at
run time: the RMSNorm weight in front of q/k/v and gate/up, and up_proj's rows in front
of down_proj (SwiGLU's act(gate) * up is linear in up). o_proj is left alone: its input
comes through attention, where a per-channel scale would need v_proj and GQA's shared
heads to agree.
down_proj may take its own alpha: its input (SwiGLU's product) carries the largest outliers, so
a high alpha stretches a few weight columns and coarsens every other weight of their rows.
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from owled_ros.data.calibration import CalibrationSet
from owled_ros.errors import OwledError
from owled_ros.model.vlm import DrivingVLM
from owled_ros.observe import observe, run_sample

SMOOTHABLE_LM_TYPES = ("llama", "qwen2")  # plain RMSNorm weights (Gemma's norms add 1 to theirs)


@torch.no_grad()
def input_absmax(vlm: DrivingVLM, calib: CalibrationSet) -> dict[str, torch.Tensor]:
    """max |x_j| of every LM linear layer's input over the calibration set."""
    layers = {n: m for n, m in vlm.lm.named_modules() if isinstance(m, nn.Linear)}
    decoder = vlm.lm.get_decoder()
    with observe(layers, hessian=False, absmax=True) as stats:
        if calib.windows is not None:
            for window in tqdm(calib.windows, desc="int8 calibration (text)", unit="window"):
                decoder(input_ids=window[None].to(vlm.device), use_cache=False)
        else:
            for sample in tqdm(calib.visual, desc="int8 calibration (frames)", unit="frame"):
                run_sample(vlm, sample)
    return {n: s.absmax for n, s in stats.items()}


def _scales(absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    w_max = torch.stack([w.abs().amax(0) for w in weights]).amax(0).clamp(min=1e-5)
    return (absmax.clamp(min=1e-5).pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def smooth_lm(lm: nn.Module, absmax: dict[str, torch.Tensor], alpha: float, down_alpha: float | None = None) -> float:
    """Fold the scales in place; returns the largest activation outlier ratio (max / median) seen."""
    if lm.config.model_type not in SMOOTHABLE_LM_TYPES:
        raise OwledError(f"int8 deploy smooths {', '.join(SMOOTHABLE_LM_TYPES)} LMs; this one is {lm.config.model_type!r}")
    worst = 0.0
    for i, layer in enumerate(lm.get_decoder().layers):
        attn, mlp = layer.self_attn, layer.mlp
        groups = (
            (f"model.layers.{i}.self_attn.q_proj", layer.input_layernorm.weight, None, (attn.q_proj, attn.k_proj, attn.v_proj), alpha),
            (f"model.layers.{i}.mlp.gate_proj", layer.post_attention_layernorm.weight, None, (mlp.gate_proj, mlp.up_proj), alpha),
            (f"model.layers.{i}.mlp.down_proj", None, mlp.up_proj, (mlp.down_proj,), alpha if down_alpha is None else down_alpha),
        )
        for key, norm_weight, producer, consumers, group_alpha in groups:
            x = absmax[key]
            worst = max(worst, float(x.max() / x.median().clamp(min=1e-8)))
            s = _scales(x, [c.weight for c in consumers], group_alpha)
            if norm_weight is not None:
                norm_weight.div_(s)
            else:
                producer.weight.div_(s[:, None])
                if producer.bias is not None:
                    producer.bias.div_(s)
            for c in consumers:
                c.weight.mul_(s[None, :])
    return worst
