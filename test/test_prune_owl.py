"""OWL ratios: weighted mean exactly the target, bounds S +- lambda, more outliers -> less pruning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from owled_ros.prune.owl import outlier_ratio, owl_sparsities


def _check(d, w, s, lam, sp) -> None:
    sp, w = np.asarray(sp), np.asarray(w, dtype=float)
    assert abs(np.dot(w, sp) / w.sum() - s) < 1e-6
    assert np.all(sp >= max(s - lam, 0) - 1e-12) and np.all(sp <= s + lam + 1e-12)
    order = np.argsort(d)
    assert np.all(np.diff(sp[order]) <= 1e-12), "a block with more outliers got more pruning"


@pytest.mark.parametrize("seed", range(20))
def test_random_blocks_of_unequal_size(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    d = rng.uniform(0, 0.05, n)
    w = rng.integers(1, 10**6, n) ** rng.uniform(0.5, 1.5)  # sizes spread over decades: clipping happens
    s, lam = float(rng.uniform(0.05, 0.9)), float(rng.uniform(0.0, 0.25))
    _check(d, w, s, lam, owl_sparsities(d, w, s, lam))


def test_equal_sizes_without_clipping_is_the_reference_formula() -> None:
    s, lam = 0.7, 0.08
    d = [0.01, 0.02, 0.03]  # normalized [0, lam, 2 lam], mean lam: reference = S + mean - D_norm
    assert owl_sparsities(d, [5, 5, 5], s, lam) == pytest.approx([s + lam, s, s - lam], abs=1e-9)


def test_shift_that_would_leave_the_bounds_is_clipped_and_resolved() -> None:
    s, lam = 0.7, 0.1
    d = [0.0, 0.0, 0.0, 1.0]  # reference: S + lam/2 for three blocks, S - 1.5 lam for the last
    sp = owl_sparsities(d, [1, 1, 1, 1], s, lam)
    _check(d, [1, 1, 1, 1], s, lam, sp)
    assert sp[3] == pytest.approx(s - lam) and sp[0] == pytest.approx(s + lam / 3)
    # a huge block with the fewest outliers forces the others towards the bounds
    d, w = [0.0, 0.5, 1.0], [1000, 1, 1]
    sp = owl_sparsities(d, w, s, lam)
    _check(d, w, s, lam, sp)


def test_no_spread_or_no_lambda_is_uniform() -> None:
    assert owl_sparsities([0.02, 0.02], [3, 7], 0.5, 0.1) == pytest.approx([0.5, 0.5])
    assert owl_sparsities([0.01, 0.05], [3, 7], 0.5, 0.0) == pytest.approx([0.5, 0.5])


def test_sparsity_near_zero_stays_non_negative() -> None:
    d, w = [0.01, 0.02, 0.05], [10, 20, 30]
    _check(d, w, 0.05, 0.08, owl_sparsities(d, w, 0.05, 0.08))


def test_outlier_ratio_pools_the_scores_of_a_block() -> None:
    a = torch.ones(10)
    b = torch.tensor([1.0] * 9 + [100.0])  # mean of the pool is 119 / 20 = 5.95
    assert outlier_ratio(lambda: [a, b], 5) == pytest.approx(1 / 20)
    assert outlier_ratio(lambda: [a, b], 20) == 0
