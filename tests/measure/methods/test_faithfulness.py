"""Rankings and faithfulness curves: the ratio, its floor, the curve's points, CPR and CMD."""

from __future__ import annotations

import numpy as np
import pytest

from evidence.errors import MeasurementError
from evidence.measure.methods.faithfulness import (
    CurveScorer,
    Rankings,
    circuit_size,
    curve_ks,
    curve_values,
    faithfulness,
    same_clean_run,
)
from evidence.measure.stats import Bootstrap


def test_faithfulness_is_a_ratio_of_means_with_a_floor():
    clean, empty = np.array([3.0, 5.0]), np.array([1.0, 1.0])
    assert faithfulness(np.array([2.0, 4.0]), clean, empty, 0.5) == pytest.approx(2.0 / 3.0)
    # A model without the task: the floor, not the noise gap, is the denominator.
    assert faithfulness(np.array([1.2, 1.2]), np.array([1.1, 1.1]), empty, 0.5) == pytest.approx(0.4)


def test_the_curve_points():
    assert curve_ks(5, 64, None) == [1, 2, 3, 4, 5]
    assert curve_ks(6, 3, None) == [1, 4, 6]
    assert curve_ks(100, 4, 7) == [1, 7, 34, 67, 100]


def test_rankings_put_verified_components_first_by_measured_effect():
    rng = np.random.default_rng(0)
    rankings = Rankings.of([3, 0, 1, 2], [0, 3], np.array([-0.1, 0.5]), rng, 2)
    assert rankings.patching == [3, 0, 1, 2] and rankings.circuit == [3, 0, 1, 2]
    rankings = Rankings.of([3, 0, 1, 2], [0, 3], np.array([-0.9, 0.5]), rng, 2)
    assert rankings.patching == [0, 3, 1, 2]
    assert rankings.circuit == [3, 0, 1, 2]  # the attribution method's own ranking stays the headline
    assert len(rankings.random) == 2 and all(sorted(r) == [0, 1, 2, 3] for r in rankings.random)


def test_a_circuit_that_carries_everything_has_cpr_one_minus_its_cmd():
    n_examples, n = 16, 4
    clean, empty = np.full(n_examples, 2.0), np.zeros(n_examples)
    rankings = Rankings([0, 1, 2, 3], [0, 1, 2, 3], [[3, 2, 1, 0]])

    def patch(sets: list[frozenset[int]]) -> np.ndarray:
        # Component 0 carries the whole task: kept clean, the metric is m(M); patched, m(0).
        return np.stack([empty if 0 in s else clean for s in sets])

    ks = curve_ks(n, 64, None)
    main, by_patching, rnd = curve_values(patch, n, rankings, ks)
    boot = Bootstrap.draw(n_examples, rng=np.random.default_rng(0), resamples=100, level=0.95)
    scorer = CurveScorer(ks, n, boot, clean, empty, 0.5)
    curve = scorer.curve(main)
    assert curve.point.tolist() == [1.0, 1.0, 1.0, 1.0] and curve.draws.shape == (100, 4)
    assert circuit_size(ks, curve, 0.8, n) == 1
    cpr, cpr_draws = scorer.cpr(curve)
    cmd, _ = scorer.cmd(curve)
    assert cpr == pytest.approx(1.0 - 0.125) and cmd == pytest.approx(0.125) and cpr_draws.shape == (100,)
    random_curve = scorer.curve(rnd)
    assert random_curve.point.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert circuit_size(ks, random_curve, 0.8, n) == 4


def test_the_clean_run_must_not_depend_on_the_pass():
    same_clean_run(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-6]), "a and b")
    with pytest.raises(MeasurementError, match="the clean run differs by 0.1 between a and b"):
        same_clean_run(np.array([1.0, 2.0]), np.array([1.1, 2.0]), "a and b")
