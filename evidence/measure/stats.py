"""Interval estimates for measurement results.

Two estimators, both returning :class:`evidence.records.ConfidenceInterval`:

* :func:`bootstrap_mean` — the mean over independent units (sequences, prompts)
  with a percentile bootstrap interval, resampling units with a seeded
  :class:`numpy.random.Generator`.
* :func:`wilson_interval` — the Wilson score interval for a rate (k successes
  out of n trials).

Non-finite inputs are refused with :class:`evidence.errors.MeasurementError`:
an interval computed over NaN would be meaningless, and a record cannot carry
one anyway.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from evidence.errors import MeasurementError
from evidence.records import ConfidenceInterval

__all__ = ["BOOTSTRAP_METHOD", "WILSON_METHOD", "bootstrap_mean", "wilson_interval"]

#: ``ConfidenceInterval.method`` written by :func:`bootstrap_mean`.
BOOTSTRAP_METHOD = "percentile bootstrap"
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
    alpha = (1.0 - level) / 2.0
    lower, upper = np.quantile(means, [alpha, 1.0 - alpha])
    ci = ConfidenceInterval(
        lower=float(lower),
        upper=float(upper),
        level=level,
        method=BOOTSTRAP_METHOD,
        n=n,
        resamples=resamples,
    )
    return point, ci


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
