"""docs/design.md's Wikipedia protocol: the text split, calibration and evaluation windows, perplexity."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from owled_ros.data.wiki import calibration_windows, eval_windows, wiki_split
from owled_ros.eval.perplexity import wiki_perplexity


@pytest.fixture(scope="module")
def tokenizer():
    from owled_ros.model.lm import default_lm_dir

    return AutoTokenizer.from_pretrained(default_lm_dir())


@pytest.fixture(scope="module")
def split_ids(tokenizer) -> tuple[list[int], list[int]]:
    split = wiki_split()
    encode = lambda text: tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return encode(split.calibration), encode(split.evaluation)


def test_split_follows_the_protocol() -> None:
    split = wiki_split()
    assert split.calibration and split.evaluation
    assert "#redirect" not in split.calibration.lower()[:200]
    cal, ev = split.calibration.count("\n\n"), split.evaluation.count("\n\n")
    assert cal > 2 * ev  # 70 / 30 of the articles (articles may contain blank lines too)


def test_calibration_windows_are_the_seeded_draws(tokenizer, split_ids) -> None:
    ids = split_ids[0]
    random.seed(0)  # the protocol, literally
    expected = []
    for _ in range(5):
        i = random.randint(0, len(ids) - 512 - 1)
        expected.append(ids[i : i + 512])
    windows = calibration_windows(tokenizer, 5)
    assert windows.shape == (5, 512) and windows.tolist() == expected
    assert torch.equal(calibration_windows(tokenizer, 5), windows)
    assert torch.equal(calibration_windows(tokenizer, 8)[:5], windows)  # the first N of a longer draw


def test_eval_windows_are_consecutive_non_overlapping_and_capped(tokenizer, split_ids) -> None:
    ids = split_ids[1]
    windows = eval_windows(tokenizer)
    assert windows.shape == (min(64, len(ids) // 512), 512) == (64, 512)
    assert windows.reshape(-1).tolist() == ids[: 64 * 512]
    assert eval_windows(tokenizer, 3).shape == (3, 512)


def test_perplexity_is_exp_of_the_mean_window_loss(tokenizer) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    lm = LlamaForCausalLM(config).eval()
    result = wiki_perplexity(lm, tokenizer, 3)
    losses = []
    with torch.no_grad():
        for w in eval_windows(tokenizer, 3):
            logits = lm(input_ids=w[None]).logits[0]
            losses.append(F.cross_entropy(logits[:-1], w[1:]).item())  # 511 predictions
    assert result.perplexity == pytest.approx(math.exp(sum(losses) / 3), rel=1e-5)
    assert (result.windows, result.tokens, result.predictions) == (3, 3 * 512, 3 * 511)
    assert wiki_perplexity(lm, tokenizer, 3) == result
