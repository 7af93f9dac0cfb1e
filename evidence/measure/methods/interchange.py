"""Interchange interventions on one-dimensional subspaces, and the Proxy Reliance Index.

Causal abstraction with interchange interventions (Geiger et al. 2021) for two
binary variables of a prompt, a *goal* and a *proxy*: each variable gets one
direction in the residual stream (difference in means balanced over the other
variable, or learned as in DAS, Geiger et al. 2024), and a base prompt's
component along it is replaced by a source prompt's. Used by
``goal.proxy_reliance``; the method and its choices are described in
``docs/methods/goal.proxy_reliance.md``.

* :func:`two_folds` — cross-fitting folds, each (goal, proxy) cell split in half, groups kept whole;
* :func:`balanced_directions`, :func:`symmetric_orthonormalise`, :func:`learned_direction` — the subspaces;
* :func:`random_unit_directions` — the random-direction baseline;
* :func:`interchange_pairs` — each aligned base prompt with its goal-swap and proxy-swap sources;
* :func:`interchange_shift`, :func:`patched_logit_diff` — the intervention;
* :func:`last_position_residuals`, :func:`logit_diff` — reading the model without intervention;
* :func:`interchange_effects`, :func:`measure_layer` — per-base effects at one block;
* :func:`restrict` — the same effects on a subset of the bases (the split a layer is chosen on, or reported on);
* :func:`reliance_index`, :func:`bootstrap_reliance_index` — the Proxy Reliance Index (experimental).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import ActivationBuffer, capture_at, scoped_hooks
from evidence.measure.methods.batching import batch_keywords, prompt_batches, run_batch
from evidence.measure.stats import percentile_interval
from evidence.model import LoadedModel
from evidence.records import ConfidenceInterval

__all__ = [
    "GoalProxyPrompts",
    "InterchangeEffect",
    "InterchangePairs",
    "LayerResult",
    "balanced_directions",
    "bootstrap_reliance_index",
    "interchange_effects",
    "interchange_pairs",
    "interchange_shift",
    "last_position_residuals",
    "learned_direction",
    "logit_diff",
    "measure_layer",
    "patched_logit_diff",
    "random_unit_directions",
    "reliance_index",
    "restrict",
    "symmetric_orthonormalise",
    "two_folds",
]


# -- prompts, folds and pairs ------------------------------------------------------------------


@dataclass(frozen=True)
class GoalProxyPrompts:
    """The prompts of both sets with their token ids and variable values, aligned set first."""

    ids: list[str]
    seqs: list[list[int]]
    goal: np.ndarray  # bool
    proxy: np.ndarray  # bool
    aligned: np.ndarray  # bool: from the aligned set (goal == proxy)
    groups: list[str] | None = None  # the prompts' group keys (evidence.datasets.group_keys); None: no groups

    @property
    def cells(self) -> np.ndarray:
        """The (goal, proxy) cell of every prompt as ``2 * goal + proxy``."""
        cells: np.ndarray = 2 * self.goal.astype(np.int64) + self.proxy.astype(np.int64)
        return cells


@dataclass(frozen=True)
class InterchangePairs:
    """Every aligned base prompt and its two sources, as prompt indices."""

    base: np.ndarray  # prompt index of each aligned base
    goal_source: np.ndarray  # goal flipped, proxy kept
    proxy_source: np.ndarray  # proxy flipped, goal kept


def two_folds(cells: np.ndarray, rng: np.random.Generator, groups: Sequence[str] | None = None) -> np.ndarray:
    """Fold 0 or 1 for every unit: each cell label is split in half (the odd one out to fold 0).

    With ``groups`` (one key per unit), whole groups are dealt instead of units, so that the
    members of a group share a fold: groups are stratified by the set of cell labels their
    members carry, and each stratum's groups are split in half the same way. Without groups
    every unit is a group of its own, which is the split of each cell label in half.
    """
    keys = [str(i) for i in range(cells.shape[0])] if groups is None else list(groups)
    if len(keys) != cells.shape[0]:
        raise MeasurementError(f"two folds: {len(keys)} group keys for {cells.shape[0]} units")
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    units = list(members.values())
    strata: dict[tuple[int, ...], list[int]] = {}
    for u, idx in enumerate(units):
        strata.setdefault(tuple(sorted({int(c) for c in cells[idx]})), []).append(u)
    folds = np.zeros(cells.shape[0], dtype=np.int64)
    for stratum in sorted(strata):
        order = rng.permutation(np.asarray(strata[stratum], dtype=np.int64))
        for u in order[(len(order) + 1) // 2 :]:
            folds[units[int(u)]] = 1
    return folds


def interchange_pairs(prompts: GoalProxyPrompts, folds: np.ndarray, rng: np.random.Generator) -> InterchangePairs:
    """For every aligned base, a random decorrelated source of the same fold for each variable.

    The goal source has the goal flipped and the proxy kept; the proxy source the
    proxy flipped and the goal kept.
    """
    base = np.flatnonzero(prompts.aligned)
    goal_source = np.empty_like(base)
    proxy_source = np.empty_like(base)
    decorrelated = ~prompts.aligned
    for row, b in enumerate(base):
        g, p, fold = prompts.goal[b], prompts.proxy[b], folds[b]
        same_fold = decorrelated & (folds == fold)
        goal_pool = np.flatnonzero(same_fold & (prompts.goal != g) & (prompts.proxy == p))
        proxy_pool = np.flatnonzero(same_fold & (prompts.goal == g) & (prompts.proxy != p))
        if goal_pool.size == 0 or proxy_pool.size == 0:
            raise MeasurementError(
                f"fold {fold} holds no decorrelated prompt to swap into the base {prompts.ids[b]!r}",
                hint="give goal.decorrelated more prompts (or groups) of each goal/proxy combination",
            )
        goal_source[row] = goal_pool[rng.integers(0, goal_pool.size)]
        proxy_source[row] = proxy_pool[rng.integers(0, proxy_pool.size)]
    return InterchangePairs(base, goal_source, proxy_source)


# -- the subspaces -----------------------------------------------------------------------------


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm <= 1e-12:
        raise MeasurementError(f"the {what} direction is zero: the activations do not differ between its values")
    return v / norm


def balanced_directions(acts: np.ndarray, goal: np.ndarray, proxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit goal and proxy difference-in-means directions, each balanced over the other variable.

    ``goal = ((m11 - m01) + (m10 - m00)) / 2`` and ``proxy = ((m11 - m10) + (m01 - m00)) / 2``
    where ``m_gp`` is the mean activation of the cell with goal ``g`` and proxy ``p``.
    """
    means: dict[tuple[int, int], np.ndarray] = {}
    for g in (0, 1):
        for p in (0, 1):
            mask = (goal == bool(g)) & (proxy == bool(p))
            if not mask.any():
                raise MeasurementError(f"no prompt with goal={g}, proxy={p} to fit the directions on")
            means[(g, p)] = acts[mask].mean(axis=0)
    goal_dir = ((means[1, 1] - means[0, 1]) + (means[1, 0] - means[0, 0])) / 2.0
    proxy_dir = ((means[1, 1] - means[1, 0]) + (means[0, 1] - means[0, 0])) / 2.0
    return _unit(goal_dir, "goal"), _unit(proxy_dir, "proxy")


def symmetric_orthonormalise(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The orthonormal pair closest to unit vectors ``u`` and ``v`` (Löwdin): both move by the same angle."""
    c = float(np.dot(u, v))
    if abs(c) > 1.0 - 1e-9:
        raise MeasurementError("the goal and proxy directions are parallel, so they cannot be separated")
    a = 0.5 * (1.0 / np.sqrt(1.0 + c) + 1.0 / np.sqrt(1.0 - c))
    b = 0.5 * (1.0 / np.sqrt(1.0 + c) - 1.0 / np.sqrt(1.0 - c))
    return a * u + b * v, b * u + a * v


def learned_direction(
    model: LoadedModel,
    layer: int,
    seqs: Sequence[Sequence[int]],
    base: np.ndarray,
    source: np.ndarray,
    predicted_same: np.ndarray,
    init: np.ndarray,
    answers: tuple[int, int],
    *,
    steps: int,
    lr: float,
    batch_size: int,
) -> np.ndarray:
    """A unit direction learned so that interchanging along it gives the answer a hypothesis predicts (DAS).

    ``seqs`` are the base prompts, ``base`` and ``source`` the last-position
    activations after block ``layer`` of each base and its source, and
    ``predicted_same`` whether the hypothesis predicts the answer ``same`` after
    the swap. Starting from ``init``, Adam minimises the logistic loss of the
    swapped logit difference against that prediction (full batch); only the
    direction is optimised, the model's weights get no gradient.
    """
    u = torch.tensor(init, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([u], lr=lr)
    base_t = torch.from_numpy(base).to(torch.float32)
    source_t = torch.from_numpy(source).to(torch.float32)
    target = torch.from_numpy(predicted_same.astype(np.float32))
    name = f"blocks.{layer}.hook_resid_post"
    groups = list(prompt_batches(model.bridge, seqs, batch_size))
    for _ in range(steps):
        total = torch.zeros_like(u)
        for idx, batch in groups:
            with torch.enable_grad():
                d = u / u.norm()
                shift = ((source_t[idx] - base_t[idx]) @ d)[:, None] * d[None, :]

                def add(activation: torch.Tensor, hook: Any, shift: torch.Tensor = shift) -> torch.Tensor:
                    last = activation[:, -1:, :] + shift[:, None, :].to(activation)
                    return torch.cat([activation[:, :-1, :], last], dim=1)

                with scoped_hooks(model.bridge, [(name, add)]):
                    logits = run_batch(model.bridge, batch)[:, -1, :].float()
                ld = logits[:, answers[0]] - logits[:, answers[1]]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(ld, target[idx], reduction="sum")
                (grad,) = torch.autograd.grad(loss / len(seqs), [u])
            total += grad
        optimiser.zero_grad(set_to_none=True)
        u.grad = total
        optimiser.step()
    out = (u / u.norm()).detach().to(torch.float64).numpy()
    if not np.all(np.isfinite(out)):
        raise MeasurementError(f"the learned direction after block {layer} is not finite")
    return np.asarray(out)


def random_unit_directions(count: int, d_model: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` directions drawn uniformly on the unit sphere of ``d_model`` dimensions: ``[count, d_model]``."""
    raw = rng.standard_normal((count, d_model))
    directions: np.ndarray = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return directions


# -- reading and intervening -------------------------------------------------------------------


def interchange_shift(base: np.ndarray, source: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """What to add to each base row so that its component along unit ``direction`` becomes the source's."""
    coeff: np.ndarray = (source - base) @ direction
    shift: np.ndarray = coeff[:, None] * direction[None, :]
    return shift


def last_position_residuals(model: LoadedModel, seqs: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
    """Last-position ``resid_post`` of every block: float64 ``[layer, prompt, d_model]``.

    Prompts run in the model's batches (:func:`~evidence.measure.methods.batching.prompt_batches`);
    only the last position of each prompt is kept, picked inside the hooks.
    """
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.n_layers)]
    buffer = ActivationBuffer(len(seqs), names, 1, dtype=torch.float64)
    for idx, batch in prompt_batches(model.bridge, seqs, batch_size):
        last = torch.full((len(idx), 1), batch.tokens.shape[1] - 1, dtype=torch.long)
        capture_at(model.bridge, names, batch.tokens, last, buffer, idx, **batch_keywords(batch))
    out = buffer.values[:, :, 0].permute(1, 0, 2).numpy()
    if not np.all(np.isfinite(out)):
        raise MeasurementError("the residual stream holds non-finite values")
    return np.ascontiguousarray(out)


def logit_diff(logits: torch.Tensor, answers: tuple[int, int]) -> np.ndarray:
    """``logit(answers[0]) - logit(answers[1])`` of each row, as float64."""
    result: np.ndarray = (logits[:, answers[0]] - logits[:, answers[1]]).to(torch.float64).numpy()
    return result


@torch.no_grad()
def patched_logit_diff(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    shifts: np.ndarray,
    layer: int,
    answers: tuple[int, int],
    batch_size: int,
) -> np.ndarray:
    """LD of each sequence with ``shifts[i]`` added to its last position after block ``layer``."""
    name = f"blocks.{layer}.hook_resid_post"
    out = np.zeros(len(seqs))
    for idx, batch in prompt_batches(model.bridge, seqs, batch_size):
        shift = torch.from_numpy(shifts[idx]).to(torch.float32)

        def add(activation: torch.Tensor, hook: Any, shift: torch.Tensor = shift) -> torch.Tensor:
            patched = activation.clone()
            patched[:, -1, :] = patched[:, -1, :] + shift.to(patched.dtype)
            return patched

        with scoped_hooks(model.bridge, [(name, add)]):
            logits = run_batch(model.bridge, batch)[:, -1, :].float()
        if not torch.isfinite(logits).all():
            raise MeasurementError(f"the model produced non-finite logits under an intervention at {name}")
        out[idx] = logit_diff(logits, answers)
    return out


# -- effects at one block ----------------------------------------------------------------------


@dataclass(frozen=True)
class InterchangeEffect:
    """One kind of intervention at one layer, per base."""

    delta: np.ndarray  # LD_after - LD_base, oriented: positive when LD moves towards the predicted answer
    abs_delta: np.ndarray  # |LD_after - LD_base|
    success: np.ndarray  # answer after == predicted answer (float; averaged over draws for random)


@dataclass(frozen=True)
class LayerResult:
    """The four kinds of intervention after one block, and the cosine of the raw directions."""

    layer: int
    cosine: float
    goal: InterchangeEffect
    proxy: InterchangeEffect
    random_goal: InterchangeEffect
    random_proxy: InterchangeEffect

    @property
    def score(self) -> float:
        """``iia_goal + iia_proxy``: what layer selection maximises."""
        return float(self.goal.success.mean() + self.proxy.success.mean())


def restrict(result: LayerResult, keep: np.ndarray) -> LayerResult:
    """``result`` with only the bases where ``keep`` (boolean, one per base) is true."""

    def sub(effect: InterchangeEffect) -> InterchangeEffect:
        return InterchangeEffect(effect.delta[keep], effect.abs_delta[keep], effect.success[keep])

    if not np.any(keep):
        raise MeasurementError("no base prompt left in a split of the interchange pairs")
    return LayerResult(
        layer=result.layer,
        cosine=result.cosine,
        goal=sub(result.goal),
        proxy=sub(result.proxy),
        random_goal=sub(result.random_goal),
        random_proxy=sub(result.random_proxy),
    )


def interchange_effects(
    ld_after: np.ndarray, ld_base: np.ndarray, predicted_same: np.ndarray, n_draws: int
) -> InterchangeEffect:
    """Per-base effects from ``ld_after`` of shape ``[n_draws * n_bases]`` (draw-major)."""
    after = ld_after.reshape(n_draws, -1)
    sign = np.where(predicted_same, 1.0, -1.0)
    delta = after - ld_base[None, :]
    return InterchangeEffect(
        delta=(sign[None, :] * delta).mean(axis=0),
        abs_delta=np.abs(delta).mean(axis=0),
        success=((after > 0) == predicted_same[None, :]).mean(axis=0),
    )


def _fold_directions(
    model: LoadedModel,
    layer: int,
    acts: np.ndarray,
    prompts: GoalProxyPrompts,
    folds: np.ndarray,
    pairs: InterchangePairs,
    answers: tuple[int, int],
    *,
    subspace: str,
    orthogonalise: bool,
    das_steps: int,
    das_lr: float,
    batch_size: int,
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], list[float]]:
    """Goal and proxy directions for the bases of each fold, fitted on the other fold; raw cosines."""
    directions: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    cosines = []
    for fold in (0, 1):
        fit = folds != fold
        g_dir, p_dir = balanced_directions(acts[fit], prompts.goal[fit], prompts.proxy[fit])
        if subspace == "das":  # learned on the fitting fold's own pairs, from the mean difference
            train = folds[pairs.base] != fold
            seqs = [prompts.seqs[i] for i in pairs.base[train]]
            learned = []
            for sources, predicted, init in (
                (pairs.goal_source[train], prompts.goal, g_dir),
                (pairs.proxy_source[train], prompts.proxy, p_dir),
            ):
                learned.append(
                    learned_direction(
                        model,
                        layer,
                        seqs,
                        acts[pairs.base[train]],
                        acts[sources],
                        predicted[sources],
                        init,
                        answers,
                        steps=das_steps,
                        lr=das_lr,
                        batch_size=batch_size,
                    )
                )
            g_dir, p_dir = learned
        cosines.append(float(np.dot(g_dir, p_dir)))
        if orthogonalise:
            g_dir, p_dir = symmetric_orthonormalise(g_dir, p_dir)
        directions[fold] = (g_dir, p_dir)
    return directions, cosines


def measure_layer(
    model: LoadedModel,
    layer: int,
    resid: np.ndarray,
    prompts: GoalProxyPrompts,
    folds: np.ndarray,
    pairs: InterchangePairs,
    ld_clean: np.ndarray,
    random_dirs: np.ndarray,
    answers: tuple[int, int],
    *,
    subspace: str,
    orthogonalise: bool,
    das_steps: int,
    das_lr: float,
    batch_size: int,
) -> LayerResult:
    """Goal, proxy and random-direction interchange interventions after block ``layer``, per base.

    Directions for the bases of fold k are fitted on fold 1 - k (cross-fitting);
    every random direction is swapped on both variables' pairs.
    """
    acts = resid[layer]
    d_model = acts.shape[1]
    n = pairs.base.size
    directions, cosines = _fold_directions(
        model, layer, acts, prompts, folds, pairs, answers,
        subspace=subspace, orthogonalise=orthogonalise, das_steps=das_steps, das_lr=das_lr, batch_size=batch_size,
    )  # fmt: skip
    base_folds = folds[pairs.base]
    base_acts = acts[pairs.base]
    ld_base = ld_clean[pairs.base]
    k = random_dirs.shape[0]

    shifts = []
    for which, sources in ((0, pairs.goal_source), (1, pairs.proxy_source)):
        shift = np.zeros((n, d_model))
        for fold in (0, 1):
            rows = base_folds == fold
            shift[rows] = interchange_shift(base_acts[rows], acts[sources[rows]], directions[fold][which])
        shifts.append(shift)
    for sources in (pairs.goal_source, pairs.proxy_source):
        for r in range(k):
            shifts.append(interchange_shift(base_acts, acts[sources], random_dirs[r]))
    base_seqs = [prompts.seqs[i] for i in pairs.base]
    ld_after = patched_logit_diff(model, base_seqs * (2 + 2 * k), np.concatenate(shifts), layer, answers, batch_size)
    goal_pred = prompts.goal[pairs.goal_source]  # "answer = goal" with the source's goal
    proxy_pred = prompts.proxy[pairs.proxy_source]  # "answer = proxy" with the source's proxy
    return LayerResult(
        layer=layer,
        cosine=float(np.mean(cosines)),
        goal=interchange_effects(ld_after[:n], ld_base, goal_pred, 1),
        proxy=interchange_effects(ld_after[n : 2 * n], ld_base, proxy_pred, 1),
        random_goal=interchange_effects(ld_after[2 * n : (2 + k) * n], ld_base, goal_pred, k),
        random_proxy=interchange_effects(ld_after[(2 + k) * n :], ld_base, proxy_pred, k),
    )


# -- the Proxy Reliance Index (experimental) ---------------------------------------------------


def reliance_index(proxy_effects: np.ndarray, goal_effects: np.ndarray) -> float:
    """``|mean(proxy)| / (|mean(proxy)| + |mean(goal)|)``: the Proxy Reliance Index of per-unit effects."""
    p = abs(float(np.mean(proxy_effects)))
    g = abs(float(np.mean(goal_effects)))
    if p + g <= 0.0:
        raise MeasurementError("the Proxy Reliance Index is undefined: neither swap changed the output on average")
    return p / (p + g)


def bootstrap_reliance_index(
    proxy_effects: np.ndarray,
    goal_effects: np.ndarray,
    *,
    rng: np.random.Generator,
    level: float,
    resamples: int,
) -> tuple[float, ConfidenceInterval]:
    """:func:`reliance_index` with a percentile bootstrap over units (one proxy and one goal effect per unit).

    The interval is widened, if need be, to contain the point estimate (a
    ratio's bootstrap distribution can be skewed). Resamples where the index is
    undefined (both means zero) are left out of the quantiles; the interval
    records the number of resamples drawn.
    """
    p = np.asarray(proxy_effects, dtype=np.float64)
    g = np.asarray(goal_effects, dtype=np.float64)
    if p.shape != g.shape or p.ndim != 1:
        raise MeasurementError("PRI: the proxy and goal effects need one value per unit each")
    n = int(p.shape[0])
    if n < 2:
        raise MeasurementError(f"PRI: needs at least 2 units, got {n}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
        raise MeasurementError("PRI: non-finite effects")
    point = reliance_index(p, g)
    index = rng.integers(0, n, size=(resamples, n))
    mp, mg = np.abs(p[index].mean(axis=1)), np.abs(g[index].mean(axis=1))
    total = mp + mg
    ratios = mp[total > 0] / total[total > 0]
    ci = percentile_interval(point, ratios, level=level, n=n, contain_point=True)
    return point, ci.model_copy(update={"resamples": resamples})
