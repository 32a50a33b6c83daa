"""The plain-torch EfficientNet-Lite0 reproduces the wheel's ImageNet behaviour on a real photo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from owled_ros.model import efficientnet_lite as E
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig

EGYPTIAN_CAT = 285
# Measured: 0.777 with TF SAME padding and eps 1e-3; eps 1e-5 gives 0.699, symmetric padding 0.646.
MIN_PROB = 0.75


@pytest.fixture(scope="module")
def classifier() -> E.EfficientNetLite0:
    model = E.EfficientNetLite0()
    model.load_state_dict(E.remap_lukemelas_state_dict(torch.load(efficientnet_lite0_pth(), weights_only=True)))
    return model.eval()


def cat_probs(model: E.EfficientNetLite0) -> torch.Tensor:
    pixels = EfficientNetEncoder(EncoderConfig(image_size=(224, 224))).preprocess([skdata.chelsea()])
    with torch.no_grad():
        return model(pixels).softmax(-1)[0]


def test_cat_reads_as_egyptian_cat(classifier: E.EfficientNetLite0) -> None:
    probs = cat_probs(classifier)
    assert int(probs.argmax()) == EGYPTIAN_CAT
    assert float(probs[EGYPTIAN_CAT]) >= MIN_PROB


def test_wrong_batchnorm_eps_breaks_the_check(classifier: E.EfficientNetLite0) -> None:
    for m in classifier.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5
    try:
        assert float(cat_probs(classifier)[EGYPTIAN_CAT]) < MIN_PROB
    finally:
        for m in classifier.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = E.BN_EPS


def test_symmetric_padding_breaks_the_check(classifier: E.EfficientNetLite0, monkeypatch: pytest.MonkeyPatch) -> None:
    def symmetric(self: E.SameConv2d, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, self.weight, None, self.stride, self.weight.shape[-1] // 2, 1, self.groups)

    monkeypatch.setattr(E.SameConv2d, "forward", symmetric)
    assert float(cat_probs(classifier)[EGYPTIAN_CAT]) < MIN_PROB


def test_encoder_tokens_on_any_image_size() -> None:
    enc = EfficientNetEncoder(EncoderConfig())
    enc.load_imagenet_backbone(efficientnet_lite0_pth())
    enc.eval()
    images = [np.zeros((720, 1280, 3), np.uint8), np.full((37, 53, 3), 200, np.uint8)]
    with torch.no_grad():
        tokens = enc(enc.preprocess(images))
    assert tokens.shape == (2, 18, 1280)
    assert not torch.allclose(tokens[0], tokens[1])
