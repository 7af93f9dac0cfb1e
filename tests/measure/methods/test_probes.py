"""Linear probes (methods.probes) and the AUROC statistics that judge them (stats), against direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from evidence.errors import MeasurementError
from evidence.measure.methods.probes import (
    fit_logistic,
    fit_mass_mean,
    group_folds,
    pair_groups,
    separation,
    threshold_at_fpr,
)
from evidence.measure.stats import STRATIFIED_BOOTSTRAP, auroc, bootstrap_auroc, bootstrap_delta_auroc


def brute_auroc(pos, neg) -> float:
    return float(np.mean([[1.0 if p > n else 0.5 if p == n else 0.0 for n in neg] for p in pos]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 6, size=37).astype(float)
    neg = rng.integers(0, 5, size=23).astype(float)
    assert auroc(pos, neg) == pytest.approx(brute_auroc(pos, neg), abs=1e-12)


def test_auroc_extremes_and_symmetry():
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auroc([0, 1, 2], [3, 4, 5]) == 0.0
    assert auroc([1, 1], [1, 1, 1]) == 0.5
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=20), rng.normal(size=30)
    assert auroc(a, b) == pytest.approx(1.0 - auroc(b, a))


def test_auroc_refuses_empty_and_non_finite_scores():
    with pytest.raises(MeasurementError):
        auroc([], [1.0])
    with pytest.raises(MeasurementError, match="non-finite"):
        auroc([np.nan, 1.0], [0.0])


def test_bootstrap_auroc_interval_is_stratified_and_deterministic():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 40)
    v1, ci1 = bootstrap_auroc(pos, neg, rng=np.random.default_rng(7), resamples=500)
    v2, ci2 = bootstrap_auroc(pos, neg, rng=np.random.default_rng(7), resamples=500)
    assert (v1, ci1) == (v2, ci2)
    assert v1 == pytest.approx(brute_auroc(pos, neg))
    assert ci1.lower < v1 < ci1.upper
    assert ci1.method == STRATIFIED_BOOTSTRAP and ci1.n == 100 and ci1.resamples == 500
    # a wider level gives a wider interval
    _, wide = bootstrap_auroc(pos, neg, rng=np.random.default_rng(7), resamples=500, level=0.99)
    assert wide.lower <= ci1.lower and wide.upper >= ci1.upper


def test_bootstrap_auroc_of_perfect_separation_is_a_point():
    value, ci = bootstrap_auroc([5, 6, 7], [1, 2], rng=np.random.default_rng(0), resamples=200)
    assert value == 1.0 and ci.lower == ci.upper == 1.0


def test_bootstrap_auroc_interval_covers_chance_for_identical_distributions():
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(size=128), rng.normal(size=128)
    _, ci = bootstrap_auroc(pos, neg, rng=np.random.default_rng(1))
    assert ci.lower < 0.5 < ci.upper


def test_delta_auroc_is_zero_for_identical_scores_and_signed_otherwise():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 50), rng.normal(0, 1, 50)
    d, ci = bootstrap_delta_auroc(pos, neg, pos, neg, rng=np.random.default_rng(0), resamples=300)
    assert d == 0.0 and ci.lower == ci.upper == 0.0
    worse_pos = pos - 1.0  # the shifted positives look like negatives
    d, ci = bootstrap_delta_auroc(pos, neg, worse_pos, neg, rng=np.random.default_rng(0), resamples=300)
    assert d == pytest.approx(auroc(worse_pos, neg) - auroc(pos, neg))
    assert d < 0 and ci.upper < 0
    with pytest.raises(MeasurementError, match="same units"):
        bootstrap_delta_auroc(pos, neg, pos[:-1], neg, rng=np.random.default_rng(0))


def test_threshold_at_fpr_flags_at_most_the_target_fraction():
    scores = np.arange(256, dtype=float)
    threshold, achieved = threshold_at_fpr(scores, 0.01)
    # floor(0.01 * 256) = 2 scores may lie above: the third largest is the threshold
    assert threshold == 253.0 and achieved == 2 / 256
    assert np.count_nonzero(scores > threshold) == 2
    for n in (10, 99, 100, 101, 1000):
        s = np.random.default_rng(n).normal(size=n)
        t, a = threshold_at_fpr(s, 0.01)
        assert a <= 0.01 and a == np.count_nonzero(s > t) / n


def test_threshold_with_ties_never_exceeds_the_target():
    scores = np.array([0.0] * 95 + [1.0] * 5)
    threshold, achieved = threshold_at_fpr(scores, 0.01)
    assert threshold == 1.0 and achieved == 0.0  # ties at the threshold are not flagged
    with pytest.raises(MeasurementError):
        threshold_at_fpr(scores, 1.0)


def test_mass_mean_direction_is_the_difference_of_means():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    y = np.array([True, True, False, False])
    probe = fit_mass_mean(x, y)
    assert probe.kind == "mass_mean"
    assert np.allclose(probe.weights, [2.0, -2.0]) and probe.bias == 0.0
    assert np.allclose(probe.score(x), x @ [2.0, -2.0])
    assert np.allclose(probe.unit_direction(), np.array([1.0, -1.0]) / np.sqrt(2))


def test_logistic_probe_finds_the_informative_feature_whatever_its_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = x[:, 2] + 0.2 * rng.normal(size=400) > 0
    scaled = x * np.array([1, 1, 1000.0, 1, 1, 1, 1, 1])
    a = fit_logistic(x, y, l2=1.0)
    b = fit_logistic(scaled, y, l2=1.0)
    assert int(np.argmax(np.abs(a.weights))) == 2
    # standardisation makes the fitted scores independent of the feature's units
    assert np.allclose(a.score(x), b.score(scaled), atol=1e-8)
    assert auroc(a.score(x)[y], a.score(x)[~y]) > 0.98
    # deterministic
    c = fit_logistic(x, y, l2=1.0)
    assert np.array_equal(a.weights, c.weights) and a.bias == c.bias


def test_logistic_probe_is_finite_on_separable_data_and_constant_features():
    x = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    y = np.array([False, False, True, True])
    probe = fit_logistic(x, y, l2=10.0)
    assert np.all(np.isfinite(probe.weights)) and probe.weights[1] == 0.0
    s = probe.score(x)
    assert s[2] > s[1]


def test_stronger_l2_shrinks_the_logistic_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = x[:, 0] > 0
    weak, strong = fit_logistic(x, y, l2=0.1), fit_logistic(x, y, l2=100.0)
    assert np.linalg.norm(strong.weights) < np.linalg.norm(weak.weights)


@pytest.mark.parametrize(("n", "d"), [(120, 16), (60, 400)])
def test_the_dual_and_primal_logistic_fits_reach_the_same_optimum(n, d):
    """The dual is the representer form of the same strictly convex problem, constant features included."""
    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=d)
    x[:, 3] = 7.0  # a constant feature: weight zero in both
    y = x[:, 0] / x[:, 0].std() + 0.7 * rng.normal(size=n) > 0
    primal = fit_logistic(x, y, l2=2.0, method="primal")
    dual = fit_logistic(x, y, l2=2.0, method="dual")
    assert dual.weights[3] == 0.0 == primal.weights[3]
    assert np.allclose(dual.weights, primal.weights, rtol=1e-9, atol=1e-12 * np.abs(primal.weights).max())
    assert dual.bias == pytest.approx(primal.bias, rel=1e-9, abs=1e-12)
    assert np.allclose(dual.score(x), primal.score(x), atol=1e-9)
    # the gradient of the objective vanishes at the dual's solution (checked in the primal)
    scale = x.std(axis=0)
    keep = scale > 0
    zs = (x[:, keep] - x[:, keep].mean(axis=0)) / scale[keep]
    w = dual.weights[keep] * scale[keep]
    margins = zs @ w + dual.bias + x[:, keep].mean(axis=0) @ dual.weights[keep]
    p = 1.0 / (1.0 + np.exp(-margins))
    gradient = zs.T @ (p - y) + 2.0 * w
    assert np.abs(gradient).max() < 1e-6 and abs(float((p - y).sum())) < 1e-6


def test_auto_takes_the_dual_when_there_are_fewer_examples_than_dimensions(monkeypatch):
    import evidence.measure.methods.probes as probes

    called = []
    for name in ("_newton_primal", "_newton_dual"):
        original = getattr(probes, name)
        monkeypatch.setattr(probes, name, lambda *a, _o=original, _n=name: called.append(_n) or _o(*a))
    rng = np.random.default_rng(3)
    for n, d in ((50, 10), (10, 50)):
        x = rng.normal(size=(n, d))
        fit_logistic(x, x[:, 0] > 0, l2=1.0)
    assert called == ["_newton_primal", "_newton_dual"]
    with pytest.raises(MeasurementError, match="unknown method"):
        fit_logistic(np.eye(3), np.array([True, False, True]), l2=1.0, method="lbfgs")


def test_probes_refuse_one_class_data():
    with pytest.raises(MeasurementError, match="both classes"):
        fit_mass_mean(np.zeros((3, 2)), np.array([True, True, True]))
    with pytest.raises(MeasurementError, match="l2"):
        fit_logistic(np.zeros((2, 2)), np.array([True, False]), l2=0.0)


def test_separation_is_standardised_gap():
    assert separation([1.0, 3.0], [-1.0, -3.0]) == pytest.approx(4.0 / 1.0)
    assert separation([2.0, 2.0], [0.0, 0.0]) == 1e6  # zero spread, positive gap
    assert separation([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert separation([0.0, 1.0], [2.0, 3.0]) < 0


def test_pair_groups_use_contrast_pairs_only_when_every_prompt_is_paired():
    ids = ["pair-0000-bad", "pair-0000-good", "pair-0001-bad", "pair-0001-good"]
    labels = [True, False, True, False]
    assert pair_groups(ids, labels) == ["pair-0000", "pair-0000", "pair-0001", "pair-0001"]
    # a key with two prompts of the same label is not a contrast pair
    assert pair_groups(["a-1", "a-2", "b-1", "b-2"], [True, True, False, False]) == ["a-1", "a-2", "b-1", "b-2"]


def test_group_folds_keep_groups_together_and_balance_labels():
    ids = [f"pair-{i:04d}-{kind}" for i in range(50) for kind in ("bad", "good")]
    labels = [kind == "bad" for _ in range(50) for kind in ("bad", "good")]
    groups = pair_groups(ids, labels)
    folds = group_folds(labels, groups, 5, np.random.default_rng(0))
    for g in set(groups):
        assert len({int(folds[i]) for i, h in enumerate(groups) if h == g}) == 1
    sizes = np.bincount(folds)
    assert sizes.tolist() == [20] * 5
    assert np.array_equal(folds, group_folds(labels, groups, 5, np.random.default_rng(0)))
    # ungrouped: positives spread over the folds
    flat = group_folds([True] * 10 + [False] * 10, [str(i) for i in range(20)], 5, np.random.default_rng(1))
    assert all(np.sum(flat[:10] == f) == 2 for f in range(5))
    with pytest.raises(MeasurementError):
        group_folds([True, False], ["a", "b"], 3, np.random.default_rng(0))
