"""Every interval and test the suite uses, in one place.

All return :class:`evidence.records.ConfidenceInterval` where an interval is meant:

* :func:`percentile_interval` — the one percentile-bootstrap interval; every
  bootstrap of the suite ends here (:func:`bootstrap_mean`, :class:`Bootstrap`,
  :func:`bootstrap_auroc`, :func:`bootstrap_delta_auroc`, and the measurements'
  own statistics).
* :func:`bootstrap_mean` — the mean over independent units (sequences, prompts),
  resampling units with a seeded :class:`numpy.random.Generator`; for a paired
  comparison pass the per-unit differences (:func:`paired_difference`).
  :func:`bounded_mean` is the same for values in known bounds, with an exact
  interval when every value is the same (where the bootstrap's has zero width).
* :class:`Bootstrap` — one fixed set of resampling indices shared by several
  statistics of the same units (so that their draws are paired).
* :func:`wilson_interval` — the Wilson score interval for a rate.
* :func:`ranks`, :func:`spearman`, :func:`auroc` and its bootstraps — rank statistics.
* :func:`auroc_interval`, :func:`delta_auroc_interval` — DeLong intervals for an AUROC and
  for the difference of two on the same units, never of zero width at 0 or 1.
* :func:`curve_area` — the trapezoid rule for curves such as faithfulness vs k.

Non-finite inputs are refused with :class:`evidence.errors.MeasurementError`:
an interval computed over NaN would be meaningless, and a record cannot carry
one anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from evidence.errors import MeasurementError
from evidence.records import ConfidenceInterval

__all__ = [
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

#: ``ConfidenceInterval.method`` written by :func:`bootstrap_mean`.
BOOTSTRAP_METHOD = "percentile bootstrap"
#: ``ConfidenceInterval.method`` of bootstraps that resample each class separately.
STRATIFIED_BOOTSTRAP = "stratified percentile bootstrap"
#: ``ConfidenceInterval.method`` written by :func:`wilson_interval`.
WILSON_METHOD = "wilson"


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise MeasurementError(
            f"confidence level {level} is not between 0 and 1",
            hint="use a coverage such as 0.95",
        )


def bootstrap_mean(
    values: ArrayLike,
    *,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
    name: str = "values",
) -> tuple[float, ConfidenceInterval]:
    """The mean of ``values`` (one per unit) and its percentile bootstrap interval.

    Units are resampled with replacement ``resamples`` times; the interval is
    the (1 - level)/2 and (1 + level)/2 quantiles of the resampled means. For
    a paired comparison pass the per-unit differences.
    """
    _check_level(level)
    if resamples < 1:
        raise MeasurementError(f"bootstrap of {name}: resamples must be at least 1, got {resamples}")
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1:
        raise MeasurementError(f"bootstrap of {name}: expected one value per unit, got shape {data.shape}")
    n = int(data.shape[0])
    if n < 2:
        raise MeasurementError(
            f"bootstrap of {name}: needs at least 2 units, got {n}",
            hint="increase the number of sequences or prompts",
        )
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise MeasurementError(f"bootstrap of {name}: {bad} of {n} values are not finite")
    point = float(data.mean())
    index = rng.integers(0, n, size=(resamples, n))
    means = data[index].mean(axis=1)
    return point, percentile_interval(point, means, level=level, n=n, contain_point=False)


def paired_difference(
    a: ArrayLike,
    b: ArrayLike,
    *,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
    name: str = "difference",
) -> tuple[float, ConfidenceInterval]:
    """The mean of ``a - b`` over paired units and its percentile bootstrap interval."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise MeasurementError(f"paired {name}: the two sides hold {x.shape} and {y.shape} units")
    return bootstrap_mean(x - y, rng=rng, level=level, resamples=resamples, name=name)


def percentile_interval(
    point: float,
    draws: ArrayLike,
    *,
    level: float,
    n: int,
    method: str = BOOTSTRAP_METHOD,
    contain_point: bool = True,
) -> ConfidenceInterval:
    """The percentile interval of bootstrap ``draws`` of a statistic whose estimate is ``point``.

    ``contain_point``: widen the interval, if need be, to contain the point
    estimate (with few resamples, or a skewed statistic such as a ratio, the
    estimate can fall outside the percentile range).
    """
    _check_level(level)
    values = np.asarray(draws, dtype=np.float64)
    if values.size < 1:
        raise MeasurementError("a bootstrap interval needs at least one resample")
    alpha = (1.0 - level) / 2.0
    lower, upper = (float(v) for v in np.quantile(values, [alpha, 1.0 - alpha]))
    if contain_point:
        lower, upper = min(lower, point), max(upper, point)
    return ConfidenceInterval(
        lower=lower, upper=upper, level=level, method=method, n=n, resamples=int(values.shape[0])
    )


@dataclass(frozen=True)
class Bootstrap:
    """One set of resampling indices ``[resamples, n]`` over ``n`` units, shared by several statistics."""

    index: np.ndarray
    level: float

    @classmethod
    def draw(cls, n: int, *, rng: np.random.Generator, resamples: int, level: float) -> Bootstrap:
        """Draw ``resamples`` resamples of ``n`` units with replacement."""
        return cls(index=rng.integers(0, n, size=(resamples, n)), level=level)

    def resample_means(self, values: np.ndarray) -> np.ndarray:
        """``values [..., n]`` -> resampled means ``[resamples, ...]``."""
        moved = np.moveaxis(values, -1, 0)[self.index]  # [R, n, ...]
        result: np.ndarray = moved.mean(axis=1)
        return result

    def interval(self, point: float, draws: np.ndarray) -> ConfidenceInterval:
        """The percentile interval of ``draws`` (one per resample), containing ``point``."""
        return percentile_interval(point, draws, level=self.level, n=int(self.index.shape[1]))


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> ConfidenceInterval:
    """The Wilson score interval for a rate of ``successes`` out of ``n``."""
    _check_level(level)
    if n < 1:
        raise MeasurementError(f"a rate needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise MeasurementError(f"successes={successes} is outside [0, n={n}]")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # Clip rounding noise so that the observed rate always lies inside.
    lower = min(max(0.0, centre - half), p)
    upper = max(min(1.0, centre + half), p)
    return ConfidenceInterval(lower=lower, upper=upper, level=level, method=WILSON_METHOD, n=n)


# -- rank statistics ---------------------------------------------------------------------------


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties given their average rank."""
    order = np.argsort(values, axis=-1, kind="stable")
    sorted_vals = np.take_along_axis(values, order, axis=-1)
    n = values.shape[-1]
    ranks_sorted = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), values.shape).copy()
    # average ranks over runs of equal values
    new_run = np.ones(values.shape, dtype=bool)
    new_run[..., 1:] = sorted_vals[..., 1:] != sorted_vals[..., :-1]
    run_id = np.cumsum(new_run, axis=-1)
    flat_ids = run_id + (np.arange(int(np.prod(values.shape[:-1]))).reshape(values.shape[:-1] + (1,)) * (n + 1))
    flat_ids = flat_ids.reshape(-1)
    sums = np.bincount(flat_ids, weights=ranks_sorted.reshape(-1))
    counts = np.bincount(flat_ids)
    avg = (sums[flat_ids] / counts[flat_ids]).reshape(values.shape)
    out: np.ndarray = np.empty_like(avg)
    np.put_along_axis(out, order, avg, axis=-1)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (along the last axis); 0 where either side has no variation."""
    ra = ranks(np.atleast_2d(np.asarray(a, dtype=np.float64)))
    rb = ranks(np.atleast_2d(np.asarray(b, dtype=np.float64)))
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))
    result: np.ndarray = np.where(denom > 0, (ra * rb).sum(axis=-1) / np.where(denom > 0, denom, 1.0), 0.0)
    return result


def auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row pair (``pos`` [..., n1], ``neg`` [..., n0])."""
    n1, n0 = pos.shape[-1], neg.shape[-1]
    r = ranks(np.concatenate([pos, neg], axis=-1))
    u = r[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0
    return np.asarray(u / (n1 * n0))


def finite_scores(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D float array of finite numbers, or a MeasurementError naming ``name``."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise MeasurementError(f"{name}: expected a non-empty list of scores, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise MeasurementError(f"{name}: scores contain non-finite values")
    return data


def auroc(positive: ArrayLike, negative: ArrayLike) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half."""
    pos = finite_scores(positive, "AUROC positives")
    neg = finite_scores(negative, "AUROC negatives")
    return float(auroc_rows(pos, neg))


def _check_resamples(level: float, resamples: int) -> None:
    _check_level(level)
    if resamples < 1:
        raise MeasurementError(f"resamples must be at least 1, got {resamples}")


def bootstrap_auroc(
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
) -> tuple[float, ConfidenceInterval]:
    """AUROC and its stratified percentile bootstrap interval (``n`` = positives + negatives)."""
    _check_resamples(level, resamples)
    pos = finite_scores(positive, "AUROC positives")
    neg = finite_scores(negative, "AUROC negatives")
    point = float(auroc_rows(pos, neg))
    ip = rng.integers(0, pos.size, size=(resamples, pos.size))
    ineg = rng.integers(0, neg.size, size=(resamples, neg.size))
    draws = auroc_rows(pos[ip], neg[ineg])
    return point, percentile_interval(point, draws, level=level, n=pos.size + neg.size, method=STRATIFIED_BOOTSTRAP)


def bootstrap_delta_auroc(
    positive_a: ArrayLike,
    negative_a: ArrayLike,
    positive_b: ArrayLike,
    negative_b: ArrayLike,
    *,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
) -> tuple[float, ConfidenceInterval]:
    """AUROC(b) - AUROC(a) for paired score sets (item i of a and of b are the same unit).

    Each resample draws the same positive and negative indices for a and b.
    """
    _check_resamples(level, resamples)
    pa, na = finite_scores(positive_a, "positives a"), finite_scores(negative_a, "negatives a")
    pb, nb = finite_scores(positive_b, "positives b"), finite_scores(negative_b, "negatives b")
    if pa.size != pb.size or na.size != nb.size:
        raise MeasurementError("paired AUROC difference: a and b must hold the same units")
    point = float(auroc_rows(pb, nb) - auroc_rows(pa, na))
    ip = rng.integers(0, pa.size, size=(resamples, pa.size))
    ineg = rng.integers(0, na.size, size=(resamples, na.size))
    draws = auroc_rows(pb[ip], nb[ineg]) - auroc_rows(pa[ip], na[ineg])
    return point, percentile_interval(point, draws, level=level, n=pa.size + na.size, method=STRATIFIED_BOOTSTRAP)


def curve_area(xs: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Area under ``values`` (over the last axis) against ``xs``, by the trapezoid rule."""
    widths = np.diff(np.asarray(xs, dtype=np.float64))
    result: np.ndarray = (widths * (values[..., 1:] + values[..., :-1]) / 2.0).sum(axis=-1)
    return result


# -- exact and score intervals for rates and their differences ----------------------------------

CLOPPER_PEARSON_METHOD = "clopper-pearson"
NEWCOMBE_METHOD = "newcombe hybrid score"


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _bisect(f: Callable[[float], float], target: float, increasing: bool) -> float:
    """The root of ``f(q) = target`` on [0, 1] for a monotone ``f``."""
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def clopper_pearson_interval(successes: int, n: int, *, level: float = 0.95) -> ConfidenceInterval:
    """The exact (Clopper–Pearson) interval for a rate: never zero width, conservative coverage."""
    _check_level(level)
    if n < 1:
        raise MeasurementError(f"a rate needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise MeasurementError(f"successes={successes} is outside [0, n={n}]")
    alpha = (1.0 - level) / 2.0
    p = successes / n
    # lower: P(X >= k | p) = alpha, i.e. 1 - cdf(k - 1; p) = alpha (increasing in p)
    lower = 0.0 if successes == 0 else _bisect(lambda q: 1.0 - _binom_cdf(successes - 1, n, q), alpha, True)
    # upper: cdf(k; p) = alpha (decreasing in p)
    upper = 1.0 if successes == n else _bisect(lambda q: _binom_cdf(successes, n, q), alpha, False)
    return ConfidenceInterval(lower=min(lower, p), upper=max(upper, p), level=level,
                              method=CLOPPER_PEARSON_METHOD, n=n)


def newcombe_difference(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, level: float = 0.95
) -> tuple[float, ConfidenceInterval]:
    """Rate a minus rate b for independent samples, with Newcombe's hybrid score interval (method 10)."""
    wa = wilson_interval(successes_a, n_a, level=level)
    wb = wilson_interval(successes_b, n_b, level=level)
    pa, pb = successes_a / n_a, successes_b / n_b
    d = pa - pb
    lower = d - math.sqrt((pa - wa.lower) ** 2 + (wb.upper - pb) ** 2)
    upper = d + math.sqrt((wa.upper - pa) ** 2 + (pb - wb.lower) ** 2)
    return d, ConfidenceInterval(lower=max(-1.0, lower), upper=min(1.0, upper), level=level,
                                 method=NEWCOMBE_METHOD, n=n_a + n_b)


# -- AUROC with an interval that means what it says near 0 and 1 --------------------------------

DELONG_METHOD = "delong (logit scale)"
PAIRS_EXACT_METHOD = "exact, disjoint pairs"


def _structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive and per negative, the mean of the pair kernel."""
    psi = (pos[:, None] > neg[None, :]).astype(np.float64) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def _delong_variance(pos: np.ndarray, neg: np.ndarray) -> float:
    """DeLong's variance of the empirical AUROC from its structural components."""
    v10, v01 = _structural_components(pos, neg)  # per positive, per negative
    s10 = float(v10.var(ddof=1)) if pos.size > 1 else 0.0
    s01 = float(v01.var(ddof=1)) if neg.size > 1 else 0.0
    return s10 / pos.size + s01 / neg.size


def auroc_interval(
    positive: ArrayLike, negative: ArrayLike, *, level: float = 0.95
) -> tuple[float, ConfidenceInterval]:
    """AUROC with an interval that is never of zero width.

    Inside (0, 1): DeLong's variance, on the logit scale (so the interval stays inside [0, 1]
    and widens towards the boundary). At 0 or 1, where DeLong's variance vanishes: the exact
    Clopper-Pearson bound from ``m = min(n_pos, n_neg)`` disjoint positive/negative pairs, each
    of which is ranked correctly with probability AUROC, independently; perfect separation of
    all pairs is at least as likely as of those ``m``, so the bound is valid whatever the scores'
    distributions (and conservative).
    """
    _check_level(level)
    pos = finite_scores(positive, "AUROC positives")
    neg = finite_scores(negative, "AUROC negatives")
    if pos.size < 2 or neg.size < 2:
        raise MeasurementError(
            f"an AUROC interval needs at least 2 positives and 2 negatives, got {pos.size} and {neg.size}"
        )
    point = float(auroc_rows(pos, neg))
    n = int(pos.size + neg.size)
    variance = _delong_variance(pos, neg)
    if 0.0 < point < 1.0 and variance > 0.0:
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        logit = math.log(point / (1.0 - point))
        se = math.sqrt(variance) / (point * (1.0 - point))
        lower = 1.0 / (1.0 + math.exp(-(logit - z * se)))
        upper = 1.0 / (1.0 + math.exp(-(logit + z * se)))
        return point, ConfidenceInterval(lower=min(lower, point), upper=max(upper, point), level=level,
                                         method=DELONG_METHOD, n=n)
    m = int(min(pos.size, neg.size))
    exact = clopper_pearson_interval(int(round(point * m)), m, level=level)
    return point, ConfidenceInterval(lower=min(exact.lower, point), upper=max(exact.upper, point), level=level,
                                     method=PAIRS_EXACT_METHOD, n=n)


def fpr_upper_bound(false_positives: int, n_controls: int, *, level: float = 0.95) -> float:
    """The one-sided upper confidence bound of a false-positive rate (Clopper-Pearson, level ``level``)."""
    # A one-sided bound at `level` is the upper end of the two-sided interval at 2 * level - 1.
    return clopper_pearson_interval(false_positives, n_controls, level=2.0 * level - 1.0).upper


def controls_needed(target_fpr: float, *, level: float = 0.95) -> int:
    """Fewest controls for which zero false positives bound the FPR below ``target_fpr`` at ``level``."""
    if not 0.0 < target_fpr < 1.0:
        raise MeasurementError(f"target false-positive rate {target_fpr} is not in (0, 1)")
    # With 0 of n flagged, the one-sided Clopper-Pearson upper bound is 1 - (1 - level) ** (1 / n).
    return int(math.ceil(math.log(1.0 - level) / math.log(1.0 - target_fpr)))


# -- the difference of two AUROCs on the same units ---------------------------------------------

DELONG_PAIRED_METHOD = "delong, paired difference"
BONFERRONI_AUROCS_METHOD = "bonferroni, two AUROC intervals"


def delta_auroc_interval(
    positive_a: ArrayLike,
    negative_a: ArrayLike,
    positive_b: ArrayLike,
    negative_b: ArrayLike,
    *,
    level: float = 0.95,
) -> tuple[float, ConfidenceInterval]:
    """AUROC(b) - AUROC(a) for two score sets of the same units, with an interval that is never of zero width.

    Item i of ``positive_a`` and of ``positive_b`` (likewise the negatives) is the same unit
    scored two ways, so the two AUROCs are correlated. Inside (both AUROCs in (0, 1)):
    DeLong, DeLong and Clarke-Pearson (1988) for the paired difference, the variance of the
    per-positive and per-negative differences of the structural components, and a normal
    interval clipped to [-1, 1]. At the boundary (either AUROC 0 or 1), DeLong's variance of
    that AUROC vanishes and the paired variance would treat it as known exactly (both at 1
    gives [0, 0]); the same happens whenever the components' differences do not vary. There the
    interval is the Bonferroni combination of the two intervals of :func:`auroc_interval`
    (DeLong on the logit scale, the exact disjoint-pair bound at 0 and 1), each at level
    ``(1 + level) / 2``: ``[lower_b - upper_a, upper_b - lower_a]``. Both hold together with
    probability at least ``level`` whatever the correlation of the two AUROCs, so the interval
    is valid (and conservative); it contains the estimate, and it has positive width because
    each single interval does.
    """
    _check_level(level)
    pa, na = finite_scores(positive_a, "positives a"), finite_scores(negative_a, "negatives a")
    pb, nb = finite_scores(positive_b, "positives b"), finite_scores(negative_b, "negatives b")
    if pa.size != pb.size or na.size != nb.size:
        raise MeasurementError("paired AUROC difference: a and b must hold the same units")
    if pa.size < 2 or na.size < 2:
        raise MeasurementError(
            f"an AUROC difference needs at least 2 positives and 2 negatives, got {pa.size} and {na.size}"
        )
    v10a, v01a = _structural_components(pa, na)
    v10b, v01b = _structural_components(pb, nb)
    auc_a, auc_b = float(v10a.mean()), float(v10b.mean())
    point = auc_b - auc_a
    n = int(pa.size + na.size)
    variance = float((v10b - v10a).var(ddof=1)) / pa.size + float((v01b - v01a).var(ddof=1)) / na.size
    if 0.0 < auc_a < 1.0 and 0.0 < auc_b < 1.0 and variance > 0.0:
        half = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(variance)
        lower, upper = max(-1.0, point - half), min(1.0, point + half)
        return point, ConfidenceInterval(lower=min(lower, point), upper=max(upper, point), level=level,
                                         method=DELONG_PAIRED_METHOD, n=n)
    each = (1.0 + level) / 2.0
    _, ci_a = auroc_interval(pa, na, level=each)
    _, ci_b = auroc_interval(pb, nb, level=each)
    lower = max(-1.0, ci_b.lower - ci_a.upper)
    upper = min(1.0, ci_b.upper - ci_a.lower)
    return point, ConfidenceInterval(lower=min(lower, point), upper=max(upper, point), level=level,
                                     method=BONFERRONI_AUROCS_METHOD, n=n)


# -- the mean of a bounded variable, never of zero width -----------------------------------------

CONSTANT_SAMPLE_METHOD = "exact, constant sample of a bounded variable"


def bounded_mean(
    values: ArrayLike,
    *,
    lower: float,
    upper: float,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
    name: str = "values",
) -> tuple[float, ConfidenceInterval]:
    """The mean of ``values`` that lie in ``[lower, upper]``, with an interval that is never of zero width.

    While the values vary: :func:`bootstrap_mean`, unchanged (the same draws from ``rng``).
    When every value is the same ``c`` (say every sequence puts all or none of a head's
    attention on a key), every resample is ``c`` and the bootstrap would claim the mean
    exactly. The interval is then the exact bound for ``n`` equal values of a variable in
    ``[lower, upper]``: with ``c`` scaled to [0, 1] and ``t = ((1 - level) / 2) ** (1 / n)``,
    ``[c * t, 1 - (1 - c) * t]``, scaled back. Were the true mean ``mu`` below ``c * t``,
    Markov's inequality would give ``P(X >= c) <= mu / c < t``, so ``n`` values all at least
    ``c`` would have probability below ``(1 - level) / 2``; symmetrically above. At ``c = 0``
    or ``1`` this is the Clopper-Pearson interval for 0 or ``n`` successes in ``n`` trials,
    the bound :func:`auroc_interval` uses at the boundary.
    """
    if not upper > lower:
        raise MeasurementError(f"bounded mean of {name}: the bounds [{lower}, {upper}] are empty")
    point, ci = bootstrap_mean(values, rng=rng, level=level, resamples=resamples, name=name)
    data = np.asarray(values, dtype=np.float64)
    if float(data.min()) < lower or float(data.max()) > upper:
        raise MeasurementError(f"bounded mean of {name}: values outside [{lower}, {upper}]")
    if float(data.min()) < float(data.max()):
        return point, ci
    scale = upper - lower
    c = (point - lower) / scale
    t = ((1.0 - level) / 2.0) ** (1.0 / data.size)
    low, high = lower + scale * c * t, lower + scale * (1.0 - (1.0 - c) * t)
    return point, ConfidenceInterval(
        lower=min(low, point), upper=max(high, point), level=level, method=CONSTANT_SAMPLE_METHOD, n=int(data.size)
    )
