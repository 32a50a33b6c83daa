"""Text metrics against values computed independently here (by hand or by a plain re-implementation)."""
from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from owled_ros.eval.metrics import accuracy, bleu4, cider, paired_difference, rouge_l, tokenize


def test_bleu4_hand_computed():
    # one changed word in six: 5/6, 4/5, 3/4, 2/3 n-gram precisions, same length (no brevity penalty)
    assert bleu4(["the cat sat on the mat"], ["the cat sat on the hat"]) == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    # all n-grams right but 6 of 8 words: brevity penalty exp(1 - 8/6)
    assert bleu4(["a b c d e f g h"], ["a b c d e f"]) == pytest.approx(math.exp(1 - 8 / 6))
    # corpus BLEU sums n-gram counts over the pairs before taking precisions
    both = bleu4(["the cat sat on the mat", "a b c d e"], ["the cat sat on the hat", "a b c d e"])
    assert both == pytest.approx((10 / 11 * 8 / 9 * 6 / 7 * 4 / 5) ** 0.25)
    assert bleu4(["stop now"], ["keep speed please"]) == 0.0


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _rouge_l_f(ref: str, hyp: str) -> float:
    r, h = re.findall(r"[a-z0-9]+", ref.lower()), re.findall(r"[a-z0-9]+", hyp.lower())
    lcs = _lcs(r, h)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def test_rouge_l_matches_lcs_definition():
    refs = ["Red light at 30 m. Car in the ego lane at 15 m.", "slow down. Car ahead is too close.", "Straight road, night."]
    hyps = ["Car in the ego lane at 20 m. Red light.", "Slow down, the car ahead is close.", "Left curve, day."]
    expected = sum(_rouge_l_f(r, h) for r, h in zip(refs, hyps)) / 3
    assert rouge_l(refs, hyps) == pytest.approx(expected)
    assert 0 < expected < 1
    assert rouge_l(refs, refs) == pytest.approx(1.0)


def _cider_d(refs: list[str], hyps: list[str], n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D from its definition: tf-idf n-gram vectors, clipped cosine, length penalty, x10."""

    def grams(tokens: list[str]) -> Counter:
        return Counter(tuple(tokens[i : i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))

    rt, ht = [tokenize(r) for r in refs], [tokenize(h) for h in hyps]
    df = Counter(g for r in rt for g in set(grams(r)))
    log_n = math.log(len(refs))
    scores = []
    for r, h in zip(rt, ht):
        vr = {g: c * (log_n - math.log(max(1, df[g]))) for g, c in grams(r).items()}
        vh = {g: c * (log_n - math.log(max(1, df[g]))) for g, c in grams(h).items()}
        total = 0.0
        for k in range(1, n + 1):
            dot = sum(min(w, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, w in vh.items() if len(g) == k)
            nr = math.sqrt(sum(w * w for g, w in vr.items() if len(g) == k))
            nh = math.sqrt(sum(w * w for g, w in vh.items() if len(g) == k))
            total += (dot / (nr * nh) if nr and nh else 0.0) * math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma**2))
        scores.append(10 * total / n)
    return sum(scores) / len(scores)


def test_cider_exact_values():
    refs = ["Car in the ego lane at 15 m.", "Red light at 30 m.", "Pedestrian crossing at 10 m."]
    assert cider(refs, refs) == pytest.approx(10.0)  # each hypothesis equals its reference
    assert cider(refs, ["Car in the ego lane at 15 m.", "Red light at 30 m.", "zzz qqq"]) == pytest.approx(20 / 3)
    partial = ["car in the left lane at 15 m", "red light at 30 m", "cyclist at the roadside"]
    assert cider(refs, partial) == pytest.approx(_cider_d(refs, partial), abs=1e-9)
    assert cider(refs, ["CAR IN THE EGO LANE AT 15 M", "red light, at 30 m", "Pedestrian crossing at 10 m!"]) == pytest.approx(10.0)
    assert cider(refs, partial) < cider(refs, refs)


def test_tokenize_keeps_decimals_and_drops_punctuation():
    assert tokenize("Slow down to 7.5 m/s, now.") == ["slow", "down", "to", "7.5", "m", "s", "now"]


def test_accuracy_and_input_checks():
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy(x > 1 for x in (1, 2)) == 0.5
    with pytest.raises(ValueError):
        accuracy([])
    with pytest.raises(ValueError):
        bleu4(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        rouge_l([], [])


def test_paired_difference_hand_computed():
    # 10 frames: both right on 5, only a on 1, only b on 3, neither on 1
    a = [True] * 5 + [True] + [False] * 3 + [False]
    b = [True] * 5 + [False] + [True] * 3 + [False]
    d = paired_difference(a, b)
    assert (d.items, d.only_a_right, d.only_b_right) == (10, 1, 3)
    assert d.points == pytest.approx(20.0)
    assert d.standard_error == pytest.approx(100 * math.sqrt(4 - 4 / 10) / 10)
    lo, hi = d.ci95
    assert lo == pytest.approx(20.0 - 1.96 * d.standard_error) and hi > 20.0
    assert paired_difference([True, False], [True, False]).standard_error == 0.0
    with pytest.raises(ValueError, match="1 and 2 items"):
        paired_difference([True], [True, False])
