"""How much the EfficientNet-Lite0 encoder suffers from pruning: a proxy for the encoder/LM split.

The projector is not trained yet, so no driving metric can judge the encoder alone. This
measures, on real dashcam frames, how far the pruned encoder's 3x6 visual tokens move
(mean cosine similarity to the dense tokens) and whether its ImageNet head still agrees
with the dense one (top-1 agreement), for encoder sparsities calibrated on generated
scenes, as `owled prune --calib scenes` does.

    nice -n 10 python benchmarks/prune_encoder_sensitivity.py --out benchmarks/prune_encoder_sensitivity.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from owled_ros.data.calibration import load_calibration
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig
from owled_ros.prune.apply import prune_part
from owled_ros.prune.calibrate import capture
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import make_blocks
from owled_ros.prune.vlm import IMAGE_BATCH

SPARSITIES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _imagenet_head() -> nn.Linear:
    state = torch.load(efficientnet_lite0_pth(), map_location="cpu", weights_only=True)
    fc = nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return fc


@torch.no_grad()
def _outputs(encoder: EfficientNetEncoder, fc: nn.Linear, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fmap = encoder.backbone.features(pixels)
    return encoder.pool(fmap), fc(fmap.mean(dim=(2, 3)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--eval-frames", type=int, default=64)
    args = p.parse_args()

    encoder = EfficientNetEncoder(EncoderConfig()).eval()
    encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    dense = {k: v.clone() for k, v in encoder.state_dict().items()}
    fc = _imagenet_head().eval()
    calib = load_calibration("scenes", args.calib_samples, None, 0)
    frames = [s.image for s in load_calibration("dashcam", args.eval_frames, None, 0).visual]
    pixels = encoder.preprocess(frames)
    ref_tokens, ref_logits = _outputs(encoder, fc, pixels)
    modules = [m for _n, m in encoder.blocks()]
    images = [s.image for s in calib.visual]
    batches = [encoder.preprocess(images[i : i + IMAGE_BATCH]) for i in range(0, len(images), IMAGE_BATCH)]
    blocks = make_blocks(encoder, modules)

    rows = []
    for ratios in ("uniform", "owl"):
        for s in SPARSITIES:
            encoder.load_state_dict(dense)
            prune_part("encoder", blocks, lambda: capture(modules, encoder, batches), s, PruneConfig("wanda", ratios, s, 0.0))
            tokens, logits = _outputs(encoder, fc, pixels)
            row = {
                "ratios": ratios,
                "sparsity": s,
                "token_cosine": float(F.cosine_similarity(tokens, ref_tokens, dim=-1).mean()),
                "top1_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("| encoder sparsity | " + " | ".join(f"{s:.0%}" for s in SPARSITIES) + " |")
    print("|---|" + "---|" * len(SPARSITIES))
    for ratios in ("uniform", "owl"):
        for key in ("token_cosine", "top1_agreement"):
            cells = [f"{r[key]:.3f}" for r in rows if r["ratios"] == ratios]
            print(f"| Wanda {ratios}: {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
