"""``heads.inventory``: previous-token, duplicate-token and induction heads, with an ablation check.

Every head's attention pattern on repeated random sequences is scored for the
three roles on a discovery split and reported on a disjoint evaluation split,
against a randomly initialised twin; the top induction head, and all heads above
a score threshold together, are mean-ablated and the rise of the loss on repeated
tokens is compared with ablating random head sets of the same size (a paired
difference with an interval). Method, parameters and validation:
docs/methods/heads.inventory.md.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from evidence.errors import MeasurementError
from evidence.measure import Detector, Expectation, MeasureContext, MeasurementResult, UncertaintyParams, measurement
from evidence.measure.cost import Passes, Workload
from evidence.measure.hooks import HookFn, capture, scoped_hooks
from evidence.measure.methods.behaviour import bos_token_id, ordinary_token_ids
from evidence.measure.stats import bootstrap_mean, bounded_mean
from evidence.model import LoadedModel, random_twin
from evidence.records import Baseline, ClauseRef, ConfidenceInterval, Criterion, DataRef, Metric, Table

__all__ = ["CLAUSES", "HeadsInventoryParams", "inventory"]

_SCORES = ("prev_token", "duplicate_token", "induction")

CLAUSES = (
    ClauseRef(
        id="EU-AIA/AnnexIV/2/b@OJ-2024-07-12",
        strength="supporting",
        rationale=(
            "Names the attention heads that copy earlier context, a measured part of the "
            "model's internal logic that the design description can cite."
        ),
    ),
    ClauseRef(
        id="EU-AIA/AnnexXI/S2/2@OJ-2024-07-12",
        strength="partial",
        rationale=(
            "Ablating the identified heads is an internal test of the model under a targeted "
            "intervention; it covers one part of the testing the provider must describe."
        ),
    ),
    ClauseRef(
        id="NIST-AI-RMF/1.0/MEASURE/2.9",
        strength="supporting",
        rationale=(
            "Explains one in-context copying mechanism and validates it causally, against an untrained baseline."
        ),
    ),
)


class HeadsInventoryParams(UncertaintyParams):
    """Parameters of ``heads.inventory``."""

    n_sequences: int = Field(
        default=128, ge=4, le=100_000, description="sequences, split into a discovery and an evaluation half"
    )
    seq_len: int = Field(default=24, ge=2, description="length of the segment that is repeated")
    batch_size: int = Field(default=16, ge=1)
    top_k: int = Field(default=1, ge=1, description="top induction heads ablated in the single-head check")
    score_threshold: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="induction score at which a head joins the jointly ablated set"
    )
    random_ablation_draws: int = Field(
        default=32, ge=1, description="random head sets of the same size ablated for the baseline"
    )


@dataclass(frozen=True)
class _Layout:
    offset: int  # 1 if a BOS token is prepended, else 0
    seq_len: int

    @property
    def length(self) -> int:
        return self.offset + 2 * self.seq_len


def _repeated_tokens(
    model: LoadedModel, n_sequences: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``(tokens, offset)``: int64 ``[n, offset + 2 * seq_len]`` sequences ``[BOS] + s + s``."""
    allowed = ordinary_token_ids(model)
    if allowed.size < 2:
        raise MeasurementError("the vocabulary has fewer than two ordinary tokens")
    segment = allowed[rng.integers(0, allowed.size, size=(n_sequences, seq_len))]
    parts = [segment, segment]
    bos = bos_token_id(model)
    if bos is not None:
        parts.insert(0, np.full((n_sequences, 1), bos, dtype=np.int64))
    tokens = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.int64)
    return tokens, (1 if bos is not None else 0)


def _pattern_scores(pattern: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """Scores ``[batch, head, 3]`` from one layer's pattern ``[batch, head, query, key]``."""
    off, n = layout.offset, layout.seq_len
    prev_q = torch.arange(off + 1, layout.length)
    rep_q = torch.arange(off + n, layout.length)
    prev = pattern[:, :, prev_q, prev_q - 1].mean(dim=-1)
    dup = pattern[:, :, rep_q, rep_q - n].mean(dim=-1)
    ind = pattern[:, :, rep_q, rep_q - n + 1].mean(dim=-1)
    return torch.stack([prev, dup, ind], dim=-1)


def _head_scores(
    model: LoadedModel,
    tokens: np.ndarray,
    layout: _Layout,
    batch_size: int,
    ctx: MeasureContext | None = None,
    share: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Per-sequence scores ``[n, layer, head, (prev_token, duplicate_token, induction)]``."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.n_layers)]
    out = np.zeros((tokens.shape[0], model.n_layers, model.n_heads, len(_SCORES)), dtype=np.float64)
    for start in range(0, tokens.shape[0], batch_size):
        batch = torch.from_numpy(tokens[start : start + batch_size])
        acts = capture(model.bridge, names, batch)
        for layer, name in enumerate(names):
            pattern = acts[name]
            expected = (batch.shape[0], model.n_heads, layout.length, layout.length)
            if tuple(pattern.shape) != expected:
                raise MeasurementError(
                    f"{name} has shape {tuple(pattern.shape)}, expected {expected} [batch, head, query, key]"
                )
            scores = _pattern_scores(pattern.to(torch.float64), layout)
            out[start : start + batch.shape[0], layer] = scores.numpy()
        if ctx is not None:
            done = min(start + batch_size, tokens.shape[0]) / tokens.shape[0]
            ctx.progress(share[0] + done * (share[1] - share[0]), "attention patterns")
    if not np.all(np.isfinite(out)):
        raise MeasurementError("attention patterns contain non-finite values")
    return out


def _mean_heads_hook(heads: list[int], n_heads: int, mean: torch.Tensor) -> HookFn:
    """Replace the ``heads``' outputs by their per-position mean over the discovery sequences."""

    def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
        if z.dim() != 4 or z.shape[2] != n_heads or z.shape[1:] != mean.shape:
            raise MeasurementError(
                f"hook_z has shape {tuple(z.shape)}; expected [batch, {mean.shape[0]}, {n_heads}, {mean.shape[2]}]"
            )
        z = z.clone()
        z[:, :, heads, :] = mean[None, :, heads, :].to(z)
        return z

    return hook


def _head_means(model: LoadedModel, tokens: np.ndarray, batch_size: int) -> dict[int, torch.Tensor]:
    """Per layer, the mean of ``hook_z`` over ``tokens`` at each position: ``[pos, head, d_head]``."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.n_layers)]
    sums: dict[int, torch.Tensor] = {}
    for start in range(0, tokens.shape[0], batch_size):
        acts = capture(model.bridge, names, torch.from_numpy(tokens[start : start + batch_size]))
        for layer, name in enumerate(names):
            total = acts[name].to(torch.float64).sum(dim=0)
            sums[layer] = sums[layer] + total if layer in sums else total
    return {layer: (total / tokens.shape[0]).to(torch.float32) for layer, total in sums.items()}


def _repeat_loss(
    model: LoadedModel,
    tokens: np.ndarray,
    layout: _Layout,
    batch_size: int,
    ablate: list[tuple[int, int]],
    means: dict[int, torch.Tensor],
) -> np.ndarray:
    """Per-sequence mean next-token loss (nats) on the second copy, tokens 2..n of it, ``ablate`` mean-ablated."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablate:
        by_layer.setdefault(layer, []).append(head)
    hooks = [
        (f"blocks.{layer}.attn.hook_z", _mean_heads_hook(sorted(heads), model.n_heads, means[layer]))
        for layer, heads in sorted(by_layer.items())
    ]
    # Predictions made at positions off+n .. off+2n-2 of tokens off+n+1 .. off+2n-1.
    pred = torch.arange(layout.offset + layout.seq_len, layout.length - 1)
    losses = []
    for start in range(0, tokens.shape[0], batch_size):
        batch = torch.from_numpy(tokens[start : start + batch_size])
        with torch.no_grad(), scoped_hooks(model.bridge, hooks):
            logits = model.bridge(batch)
        logp = F.log_softmax(logits[:, pred].float(), dim=-1)
        target = batch[:, pred + 1]
        nll = -logp.gather(-1, target[..., None])[..., 0].to(torch.float64)
        losses.append(nll.mean(dim=-1).numpy())
    result = np.concatenate(losses)
    if not np.all(np.isfinite(result)):
        raise MeasurementError("the loss on repeated tokens is not finite")
    return result


def _top(mean_scores: np.ndarray, index: int) -> tuple[int, int]:
    """(layer, head) with the highest mean score; ties go to the lowest (layer, head)."""
    flat = int(np.argmax(mean_scores[:, :, index]))
    layer, head = divmod(flat, mean_scores.shape[1])
    return layer, head


def _interval(
    values: np.ndarray,
    rng: np.random.Generator,
    params: HeadsInventoryParams,
    name: str,
    bounded: bool = False,
) -> tuple[float, ConfidenceInterval | None]:
    """The mean of ``values`` (one per evaluation sequence) and its interval, never of zero width.

    Scores (``bounded``) lie in [0, 1]: :func:`~evidence.measure.stats.bounded_mean`, the bootstrap,
    or the exact bound for a constant sample when every sequence gives the same score (a head that
    puts all or none of its attention on the scored key). Losses and their differences have no
    bound on at least one side, so a constant sample supports no interval: then None, rather than
    the bootstrap's zero-width one. Either way the same draws are taken from ``rng``.
    """
    level, resamples = params.ci_level, params.bootstrap_resamples
    if bounded:
        return bounded_mean(values, lower=0.0, upper=1.0, rng=rng, level=level, resamples=resamples, name=name)
    value, ci = bootstrap_mean(values, rng=rng, level=level, resamples=resamples, name=name)
    data = np.asarray(values, dtype=np.float64)
    return value, (None if float(data.min()) == float(data.max()) else ci)


def _ci_metric(
    name: str,
    values: np.ndarray,
    rng: np.random.Generator,
    params: HeadsInventoryParams,
    unit: str,
    description: str,
    baseline: Baseline | None = None,
    bounded: bool = False,
) -> tuple[Metric, float, ConfidenceInterval | None]:
    value, ci = _interval(values, rng, params, name, bounded)
    if ci is None:
        description += "; the same on every evaluation sequence, so no interval"
    metric = Metric(name=name, value=value, unit=unit, ci=ci, baseline=baseline, description=description)
    return metric, value, ci


def _table(name: str, mean_scores: np.ndarray, description: str) -> Table:
    rows: list[list[str | float | int | None]] = []
    for layer in range(mean_scores.shape[0]):
        for head in range(mean_scores.shape[1]):
            rows.append([layer, head, *(float(x) for x in mean_scores[layer, head])])
    return Table(name=name, columns=["layer", "head", *_SCORES], rows=rows, description=description)


_LABELS = {"prev_token": "previous-token", "duplicate_token": "duplicate-token", "induction": "induction"}


@dataclass(frozen=True)
class _Best:
    """The best head of one role, its mean score and interval, and the twin's best head's score."""

    layer: int
    head: int
    value: float
    ci: ConfidenceInterval
    twin_value: float


def _score_metrics(
    scores: tuple[np.ndarray, np.ndarray],
    twin_scores: tuple[np.ndarray, np.ndarray],
    params: HeadsInventoryParams,
    boot: np.random.Generator,
    twin_seed: int,
) -> tuple[list[Metric], dict[str, _Best]]:
    """Per role, the best head's mean score against the twin's best head; then where the best heads are.

    ``scores`` and ``twin_scores`` are (discovery, evaluation): the best head is chosen on the discovery
    sequences and its score is reported on the evaluation sequences.
    """
    (discovery, evaluation), (twin_discovery, twin_evaluation) = scores, twin_scores
    means, twin_means = discovery.mean(axis=0), twin_discovery.mean(axis=0)
    metrics: list[Metric] = []
    best: dict[str, _Best] = {}
    for index, key in enumerate(_SCORES):
        layer, head = _top(means, index)
        t_layer, t_head = _top(twin_means, index)
        t_value, t_ci = _interval(twin_evaluation[:, t_layer, t_head, index], boot, params, f"twin {key} score", True)
        baseline = Baseline(
            name="random-init twin",
            value=t_value,
            ci=t_ci,
            description=(
                f"best {_LABELS[key]} head (L{t_layer}H{t_head}) of a randomly initialised model "
                f"of the same architecture (init seed {twin_seed}), chosen and scored like the model's"
            ),
        )
        description = (
            f"mean {_LABELS[key]} attention of the best head, L{layer}H{head} (chosen on the discovery "
            "sequences, scored on the evaluation sequences)"
        )
        values = evaluation[:, layer, head, index]
        metric, value, ci = _ci_metric(
            f"{key}_score_max", values, boot, params, "score", description, baseline, bounded=True
        )
        if ci is None:  # unreachable: a bounded mean always has an interval
            raise MeasurementError(f"{key}_score_max has no interval")
        metrics.append(metric)
        best[key] = _Best(layer, head, value, ci, t_value)
    for key in _SCORES:
        where = best[key]
        metrics += [
            Metric(
                name=f"{key}_head_layer",
                value=where.layer,
                unit="layer index",
                description=f"layer of the best {_LABELS[key]} head",
            ),
            Metric(
                name=f"{key}_head_index",
                value=where.head,
                unit="head index",
                description=f"index within its layer of the best {_LABELS[key]} head",
            ),
        ]
    return metrics, best


def _random_sets(
    n_layers: int, n_heads: int, chosen: list[tuple[int, int]], draws: int, rng: np.random.Generator
) -> list[list[tuple[int, int]]]:
    """Up to ``draws`` distinct head sets of ``len(chosen)`` heads, none equal to ``chosen``.

    Every such set when there are at most ``draws`` of them, else ``draws`` distinct ones drawn at random.
    """
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    size, target = len(chosen), frozenset(chosen)
    if math.comb(len(heads), size) - 1 <= draws:
        every = [list(c) for c in itertools.combinations(heads, size) if frozenset(c) != target]
        return every
    seen: set[frozenset[tuple[int, int]]] = {target}
    out: list[list[tuple[int, int]]] = []
    while len(out) < draws:
        pick = frozenset(heads[int(i)] for i in rng.choice(len(heads), size, replace=False))
        if pick not in seen:
            seen.add(pick)
            out.append(sorted(pick))
    return out


@dataclass(frozen=True)
class _Ablation:
    """One ablation check on the evaluation sequences: a head set against random sets of the same size."""

    heads: list[tuple[int, int]]
    ablated: np.ndarray  # per-sequence repeat loss with ``heads`` mean-ablated
    increase: np.ndarray  # ablated - clean, per sequence
    random_sets: list[list[tuple[int, int]]]
    random_increase: np.ndarray  # [draws, sequences]

    @property
    def vs_random(self) -> np.ndarray:
        """Per sequence: the set's increase minus the mean increase over the random sets."""
        result: np.ndarray = self.increase - self.random_increase.mean(axis=0)
        return result


def _check(
    model: LoadedModel,
    split: _Split,
    heads: list[tuple[int, int]],
    params: HeadsInventoryParams,
    clean: np.ndarray,
    rng: np.random.Generator,
) -> _Ablation:
    """Mean-ablate ``heads`` and random head sets of the same size on the evaluation sequences."""
    tokens, layout, means, batch = split.evaluation, split.layout, split.means, params.batch_size
    ablated = _repeat_loss(model, tokens, layout, batch, heads, means)
    random_sets = _random_sets(model.n_layers, model.n_heads, heads, params.random_ablation_draws, rng)
    random_increase = np.array(
        [_repeat_loss(model, tokens, layout, batch, chosen, means) - clean for chosen in random_sets]
    ).reshape(len(random_sets), clean.shape[0])
    return _Ablation(heads, ablated, ablated - clean, random_sets, random_increase)


def _heads_text(heads: list[tuple[int, int]]) -> str:
    return ", ".join(f"L{layer}H{head}" for layer, head in heads)


def _ablation_metrics(
    check: _Ablation, params: HeadsInventoryParams, boot: np.random.Generator, prefix: str
) -> tuple[list[Metric], str]:
    """The repeat loss with the set ablated, its increase, and the increase against random sets; and a sentence."""
    heads_text, n_sets = _heads_text(check.heads), len(check.random_sets)
    what = f"{heads_text} mean-ablated"
    ablated_metric, ablated_value, _ = _ci_metric(
        f"{prefix}repeat_loss_ablated",
        check.ablated,
        boot,
        params,
        "nats",
        f"mean next-token loss on the second copy with {what} (evaluation sequences)",
    )
    metrics = [ablated_metric]
    per_draw = check.random_increase.mean(axis=1)
    r_value, r_ci = _interval(check.random_increase.mean(axis=0), boot, params, "random-head ablation increase")
    sets_text = f"{n_sets} random set(s) of {len(check.heads)} head(s), none equal to the ablated set"
    increase_metric, increase_value, increase_ci = _ci_metric(
        f"{prefix}repeat_loss_increase",
        check.increase,
        boot,
        params,
        "nats",
        f"loss increase on the second copy when {what} (paired with the unablated model)",
        Baseline(
            name="random heads ablated",
            value=r_value,
            ci=r_ci,
            description=f"mean increase over {sets_text}, mean-ablated the same way",
        ),
    )
    metrics.append(increase_metric)
    diff_metric, diff_value, diff_ci = _ci_metric(
        f"{prefix}repeat_loss_increase_vs_random",
        check.vs_random,
        boot,
        params,
        "nats",
        f"per sequence, the increase when {what} minus the mean increase over {sets_text} (paired difference)",
    )
    metrics += [
        diff_metric,
        Metric(
            name=f"{prefix}random_sets_as_harmful",
            value=float(np.mean(per_draw >= increase_value)),
            unit="fraction",
            description=f"share of the {sets_text} whose mean increase is at least the ablated set's",
        ),
    ]
    if n_sets > 1:  # a spread needs two sets
        metrics.append(
            Metric(
                name=f"{prefix}random_increase_spread",
                value=float(per_draw.std(ddof=1)),
                unit="nats",
                description=f"standard deviation over the {sets_text} of their mean increase",
            )
        )
    diff_text = "the same on every sequence" if diff_ci is None else f"CI {diff_ci.lower:.3f}-{diff_ci.upper:.3f}"
    sentence = (
        f"Mean-ablating {heads_text} raises the loss on repeated tokens to {ablated_value:.3f} nats (increase "
        f"{increase_value:.3f}; {n_sets} random sets of as many heads {r_value:.3f}; difference {diff_value:.3f}, "
        f"{diff_text})."
    )
    return metrics, sentence


@dataclass(frozen=True)
class _Split:
    """The discovery and evaluation sequences, their layout, and per-layer mean head outputs (discovery)."""

    discovery: np.ndarray
    evaluation: np.ndarray
    layout: _Layout
    means: dict[int, torch.Tensor]


def _split(tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random half of the sequences for discovery, the other half for evaluation."""
    order = rng.permutation(tokens.shape[0])
    half = tokens.shape[0] // 2
    return tokens[np.sort(order[:half])], tokens[np.sort(order[half:])]


def _above_threshold(means: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Heads whose mean induction score (discovery sequences) reaches ``threshold``, in (layer, head) order."""
    layers, heads = np.nonzero(means[:, :, 2] >= threshold)
    return [(int(layer), int(head)) for layer, head in zip(layers, heads, strict=True)]


def _tokens_ref(name: str, tokens: np.ndarray, offset: int, params: HeadsInventoryParams, use: str) -> DataRef:
    digest = hashlib.sha256(tokens.astype("<i8", copy=False).tobytes(order="C")).hexdigest()
    return DataRef(
        name=name,
        sha256=digest,
        count=int(tokens.shape[0]),
        description=(
            f"int64 array of shape {list(tokens.shape)} (little-endian, row-major): "
            + ("BOS, then " if offset else "")
            + f"{params.seq_len} random token ids, then the same ids again; the {use}"
        ),
    )


def _check_fits(model: LoadedModel, layout: _Layout, params: HeadsInventoryParams) -> None:
    if layout.length > model.n_ctx:
        raise MeasurementError(
            f"sequences of {layout.length} tokens exceed the model's context of {model.n_ctx}",
            hint=f"use seq_len <= {(model.n_ctx - layout.offset) // 2}",
        )
    n_heads_total = model.n_layers * model.n_heads
    if params.top_k >= n_heads_total:
        raise MeasurementError(
            f"top_k={params.top_k} leaves no other heads for the random baseline (the model has {n_heads_total} heads)",
            hint=f"use top_k < {n_heads_total}",
        )


def _joint(
    model: LoadedModel,
    split: _Split,
    joint: list[tuple[int, int]],
    params: HeadsInventoryParams,
    clean: np.ndarray,
    rng: np.random.Generator,
    boot: np.random.Generator,
) -> tuple[list[Metric], str]:
    """The joint ablation of every head above the score threshold (when there is one and a random set to compare)."""
    count = Metric(
        name="n_heads_above_threshold",
        value=len(joint),
        unit="heads",
        description=(
            f"heads whose mean induction score on the discovery sequences reaches {params.score_threshold}: "
            + (_heads_text(joint) if joint else "none")
        ),
    )
    n_total = model.n_layers * model.n_heads
    if not joint:
        return [count], f"No head reaches an induction score of {params.score_threshold}; no joint ablation."
    if len(joint) == n_total:
        return [count], f"Every head reaches an induction score of {params.score_threshold}; no random set to compare."
    check = _check(model, split, joint, params, clean, rng)
    metrics, sentence = _ablation_metrics(check, params, boot, "joint_")
    return [count, *metrics], f"All {len(joint)} heads above {params.score_threshold} together: m" + sentence[1:]


def _cost(params: HeadsInventoryParams, _work: Workload) -> Passes:
    """Passes over each half of the sequences: scores of model and twin, means, clean loss, two ablation checks."""
    half = params.n_sequences // 2
    passes_per_half = 2 + 2 + 1 + 1 + 2 * (1 + params.random_ablation_draws)
    return Passes.batched(half, 1 + 2 * params.seq_len, params.batch_size, times=passes_per_half)


#: Every metric this measurement can emit (what a policy threshold may name).
METRICS = (
    "prev_token_score_max",
    "duplicate_token_score_max",
    "induction_score_max",
    "prev_token_head_layer",
    "prev_token_head_index",
    "duplicate_token_head_layer",
    "duplicate_token_head_index",
    "induction_head_layer",
    "induction_head_index",
    "repeat_loss_clean",
    "repeat_loss_ablated",
    "repeat_loss_increase",
    "repeat_loss_increase_vs_random",
    "random_sets_as_harmful",
    "random_increase_spread",
    "n_heads_above_threshold",
    "joint_repeat_loss_ablated",
    "joint_repeat_loss_increase",
    "joint_repeat_loss_increase_vs_random",
    "joint_random_sets_as_harmful",
    "joint_random_increase_spread",
)


@measurement(
    "heads.inventory",
    version="2.1.0",
    model_copies=2,  # the randomly initialised twin
    headline="induction_score_max",
    metrics=METRICS,
    params=HeadsInventoryParams,
    cost=_cost,
    profiles={
        "quick": {"bootstrap_resamples": 200, "random_ablation_draws": 8},
        "thorough": {"bootstrap_resamples": 4000, "random_ablation_draws": 128},
    },
    clauses=CLAUSES,
    detectors=(
        Detector("induction_score_max", "induction", (Criterion(comparator=">=", threshold=0.5, rule="ci-bound"),)),
        Detector(
            "joint_repeat_loss_increase_vs_random",
            "induction",
            (Criterion(comparator=">", threshold=0.0, rule="ci-bound"),),
        ),
    ),
    calibration=(
        Expectation(
            "induction", True, "induction_score_max", (Criterion(comparator=">=", threshold=0.5, rule="ci-bound"),)
        ),
        Expectation(
            "induction#untrained",
            False,
            "induction_score_max",
            (Criterion(comparator="<", threshold=0.2, rule="ci-bound"),),
        ),
        # The jointly ablated induction heads hurt copying more than random head sets of the same size.
        Expectation(
            "induction",
            True,
            "joint_repeat_loss_increase_vs_random",
            (Criterion(comparator=">", threshold=0.0, rule="ci-lower"),),
        ),
        Expectation(
            "induction#untrained",
            False,
            "n_heads_above_threshold",
            (Criterion(comparator="<=", threshold=0, rule="point"),),
        ),
    ),
)
def inventory(model: LoadedModel, params: HeadsInventoryParams, ctx: MeasureContext) -> MeasurementResult:
    """Find previous-token, duplicate-token and induction heads on one split; check them causally on the other."""
    token_seed, twin_seed, split_seed = ctx.derive_seed("tokens"), ctx.derive_seed("twin"), ctx.derive_seed("split")
    bootstrap_seed, random_heads_seed = ctx.derive_seed("bootstrap"), ctx.derive_seed("random_heads")
    tokens, offset = _repeated_tokens(model, params.n_sequences, params.seq_len, np.random.default_rng(token_seed))
    layout = _Layout(offset=offset, seq_len=params.seq_len)
    _check_fits(model, layout, params)
    discovery, evaluation = _split(tokens, np.random.default_rng(split_seed))

    ctx.progress(0.0, "scoring heads")
    scores = tuple(_head_scores(model, t, layout, params.batch_size) for t in (discovery, evaluation))
    ctx.progress(0.3, "building the randomly initialised twin")
    twin = random_twin(model, twin_seed)
    twin_scores = tuple(_head_scores(twin, t, layout, params.batch_size) for t in (discovery, evaluation))
    del twin
    boot = np.random.default_rng(bootstrap_seed)
    metrics, best = _score_metrics((scores[0], scores[1]), (twin_scores[0], twin_scores[1]), params, boot, twin_seed)

    ctx.progress(0.5, "ablation checks")
    split = _Split(discovery, evaluation, layout, _head_means(model, discovery, params.batch_size))
    discovery_means = scores[0].mean(axis=0)
    order = np.argsort(-discovery_means[:, :, 2], axis=None, kind="stable")
    top = sorted(divmod(int(i), model.n_heads) for i in order[: params.top_k])
    clean = _repeat_loss(model, evaluation, layout, params.batch_size, [], split.means)
    clean_metric, _, _ = _ci_metric(
        "repeat_loss_clean",
        clean,
        boot,
        params,
        "nats",
        "mean next-token loss on the second copy, unablated model (evaluation sequences)",
    )
    random_heads = np.random.default_rng(random_heads_seed)
    top_metrics, top_text = _ablation_metrics(_check(model, split, top, params, clean, random_heads), params, boot, "")
    joint = _above_threshold(discovery_means, params.score_threshold)
    joint_metrics, joint_text = _joint(model, split, joint, params, clean, random_heads, boot)
    metrics += [clean_metric, *top_metrics, *joint_metrics]

    induction, prev = best["induction"], best["prev_token"]
    summary = (
        f"Heads chosen on {discovery.shape[0]} and scored on {evaluation.shape[0]} other repeated random sequences "
        f"(segment length {params.seq_len}): "
        f"the strongest induction head is L{induction.layer}H{induction.head} (score {induction.value:.3f}, "
        f"{params.ci_level:.0%} CI {induction.ci.lower:.3f}-{induction.ci.upper:.3f}; random-init twin "
        f"{induction.twin_value:.3f}) and the "
        f"strongest previous-token head is L{prev.layer}H{prev.head} (score {prev.value:.3f}, CI {prev.ci.lower:.3f}-"
        f"{prev.ci.upper:.3f}). Unablated repeat loss {clean.mean():.3f} nats. " + top_text + " " + joint_text
    )
    twin_description = "the same scores on the randomly initialised twin (baseline), evaluation sequences"
    tables = [
        _table("head_scores", scores[1].mean(axis=0), "mean score of every head over the evaluation sequences"),
        _table("head_scores_discovery", discovery_means, "the same over the discovery sequences (used for choosing)"),
        _table("twin_head_scores", twin_scores[1].mean(axis=0), twin_description),
    ]
    data = [
        _tokens_ref("heads.discovery_tokens", discovery, offset, params, "discovery split (heads are chosen on it)"),
        _tokens_ref(
            "heads.evaluation_tokens", evaluation, offset, params, "evaluation split (every number is reported on it)"
        ),
    ]
    ctx.progress(1.0, "done")
    return MeasurementResult(metrics=metrics, tables=tables, data=data, summary=summary)
