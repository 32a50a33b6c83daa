"""The Wikipedia text of docs/design.md's perplexity protocol: gensim's shipped enwiki sample.

Fixed so perplexities compare across tools: articles in file order (namespace 0, no
redirects, `filter_wiki` cleaned, empties dropped), the first 70 % for calibration and
the rest for evaluation, each side joined with blank lines and tokenized without
special tokens.
"""
from __future__ import annotations

import bz2
import random
from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers import PreTrainedTokenizerBase

from owled_ros.errors import OwledError
from owled_ros.model.assets import package_dir

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WINDOW = 512
MAX_EVAL_WINDOWS = 64
CALIBRATION_SHARE = 0.7


@dataclass(frozen=True)
class WikiSplit:
    calibration: str
    evaluation: str


@lru_cache(maxsize=1)
def wiki_split() -> WikiSplit:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = package_dir("gensim", "gensim==4.4.0") / "test" / "test_data" / WIKI_FILE
    if not path.is_file():
        raise OwledError(f"{path}: gensim's Wikipedia sample is missing; reinstall gensim==4.4.0")
    articles = []
    with bz2.open(path, "rb") as f:
        for _title, text, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if text.lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text).strip()
            if clean:
                articles.append(clean)
    cut = int(CALIBRATION_SHARE * len(articles))
    return WikiSplit("\n\n".join(articles[:cut]), "\n\n".join(articles[cut:]))


@lru_cache(maxsize=4)
def _token_ids(tokenizer: PreTrainedTokenizerBase, part: str) -> torch.Tensor:
    """Token ids of one side of the split; cached, as tokenizing 3M characters takes seconds."""
    text = getattr(wiki_split(), part)
    # verbose=False: the whole split is one long sequence on purpose; no max-length warning.
    return torch.tensor(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.long)


def calibration_windows(tokenizer: PreTrainedTokenizerBase, n: int, seqlen: int = WINDOW) -> torch.Tensor:
    """(n, seqlen) random windows of the calibration pool; Random(0) draws what random.seed(0) would."""
    ids = _token_ids(tokenizer, "calibration")
    if len(ids) <= seqlen + 1:
        raise OwledError(f"Wikipedia calibration pool has {len(ids)} tokens, too few for --seqlen {seqlen}")
    rng = random.Random(0)
    starts = [rng.randint(0, len(ids) - seqlen - 1) for _ in range(n)]
    return torch.stack([ids[i : i + seqlen] for i in starts]) if starts else ids.new_zeros(0, seqlen)


def eval_windows(tokenizer: PreTrainedTokenizerBase, max_windows: int = MAX_EVAL_WINDOWS, seqlen: int = WINDOW) -> torch.Tensor:
    """(k, seqlen) consecutive non-overlapping windows of the evaluation set, k <= max_windows."""
    ids = _token_ids(tokenizer, "evaluation")
    k = min(max_windows, len(ids) // seqlen)
    return ids[: k * seqlen].view(k, seqlen).clone()
