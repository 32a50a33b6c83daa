"""Wikipedia perplexity, exactly docs/design.md's protocol (so numbers compare across tools).

Each evaluation window is 512 tokens (data/wiki.py: consecutive, non-overlapping, at most
64); a window's loss is the mean next-token cross-entropy of its 511 predictions; the
perplexity is exp of the mean of the window losses. No sampling, no dropout: the same
model gives the same number.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from owled_ros.data.wiki import MAX_EVAL_WINDOWS, eval_windows

BATCH = 2  # windows per forward: 2 x 512 x 49k fp32 logits is 200 MB


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    windows: int
    tokens: int  # tokens fed: windows x 512
    predictions: int  # tokens scored: windows x 511

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def window_losses(lm: PreTrainedModel, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each window, shape (windows,)."""
    losses = []
    for batch in windows.split(BATCH):
        batch = batch.to(lm.device)
        logits = lm(input_ids=batch, use_cache=False).logits[:, :-1].float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none")
        losses.append(ce.view(batch.shape[0], -1).mean(1))
    return torch.cat(losses)


def wiki_perplexity(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_windows: int = MAX_EVAL_WINDOWS) -> PerplexityResult:
    windows = eval_windows(tokenizer, max_windows)
    losses = window_losses(lm.eval(), windows)
    k, length = windows.shape
    return PerplexityResult(math.exp(float(losses.double().mean())), k, k * length, k * (length - 1))
