"""Text metrics for driving QA, each over a corpus of (reference, hypothesis) pairs, one reference each.

Scales: bleu4 and rouge_l in [0, 1]; cider on the usual CIDEr-D scale (x10, 10 = every
hypothesis equals its reference). All raise ValueError on empty or unequal-length inputs, so an
empty evaluation is never reported as a score.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?")


def _check(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no references to score")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers ("7.5" stays one token); punctuation is dropped, as the COCO tokenizer does."""
    return _TOKEN.findall(text.lower())


def bleu4(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenization, no smoothing of the corpus score), in [0, 1]."""
    import sacrebleu

    _check(refs, hyps)
    return sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score / 100.0


def rouge_l(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, no stemming), in [0, 1]."""
    from rouge_score import rouge_scorer

    _check(refs, hyps)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return sum(scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)) / len(refs)


def cider(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CIDEr-D (pycocoevalcap, n=4, sigma=6) on `tokenize`d text; no Java tokenizer needed.

    Document frequencies come from the references, so a corpus of one pair always scores 0.
    """
    from pycocoevalcap.cider.cider import Cider

    _check(refs, hyps)
    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(refs)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hyps)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def accuracy(flags: Iterable[bool]) -> float:
    """Share of True in [0, 1]."""
    values = [bool(f) for f in flags]
    if not values:
        raise ValueError("no answers to score")
    return sum(values) / len(values)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of b minus a on the same items, in points."""

    items: int
    only_a_right: int
    only_b_right: int
    points: float
    standard_error: float

    @property
    def ci95(self) -> tuple[float, float]:
        return self.points - 1.96 * self.standard_error, self.points + 1.96 * self.standard_error


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> PairedDifference:
    """Paired on the same frames, only the frames where exactly one side is right carry information:
    the standard error is sqrt(b + c - (b - c)^2 / n) / n, well under the unpaired one's."""
    if len(a) != len(b) or not a:
        raise ValueError(f"{len(a)} and {len(b)} items: pair the same, non-empty set of frames")
    n = len(a)
    only_a = sum(bool(x) and not y for x, y in zip(a, b))
    only_b = sum(bool(y) and not x for x, y in zip(a, b))
    se = math.sqrt(max(0.0, only_a + only_b - (only_b - only_a) ** 2 / n)) / n
    return PairedDifference(n, only_a, only_b, 100 * (only_b - only_a) / n, 100 * se)
