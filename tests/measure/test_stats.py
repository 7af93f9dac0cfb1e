import numpy as np
import pytest

from evidence.errors import MeasurementError
from evidence.measure import stats


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_public_api_is_pinned():
    assert stats.__all__ == [
        "BONFERRONI_AUROCS_METHOD",
        "BOOTSTRAP_METHOD",
        "CLOPPER_PEARSON_METHOD",
        "CONSTANT_SAMPLE_METHOD",
        "DELONG_METHOD",
        "DELONG_PAIRED_METHOD",
        "NEWCOMBE_METHOD",
        "PAIRS_EXACT_METHOD",
        "STRATIFIED_BOOTSTRAP",
        "WILSON_METHOD",
        "Bootstrap",
        "auroc",
        "auroc_interval",
        "auroc_rows",
        "bootstrap_auroc",
        "bootstrap_delta_auroc",
        "bootstrap_mean",
        "bounded_mean",
        "clopper_pearson_interval",
        "controls_needed",
        "curve_area",
        "delta_auroc_interval",
        "finite_scores",
        "fpr_upper_bound",
        "newcombe_difference",
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


# -- exact and score intervals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "lower", "upper"),
    # reference values of the exact interval (beta quantiles), 95%
    [(0, 10, 0.0, 0.30850), (10, 10, 0.69150, 1.0), (3, 10, 0.06674, 0.65245), (0, 299, 0.0, 0.012252)],
)
def test_clopper_pearson_matches_the_beta_quantiles(k, n, lower, upper):
    ci = stats.clopper_pearson_interval(k, n)
    assert ci.lower == pytest.approx(lower, abs=2e-5) and ci.upper == pytest.approx(upper, abs=2e-5)
    assert ci.method == "clopper-pearson" and ci.upper > ci.lower  # never of zero width


def test_newcombe_difference_matches_the_published_example():
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80, hybrid score interval 0.0524 to 0.3339
    d, ci = stats.newcombe_difference(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert ci.lower == pytest.approx(0.0524, abs=5e-4) and ci.upper == pytest.approx(0.3339, abs=5e-4)
    # all against none: the interval stays inside [-1, 1] and is not of zero width
    d, ci = stats.newcombe_difference(20, 20, 0, 20)
    assert d == 1.0 and ci.upper == 1.0 and 0.7 < ci.lower < 1.0


def test_auroc_interval_is_never_of_zero_width_and_brackets_the_estimate():
    r = rng(3)
    pos, neg = r.normal(1.0, 1.0, 200), r.normal(0.0, 1.0, 300)
    point, ci = stats.auroc_interval(pos, neg)
    assert point == pytest.approx(stats.auroc(pos, neg)) and ci.lower < point < ci.upper
    assert ci.method == "delong (logit scale)" and 0.0 < ci.lower and ci.upper < 1.0
    # perfect separation: the exact bound from min(n_pos, n_neg) = 128 disjoint pairs, 0.025 ** (1/128)
    point, ci = stats.auroc_interval(np.arange(128) + 1000.0, np.arange(256, dtype=float))
    assert point == 1.0 and ci.upper == 1.0 and ci.lower == pytest.approx(0.025 ** (1 / 128), abs=1e-4)
    point, ci = stats.auroc_interval(np.arange(50, dtype=float), np.arange(50) + 100.0)
    assert point == 0.0 and ci.lower == 0.0 and ci.upper > 0.0


def test_auroc_interval_covers_the_true_value_at_about_its_level():
    r = rng(11)
    true = 0.7602  # P(N(1, 1) > N(0, 1)) = Phi(1 / sqrt(2))
    hits = 0
    for _ in range(300):
        _, ci = stats.auroc_interval(r.normal(1.0, 1.0, 40), r.normal(0.0, 1.0, 60))
        hits += ci.lower <= true <= ci.upper
    assert 0.91 <= hits / 300 <= 0.99


def test_delta_auroc_interval_at_perfect_separation_is_not_of_zero_width():
    pos, neg = np.arange(128) + 1000.0, np.arange(128, dtype=float)
    # Both score sets separate perfectly: every bootstrap resample gives the difference 0.
    _, boot = stats.bootstrap_delta_auroc(pos, neg, 2 * pos, 2 * neg, rng=rng(), resamples=300)
    assert boot.lower == boot.upper == 0.0
    point, ci = stats.delta_auroc_interval(pos, neg, 2 * pos, 2 * neg)
    assert point == 0.0 and ci.lower < 0.0 < ci.upper
    assert ci.method == stats.BONFERRONI_AUROCS_METHOD and (ci.level, ci.n) == (0.95, 256)
    # each AUROC's exact bound at level 0.975, combined: 1 - 0.0125 ** (1/128) on each side
    half = 1.0 - 0.0125 ** (1 / 128)
    assert ci.lower == pytest.approx(-half, abs=1e-4) and ci.upper == pytest.approx(half, abs=1e-4)
    # one side at the boundary, the other inside: still the combination, containing the estimate
    r = rng(5)
    noisy_pos, noisy_neg = r.normal(1.0, 1.0, 128), r.normal(0.0, 1.0, 128)
    point, ci = stats.delta_auroc_interval(pos, neg, noisy_pos, noisy_neg)
    assert ci.method == stats.BONFERRONI_AUROCS_METHOD and ci.lower < point < ci.upper < 0.0
    # a perfect probe against a chance-level one: the difference is about 0.5, interval within [-1, 1]
    point, ci = stats.delta_auroc_interval(noisy_pos * 0.0, noisy_neg * 0.0, pos, neg)
    assert point == 0.5 and -1.0 <= ci.lower < 0.5 < ci.upper <= 1.0


def test_delta_auroc_interval_inside_is_delong_on_the_paired_difference():
    r = rng(7)
    pos_a, neg_a = r.normal(1.0, 1.0, 80), r.normal(0.0, 1.0, 120)
    pos_b, neg_b = pos_a + r.normal(0.0, 1.0, 80), neg_a + r.normal(0.0, 1.0, 120)
    point, ci = stats.delta_auroc_interval(pos_a, neg_a, pos_b, neg_b)
    assert point == pytest.approx(stats.auroc(pos_b, neg_b) - stats.auroc(pos_a, neg_a))
    assert ci.method == stats.DELONG_PAIRED_METHOD and ci.lower < point < ci.upper
    # about as wide as the paired bootstrap, and narrower than ignoring the pairing
    _, boot = stats.bootstrap_delta_auroc(pos_a, neg_a, pos_b, neg_b, rng=rng(), resamples=4000)
    assert ci.upper - ci.lower == pytest.approx(boot.upper - boot.lower, rel=0.15)
    _, ci_a = stats.auroc_interval(pos_a, neg_a, level=0.975)
    _, ci_b = stats.auroc_interval(pos_b, neg_b, level=0.975)
    assert ci.upper - ci.lower < (ci_a.upper - ci_a.lower) + (ci_b.upper - ci_b.lower)
    # identical scores: no variance to estimate, so the conservative combination, centred on 0
    point, ci = stats.delta_auroc_interval(pos_a, neg_a, pos_a, neg_a)
    assert point == 0.0 and ci.method == stats.BONFERRONI_AUROCS_METHOD and ci.lower == pytest.approx(-ci.upper)
    with pytest.raises(MeasurementError):
        stats.delta_auroc_interval(pos_a, neg_a, pos_b[:-1], neg_b)


def test_delta_auroc_interval_covers_the_true_difference_at_about_its_level():
    from statistics import NormalDist

    r = rng(13)
    # b adds independent N(0, 1) noise to a's binormal scores: AUROC Phi(1 / sqrt(2)) -> Phi(1 / 2)
    true = NormalDist().cdf(0.5) - NormalDist().cdf(1.0 / np.sqrt(2.0))
    hits = 0
    for _ in range(300):
        pos, neg = r.normal(1.0, 1.0, 40), r.normal(0.0, 1.0, 60)
        _, ci = stats.delta_auroc_interval(pos, neg, pos + r.normal(0.0, 1.0, 40), neg + r.normal(0.0, 1.0, 60))
        hits += ci.lower <= true <= ci.upper
    assert 0.91 <= hits / 300 <= 0.99


def test_an_operating_point_states_how_many_controls_it_needs():
    # zero false alarms among 299 controls bound the FPR at 1% (one-sided 95%); 256 do not
    assert stats.controls_needed(0.01) == 299
    assert stats.fpr_upper_bound(0, 299) <= 0.01 < stats.fpr_upper_bound(0, 256)


def test_bounded_mean_is_the_bootstrap_while_the_values_vary():
    values = rng(2).uniform(0.0, 1.0, 64)
    assert stats.bounded_mean(values, lower=0.0, upper=1.0, rng=rng(9)) == stats.bootstrap_mean(values, rng=rng(9))


@pytest.mark.parametrize("c", [0.0, 1.0, 0.3])
def test_bounded_mean_of_a_constant_sample_has_the_exact_interval(c):
    values = np.full(64, c)
    _, boot = stats.bootstrap_mean(values, rng=rng())
    assert boot.lower == boot.upper == c  # what the bootstrap alone reports
    point, ci = stats.bounded_mean(values, lower=0.0, upper=1.0, rng=rng())
    t = 0.025 ** (1 / 64)
    assert point == c and ci.lower <= c <= ci.upper and ci.upper > ci.lower
    assert ci.lower == pytest.approx(c * t) and ci.upper == pytest.approx(1 - (1 - c) * t)
    assert (ci.method, ci.n, ci.level) == (stats.CONSTANT_SAMPLE_METHOD, 64, 0.95)
    if c in (0.0, 1.0):  # at the boundary: the Clopper-Pearson interval for 0 or n of n
        exact = stats.clopper_pearson_interval(int(c * 64), 64)
        assert ci.lower == pytest.approx(exact.lower, abs=1e-6) and ci.upper == pytest.approx(exact.upper, abs=1e-6)


def test_bounded_mean_refuses_values_outside_its_bounds():
    with pytest.raises(MeasurementError, match="outside"):
        stats.bounded_mean([0.5, 1.5], lower=0.0, upper=1.0, rng=rng())
    with pytest.raises(MeasurementError, match="empty"):
        stats.bounded_mean([0.5, 0.5], lower=1.0, upper=1.0, rng=rng())
