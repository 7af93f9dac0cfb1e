import numpy as np
import pytest

from evidence.errors import MeasurementError
from evidence.measure import stats


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_public_api_is_pinned():
    assert stats.__all__ == [
        "BOOTSTRAP_METHOD",
        "STRATIFIED_BOOTSTRAP",
        "WILSON_METHOD",
        "Bootstrap",
        "auroc",
        "auroc_rows",
        "bootstrap_auroc",
        "bootstrap_delta_auroc",
        "bootstrap_mean",
        "curve_area",
        "finite_scores",
        "paired_difference",
        "percentile_interval",
        "ranks",
        "spearman",
        "wilson_interval",
    ]


def test_bootstrap_mean_of_known_data_matches_the_normal_approximation():
    values = np.arange(100, dtype=float)  # mean 49.5, standard error 2.9011
    mean, ci = stats.bootstrap_mean(values, rng=rng(), level=0.95, resamples=4000)
    assert mean == 49.5
    assert ci.method == "percentile bootstrap"
    assert (ci.level, ci.n, ci.resamples) == (0.95, 100, 4000)
    half = 1.959964 * values.std(ddof=0) / np.sqrt(100)
    assert ci.lower == pytest.approx(49.5 - half, abs=0.6)
    assert ci.upper == pytest.approx(49.5 + half, abs=0.6)


def test_bootstrap_is_reproducible_for_a_seed_and_varies_between_seeds():
    values = rng(1).normal(size=50)
    a = stats.bootstrap_mean(values, rng=rng(7))
    b = stats.bootstrap_mean(values, rng=rng(7))
    c = stats.bootstrap_mean(values, rng=rng(8))
    assert a == b
    assert a[1] != c[1]


def test_bootstrap_of_constant_data_is_a_point():
    mean, ci = stats.bootstrap_mean([0.1] * 10, rng=rng())
    assert ci.lower == pytest.approx(0.1) and ci.upper == pytest.approx(0.1)
    assert mean == pytest.approx(0.1)


def test_wider_level_gives_a_wider_interval():
    values = rng(2).normal(size=40)
    _, narrow = stats.bootstrap_mean(values, rng=rng(), level=0.5)
    _, wide = stats.bootstrap_mean(values, rng=rng(), level=0.99)
    assert wide.lower < narrow.lower and narrow.upper < wide.upper


@pytest.mark.parametrize("bad", [[1.0, float("nan"), 2.0], [1.0, float("inf")], [float("-inf"), 0.0]])
def test_bootstrap_refuses_non_finite_values(bad):
    with pytest.raises(MeasurementError, match="not finite"):
        stats.bootstrap_mean(bad, rng=rng())


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([1.0], {}, "at least 2 units"),
        ([[1.0, 2.0], [3.0, 4.0]], {}, "one value per unit"),
        ([1.0, 2.0], {"level": 1.0}, "between 0 and 1"),
        ([1.0, 2.0], {"resamples": 0}, "at least 1"),
    ],
)
def test_bootstrap_refuses_unusable_input(values, kwargs, message):
    with pytest.raises(MeasurementError, match=message):
        stats.bootstrap_mean(values, rng=rng(), **kwargs)


@pytest.mark.parametrize(
    ("k", "n", "lower", "upper"),
    [
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (81, 263, 0.25529, 0.36621),
    ],
)
def test_wilson_interval_matches_reference_values(k, n, lower, upper):
    ci = stats.wilson_interval(k, n, level=0.95)
    assert ci.method == "wilson" and ci.n == n and ci.resamples is None
    assert ci.lower == pytest.approx(lower, abs=5e-5)
    assert ci.upper == pytest.approx(upper, abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 0), (-1, 5), (6, 5)])
def test_wilson_refuses_impossible_counts(k, n):
    with pytest.raises(MeasurementError):
        stats.wilson_interval(k, n)
