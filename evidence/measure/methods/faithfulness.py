"""Circuit rankings and faithfulness curves, shared by node and edge circuits.

A ranking orders components; the curve keeps each ranking's top k clean and
patches the rest, and :class:`CurveScorer` turns the task metric under those
patches into faithfulness ``(m(C_k) - m(0)) / max(m(M) - m(0), floor)``, with
paired bootstrap draws (:class:`evidence.measure.stats.Bootstrap`), and into
areas (CPR, CMD). See docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from evidence.errors import MeasurementError
from evidence.measure.stats import Bootstrap, curve_area, spearman
from evidence.records import ConfidenceInterval

__all__ = [
    "Circuit",
    "CircuitSearch",
    "Curve",
    "CurveScorer",
    "Rankings",
    "circuit_size",
    "curve_ks",
    "curve_values",
    "evaluate_circuit",
    "find_circuit",
    "faithfulness",
    "rank_agreement",
    "same_clean_run",
    "screen",
    "with_zero",
]


def faithfulness(circuit: np.ndarray, clean: np.ndarray, empty: np.ndarray, floor: float) -> np.ndarray:
    """``(mean(circuit) - mean(empty)) / max(mean(clean) - mean(empty), floor)``, over the last axis."""
    base = empty.mean(axis=-1)
    gap = np.maximum(clean.mean(axis=-1) - base, floor)
    result: np.ndarray = (circuit.mean(axis=-1) - base) / gap
    return result


def curve_ks(n: int, max_points: int, extra: int | None) -> list[int]:
    """The sizes k a curve is drawn at: every k up to ``max_points`` components, else evenly spaced; plus ``extra``."""
    if n <= max_points:
        ks = set(range(1, n + 1))
    else:
        ks = {int(round(x)) for x in np.linspace(1, n, max_points)}
    if extra is not None:
        ks.add(extra)
    return sorted(ks)


@dataclass(frozen=True)
class Curve:
    """A faithfulness curve at ``ks``: point values ``[len(ks)]`` and bootstrap draws ``[R, len(ks)]``."""

    point: np.ndarray
    draws: np.ndarray


@dataclass(frozen=True)
class CurveScorer:
    """Turns task-metric values into faithfulness, with paired bootstrap draws."""

    ks: list[int]
    n_components: int
    boot: Bootstrap
    clean: np.ndarray  # m(M) per example
    empty: np.ndarray  # m(0) per example
    floor: float

    def curve(self, values: np.ndarray) -> Curve:
        """``values [..., len(ks), n]`` -> the curve, averaged over any leading axis (random orderings)."""
        point = faithfulness(values, self.clean, self.empty, self.floor)
        r_clean, r_empty = self.boot.resample_means(self.clean), self.boot.resample_means(self.empty)
        shape = (-1,) + (1,) * (values.ndim - 1)
        base = r_empty.reshape(shape)
        gap = np.maximum(r_clean - r_empty, self.floor).reshape(shape)
        draws = (self.boot.resample_means(values) - base) / gap  # [R, ..., len(ks)]
        while point.ndim > 1:
            point, draws = point.mean(axis=0), draws.mean(axis=1)
        return Curve(point=point, draws=draws)

    def _fractions(self) -> np.ndarray:
        return np.array([0.0, *(k / self.n_components for k in self.ks)])

    def cpr(self, curve: Curve) -> tuple[float, np.ndarray]:
        """Area under the curve over the size fraction, with f(0) = 0: point and draws."""
        x = self._fractions()
        return float(curve_area(x, with_zero(curve.point))), curve_area(x, with_zero(curve.draws))

    def cmd(self, curve: Curve) -> tuple[float, np.ndarray]:
        """Area under ``|1 - f|`` over the size fraction, with f(0) = 0: point and draws."""
        x = self._fractions()
        return (
            float(curve_area(x, np.abs(1.0 - with_zero(curve.point)))),
            curve_area(x, np.abs(1.0 - with_zero(curve.draws))),
        )


def with_zero(values: np.ndarray) -> np.ndarray:
    """``values`` with f(0) = 0 prepended along the last axis."""
    zeros = np.zeros(values.shape[:-1] + (1,))
    return np.concatenate([zeros, values], axis=-1)


@dataclass(frozen=True)
class Rankings:
    """The component orderings a curve is drawn for."""

    circuit: list[int]  # the named attribution method's own ranking: by |attribution| (the headline)
    patching: list[int]  # verified components by |effect of patching each alone|, then the rest by |attribution|
    random: list[list[int]]

    @staticmethod
    def of(
        screen: list[int], verified: list[int], effect_mean: np.ndarray, rng: np.random.Generator, draws: int
    ) -> Rankings:
        """From the attribution order ``screen``, the verified components' mean effects, and random orderings."""
        verified_set = set(verified)
        return Rankings(
            circuit=screen,
            patching=[verified[int(i)] for i in np.argsort(-np.abs(effect_mean), kind="stable")]
            + [j for j in screen if j not in verified_set],
            random=[[int(j) for j in rng.permutation(len(screen))] for _ in range(draws)],
        )


def curve_values(
    patched_metrics: Callable[[list[frozenset[int]]], np.ndarray], n: int, rankings: Rankings, ks: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task metric with each ranking's top-k of ``n`` components kept clean and the rest patched.

    ``[len(ks), examples]`` for the circuit and the patching rankings, ``[R, len(ks), examples]`` for
    the random ones; ``patched_metrics`` maps patch sets to metric values ``[sets, examples]``.
    """
    everything = frozenset(range(n))

    def patched(order: Sequence[int], k: int) -> frozenset[int]:
        return everything - frozenset(order[:k])

    wanted: dict[frozenset[int], int] = {}  # each distinct set is run once
    for order in [rankings.circuit, rankings.patching, *rankings.random]:
        for k in ks:
            wanted.setdefault(patched(order, k), len(wanted))
    values = patched_metrics(list(wanted))

    def curve(order: Sequence[int]) -> np.ndarray:
        return np.stack([values[wanted[patched(order, k)]] for k in ks])

    return curve(rankings.circuit), curve(rankings.patching), np.stack([curve(o) for o in rankings.random])


def same_clean_run(a: np.ndarray, b: np.ndarray, where: str) -> None:
    """The clean metric must not depend on which pass computed it."""
    drift = float(np.abs(a - b).max())
    if drift > 1e-4 * max(1.0, float(np.abs(a).max())):
        raise MeasurementError(f"the clean run differs by {drift:.3g} between {where}")


def circuit_size(ks: list[int], curve: Curve, target: float, n: int) -> int:
    """The smallest evaluated k whose faithfulness reaches ``target`` (all ``n`` components if none does)."""
    reached = [k for k, f in zip(ks, curve.point, strict=True) if f >= target]
    return reached[0] if reached else n


def rank_agreement(scores: np.ndarray, effects: np.ndarray, boot: Bootstrap) -> tuple[float, np.ndarray]:
    """Spearman between mean ``scores`` and mean ``effects`` (both ``[n, components]``) and its bootstrap draws."""
    point = float(spearman(scores.mean(axis=0), effects.mean(axis=0))[0])
    return point, spearman(boot.resample_means(scores.T), boot.resample_means(effects.T))


# -- one circuit: screen, verify, rank, curve ----------------------------------------------------

#: ``patch(sets, progress)``: the task metric ``[sets, examples]`` with each set of components patched.
PatchFn = Callable[[list[frozenset[int]], Callable[[float], None]], np.ndarray]


@dataclass(frozen=True)
class CircuitSearch:
    """How a circuit is searched: how many components are verified, curve points, size and target."""

    max_patched: int  # components verified by patching each alone
    max_curve_points: int
    k: int | None  # a fixed circuit size, or None for the smallest k reaching ``target``
    random_rankings: int
    floor: float  # the smallest task effect faithfulness is measured against
    target: float


@dataclass(frozen=True)
class Circuit:
    """What one search (nodes or edges) found: scores, verified effects, rankings and curves at ``ks``."""

    n: int  # components
    scores: np.ndarray  # attribution scores [examples, n]
    verified: list[int]
    effects: np.ndarray  # effect of patching each verified component alone [examples, verified]
    clean: np.ndarray  # m(M) per example
    empty: np.ndarray  # m(0) per example, every component patched
    rankings: Rankings
    scorer: CurveScorer
    main: Curve  # the circuit (attribution) ranking's curve
    by_patching: Curve
    rnd: Curve  # mean over the random rankings
    k: int

    @property
    def ki(self) -> int:
        """Index of ``k`` among the curve's points."""
        return self.scorer.ks.index(self.k)

    def at_k(self, curve: Curve) -> float:
        """The curve's point value at ``k``."""
        return float(curve.point[self.ki])

    def effect_of(self) -> dict[int, float]:
        """Mean measured effect of each verified component."""
        effect_mean = self.effects.mean(axis=0)
        return {j: float(effect_mean[i]) for i, j in enumerate(self.verified)}

    def task_effect(self) -> tuple[float, ConfidenceInterval]:
        """m(M) - m(0) averaged over examples, and its interval."""
        effect = self.clean - self.empty
        point = float(effect.mean())
        return point, self.scorer.boot.interval(point, self.scorer.boot.resample_means(effect))

    def gain_over_random(self) -> tuple[float, np.ndarray]:
        """Faithfulness at ``k`` minus the random rankings' at ``k``: point and paired bootstrap draws."""
        ki = self.ki
        return self.at_k(self.main) - self.at_k(self.rnd), self.main.draws[:, ki] - self.rnd.draws[:, ki]


def screen(scores: np.ndarray, max_patched: int) -> tuple[list[int], list[int]]:
    """``(order, verified)``: components by ``|mean score|``, and the first ``max_patched`` of them, sorted."""
    order = [int(j) for j in np.argsort(-np.abs(scores.mean(axis=0)), kind="stable")]
    return order, sorted(order[:max_patched])


def find_circuit(
    scores: np.ndarray,
    attribution_clean: np.ndarray,
    patch: PatchFn,
    *,
    search: CircuitSearch,
    boot: Bootstrap,
    rng: np.random.Generator,
    stages: tuple[str, str, str],
    progress: Callable[[float, str], None],
) -> Circuit:
    """Verify the top-scored components by patching each alone, rank them, and draw the ranking's curve.

    ``scores``: attribution ``[examples, components]``; ``attribution_clean``: the
    clean metric the attribution pass computed (it must agree with the patching
    pass's). ``stages``: progress messages of the patching and curve stages, and
    what the two clean runs are called in an error.
    """
    n = scores.shape[1]
    order, verified = screen(scores, search.max_patched)
    progress(0.0, stages[0])
    sets = [frozenset(), *(frozenset({j}) for j in verified), frozenset(range(n))]
    values = patch(sets, lambda f: progress(0.4 * f, stages[0]))
    clean, alone, empty = values[0], values[1:-1], values[-1]
    same_clean_run(clean, attribution_clean, stages[2])
    effects = (alone - clean).T  # [examples, verified]
    rankings = Rankings.of(order, verified, effects.mean(axis=0), rng, search.random_rankings)

    progress(0.4, stages[1])
    ks = curve_ks(n, search.max_curve_points, search.k)
    curves = curve_values(lambda s: patch(s, lambda f: progress(0.4 + 0.6 * f, stages[1])), n, rankings, ks)
    scorer = CurveScorer(ks, n, boot, clean, empty, search.floor)
    main, by_patching, rnd = (scorer.curve(c) for c in curves)
    k = search.k if search.k is not None else circuit_size(ks, main, search.target, n)
    return Circuit(n, scores, verified, effects, clean, empty, rankings, scorer, main, by_patching, rnd, k)


def evaluate_circuit(
    found: Circuit, patch: PatchFn, *, boot: Bootstrap, progress: Callable[[float, str], None], stage: str
) -> Circuit:
    """``found`` (chosen on the discovery examples) scored on other examples: same rankings, same ``k``.

    ``patch`` runs on the evaluation examples and ``boot`` resamples them. The
    returned circuit keeps the discovery scores and verified effects (what the
    choice rested on) and replaces the clean and all-patched runs, the scorer
    and the three curves by their evaluation values.
    """
    n, ks, everything = found.n, found.scorer.ks, frozenset(range(found.n))
    progress(0.0, stage)
    ends = patch([frozenset(), everything], lambda f: progress(0.1 * f, stage))
    clean, empty = ends[0], ends[1]
    curves = curve_values(lambda s: patch(s, lambda f: progress(0.1 + 0.9 * f, stage)), n, found.rankings, ks)
    scorer = CurveScorer(ks, n, boot, clean, empty, found.scorer.floor)
    main, by_patching, rnd = (scorer.curve(c) for c in curves)
    return replace(found, clean=clean, empty=empty, scorer=scorer, main=main, by_patching=by_patching, rnd=rnd)
